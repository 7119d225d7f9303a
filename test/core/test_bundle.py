import pickle
import sys

import numpy as np
import pytest
import torch

from visual_anomaly.core import SCORE_KINDS, BundleError, load_bundle, read_bundle_metadata, save_bundle
from visual_anomaly.core import bundle as bundle_module
from visual_anomaly.core.bundle_checks import CHECKSUM_KEY, checksum


@pytest.fixture
def saved(tmp_path, small_detector, frames64):
    small_detector.calibrate(frames64, fpr=0.1)
    small_detector.decision_score = 'oe'
    path = save_bundle(tmp_path / 'model.pt', small_detector, {'dataset': 'unit test', 'epochs': 0})
    return path, small_detector


def test_round_trip_gives_identical_scores(saved, frames64):
    path, original = saved
    loaded = load_bundle(path, device='cpu', backend='torch')
    before, after = original.detect(frames64), loaded.detect(frames64)
    for kind in ('reconstruction', 'local', 'oe', 'fused'):
        np.testing.assert_array_equal(before.scores[kind], after.scores[kind])
    np.testing.assert_array_equal(before.is_anomaly, after.is_anomaly)
    assert loaded.decision_score == 'oe' and loaded.threshold_ == original.threshold_
    assert loaded.calibration == original.calibration
    assert loaded.autoencoder.config == original.autoencoder.config


def test_metadata_holds_config_and_provenance(saved):
    metadata = read_bundle_metadata(saved[0])
    assert metadata['provenance'] == {'dataset': 'unit test', 'epochs': 0}
    assert metadata['autoencoder']['base_channels'] == 8
    assert metadata['preprocessing']['normalization'] == 'standardize'
    assert set(metadata['thresholds']) == set(saved[1].available_scores) == set(SCORE_KINDS) - {'change'}


def test_bundle_without_oe_head_round_trips(tmp_path, frames64):
    from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector

    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    loaded = load_bundle(save_bundle(tmp_path / 'ae.pt', detector), 'cpu', backend='torch')
    assert loaded.oe_head is None
    np.testing.assert_array_equal(loaded.detect(frames64).mse, detector.detect(frames64).mse)


def test_onnxruntime_backend_scores_like_torch(saved, frames64):
    path, _ = saved
    eager = load_bundle(path, 'cpu', backend='torch')
    onnx = load_bundle(path, 'cpu', backend='onnxruntime')
    assert load_bundle(path, 'cpu').backend == 'onnxruntime'  # the default wherever it is installed
    expected = eager.detect(frames64)
    for batch in (frames64[:1], frames64):  # batch size 1 (a camera node) and a full batch
        got = onnx.detect(batch)
        count = len(batch)
        np.testing.assert_allclose(got.mse, expected.mse[:count], rtol=1e-4)
        np.testing.assert_allclose(got.embedding, expected.embedding[:count], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.error_map, expected.error_map[:count], rtol=1e-4, atol=1e-6)
        for kind in eager.available_scores:  # raw scores within 1e-4; this untrained model has a tiny scale
            scale = eager.calibration.normalizers.get(kind, eager.calibration.normalizers['local']).scale
            np.testing.assert_allclose(got.scores[kind] * scale, expected.scores[kind][:count] * scale, atol=1e-4)
        # the same decisions, except where a score sits on the threshold: calibrated on these very
        # frames, the threshold is one of their scores, and float32 rounding may tip it either way
        raw_distance = np.abs(expected.score[:count] - expected.threshold) * eager.calibration.normalizers['oe'].scale
        decided = raw_distance > 1e-4
        assert decided.sum() >= count // 2
        np.testing.assert_array_equal(got.is_anomaly[decided], expected.is_anomaly[:count][decided])
    with pytest.raises(ValueError, match='backend'):
        load_bundle(path, 'cpu', backend='tensorrt')


def test_without_onnx_the_detector_falls_back_to_torch(saved, frames64, monkeypatch):
    path, _ = saved
    monkeypatch.setitem(sys.modules, 'onnx', None)  # as on a robot where only onnxruntime is installed
    assert load_bundle(path, 'cpu').backend == 'torch'
    with pytest.raises(ValueError, match='onnxruntime and onnx'):
        load_bundle(path, 'cpu', backend='onnxruntime')


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match='not found') as error:
        load_bundle(tmp_path / 'nope.pt')
    assert 'nope.pt' in str(error.value)


@pytest.mark.parametrize('keep', [0, 10, 0.5, -10])
def test_truncated_file(saved, tmp_path, keep):
    data = saved[0].read_bytes()
    cut = tmp_path / 'cut.pt'
    cut.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(BundleError) as error:
        load_bundle(cut)
    assert 'cut.pt' in str(error.value)


def test_foreign_files(tmp_path):
    text = tmp_path / 'notes.pt'
    text.write_text('hello')
    plain_state_dict = tmp_path / 'weights.pt'
    torch.save({'conv.weight': torch.zeros(3)}, plain_state_dict)
    for path in (text, plain_state_dict):
        with pytest.raises(BundleError, match='not|unreadable'):
            load_bundle(path)


class Exploit:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / 'evil.pt'
    torch.save({'format': bundle_module.BUNDLE_FORMAT, 'payload': Exploit()}, evil)
    with pytest.raises(BundleError, match='refused'):
        load_bundle(evil)
    assert not (tmp_path / 'PWNED').exists()
    raw_pickle = tmp_path / 'raw.pt'
    raw_pickle.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(BundleError):
        load_bundle(raw_pickle)
    assert not (tmp_path / 'PWNED').exists()


def _rewrite(path, out, **changes):
    """A copy with payload entries changed, under a checksum that matches them (as a careful forger writes)."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    payload[CHECKSUM_KEY] = checksum(payload)
    torch.save(payload, out)
    return out


def test_newer_format_version(saved, tmp_path):
    newer = _rewrite(saved[0], tmp_path / 'newer.pt', format_version=bundle_module.BUNDLE_VERSION + 1)
    with pytest.raises(BundleError, match='newer'):
        load_bundle(newer)


def test_corrupt_metadata_and_mismatched_weights(saved, tmp_path):
    bad_json = _rewrite(saved[0], tmp_path / 'json.pt', metadata='{not json')
    with pytest.raises(BundleError, match='metadata'):
        load_bundle(bad_json)
    payload = torch.load(saved[0], weights_only=True)
    wrong = _rewrite(
        saved[0],
        tmp_path / 'wrong.pt',
        metadata=payload['metadata'].replace('"base_channels": 8', '"base_channels": 16'),
    )
    with pytest.raises(BundleError, match='inconsistent'):
        load_bundle(wrong)
