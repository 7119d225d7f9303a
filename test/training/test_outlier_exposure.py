"""Outlier exposure: the head learns exposed anomalies and never lowers the local score."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.outlier_exposure import OutlierExposureConfig, fit_outlier_exposure
from visual_anomaly.core import export_onnx, load_bundle, save_bundle
from visual_anomaly.core.torch_model import head_kind


def _frames(rng, n, marked):
    """Smooth random frames; ``marked`` ones carry a bright 20x20 square somewhere."""
    base = rng.integers(40, 120, size=(n, 8, 8, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
    if marked:
        for frame in frames:
            top, left = rng.integers(0, 44, 2)
            frame[top : top + 20, left : left + 20] = 250
    return frames


@pytest.mark.slow
@pytest.mark.parametrize('head', ['mlp', 'realnvp'])
def test_exposed_anomalies_are_learned_and_fusion_only_adds(small_detector, rng, head, tmp_path):
    normal, exposed = _frames(rng, 300, False), _frames(rng, 20, True)
    small_detector.oe_head = None
    small_detector.decision_score = 'local'
    report = fit_outlier_exposure(
        small_detector,
        normal,
        exposed,
        OutlierExposureConfig(epochs=60, normal_batch=128, anomalous_batch=16, head=head),
        exposed_classes={'square': 20},
        progress=False,
    )
    assert report.exposed_frames == 20 and report.normal_frames == 300
    assert report.loss[-1] < report.loss[0]
    assert small_detector.decision_score == 'fused'
    small_detector.calibrate(_frames(rng, 100, False))
    test_normal, test_anomalous = _frames(rng, 100, False), _frames(rng, 100, True)
    result = small_detector.detect_resized(np.concatenate([test_normal, test_anomalous]))
    labels = np.r_[np.zeros(100), np.ones(100)]
    assert roc_auc_score(labels, result.scores['oe']) > 0.95
    assert (result.scores['fused'] >= result.scores['local']).all()
    gated = result.scores['oe'] <= 3.0
    np.testing.assert_allclose(result.scores['fused'][gated], result.scores['local'][gated])
    assert head_kind(small_detector.oe_head) == head
    for path in (save_bundle(tmp_path / 'oe.pt', small_detector), export_onnx(tmp_path / 'oe.onnx', small_detector)):
        loaded = load_bundle(path, 'cpu').detect_resized(test_anomalous)
        np.testing.assert_allclose(loaded.scores['oe'], result.scores['oe'][100:], rtol=1e-4, atol=1e-3)


def test_no_anomalies_is_refused(small_detector, frames64):
    with pytest.raises(ValueError, match='anomalous'):
        fit_outlier_exposure(small_detector, frames64, frames64[:0], progress=False)
