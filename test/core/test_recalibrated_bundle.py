"""A bundle re-calibrated without retraining: same network, new thresholds, in its own format."""

import numpy as np
import pytest
import torch

from visual_anomaly.core import BundleError, export_onnx, load_bundle, read_bundle_metadata, save_bundle
from visual_anomaly.core.bundle import save_recalibrated


@pytest.fixture
def other_frames(frames64):
    """Normal frames of 'another building': the same scenes, darker."""
    return np.concatenate([frames64 // 2] * 10)


@pytest.mark.parametrize('suffix', ['.pt', '.onnx'])
def test_recalibrated_bundle_keeps_the_network_and_carries_the_new_calibration(
    tmp_path, small_detector, frames64, other_frames, suffix
):
    small_detector.calibrate(frames64, fpr=0.1)
    write = save_bundle if suffix == '.pt' else export_onnx
    source = write(tmp_path / f'model{suffix}', small_detector, {'dataset': 'unit test'})
    scorer = load_bundle(source, 'cpu')
    scorer.calibrate(other_frames, fpr=0.1)
    assert scorer.threshold_ != small_detector.threshold_
    out = save_recalibrated(source, tmp_path / f'building{suffix}', scorer, {'frames': len(other_frames)})
    reloaded = load_bundle(out, 'cpu')
    assert reloaded.calibration == scorer.calibration and reloaded.decision_score == scorer.decision_score
    before, after = small_detector.detect_resized(other_frames), reloaded.detect_resized(other_frames)
    np.testing.assert_allclose(after.mse, before.mse, rtol=1e-5)  # the network itself is unchanged
    assert after.is_anomaly.mean() <= 0.1
    provenance = read_bundle_metadata(out)['provenance']
    assert provenance == {'dataset': 'unit test', 'recalibration': {'frames': 120}}
    if suffix == '.pt':
        payload = torch.load(out, weights_only=True)
        for name, tensor in small_detector.autoencoder.state_dict().items():
            assert torch.equal(payload['autoencoder'][name], tensor)


def test_the_source_is_never_overwritten_and_formats_are_kept(tmp_path, small_detector, frames64):
    small_detector.calibrate(frames64, fpr=0.1)
    source = save_bundle(tmp_path / 'model.pt', small_detector)
    content = source.read_bytes()
    with pytest.raises(BundleError, match='would overwrite'):
        save_recalibrated(source, tmp_path / '.' / 'model.pt', small_detector)
    with pytest.raises(BundleError, match='must be written as .pt'):
        save_recalibrated(source, tmp_path / 'model.onnx', small_detector)
    assert source.read_bytes() == content
