import logging

import numpy as np
import pytest
import torch

from visual_anomaly.core import (
    SCORE_KINDS,
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    NotFittedError,
    resolve_device,
)


def test_detect_outputs_for_every_frame(small_detector, frames64):
    result = small_detector.detect(frames64)
    n = len(frames64)
    assert result.mse.shape == (n,) and result.error_map.shape == (n, 64, 64)
    assert result.embedding.shape == (n, 128) and result.oe_probability.shape == (n,)
    assert set(result.scores) == set(small_detector.available_scores) == set(SCORE_KINDS) - {'change'}  # no memory
    assert result.anomaly_map is result.error_map  # without a memory the evidence is the reconstruction error
    assert result.is_anomaly.dtype == bool
    np.testing.assert_allclose(result.error_map.mean(axis=(1, 2)), result.mse, rtol=1e-5)
    assert np.all((result.oe_probability > 0) & (result.oe_probability < 1))


def test_batch_and_single_frame_paths_agree(small_detector, frames64):
    small_detector.batch_size = 5  # also exercises chunking
    batch = small_detector.detect(frames64)
    singles = [small_detector.detect_one(frame) for frame in frames64]
    for key in ('mse', 'score', 'oe_probability'):
        np.testing.assert_allclose(
            np.concatenate([getattr(s, key) for s in singles]), getattr(batch, key), rtol=1e-6, atol=1e-9
        )
    np.testing.assert_allclose(np.concatenate([s.error_map for s in singles]), batch.error_map, rtol=1e-5, atol=1e-7)


def test_colour_order_is_honoured(small_detector, frames64):
    as_rgb = small_detector.detect(frames64).mse
    as_bgr = small_detector.detect(frames64[..., ::-1], color_order='bgr').mse
    np.testing.assert_allclose(as_rgb, as_bgr, rtol=1e-6)


def test_calibration_sets_thresholds_and_normalizes(small_detector, frames64, rng):
    normal = np.concatenate([frames64] * 10)
    calibration = small_detector.calibrate(normal, fpr=0.1)
    assert set(calibration.thresholds) == set(small_detector.available_scores)
    result = small_detector.detect(normal)
    assert np.mean(result.is_anomaly) <= 0.1
    assert abs(np.median(result.scores['reconstruction'])) < 1e-6


def test_best_f1_calibration_needs_anomalies(small_detector, frames64):
    with pytest.raises(ValueError, match='anomalous'):
        small_detector.calibrate(frames64, method='best_f1')
    noise = np.random.default_rng(0).integers(0, 256, size=(12, 64, 64, 3), dtype=np.uint8)
    small_detector.calibrate(frames64, noise, method='best_f1')
    assert small_detector.calibration.thresholds['reconstruction'].method == 'best_f1'


def test_decision_score_and_threshold_override(small_detector, frames64):
    small_detector.calibrate(frames64)
    small_detector.decision_score = 'reconstruction'
    assert small_detector.threshold_ == small_detector.calibration.thresholds['reconstruction'].value
    small_detector.set_threshold(-1e9)
    assert small_detector.predict(frames64).all()
    small_detector.set_threshold(1e9)
    assert not small_detector.predict(frames64).any()
    with pytest.raises(ValueError, match='decision score'):
        small_detector.decision_score = 'magic'


def test_without_oe_head_only_reconstruction_scores_are_available(frames64):
    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    assert detector.available_scores == ('reconstruction', 'local')
    assert detector.decision_score == 'local'
    assert detector.detect(frames64).oe_probability is None
    with pytest.raises(ValueError):
        detector.decision_score = 'fused'
    assert not detector.is_calibrated
    with pytest.raises(NotFittedError, match='not calibrated'):
        detector.threshold_  # noqa: B018
    with pytest.raises(NotFittedError):
        detector.predict(frames64)
    result = detector.detect(frames64)  # scores and maps without a decision
    assert np.isnan(result.threshold) and not result.is_anomaly.any()
    assert np.array_equal(detector.decision_function(frames64), result.score)


def test_empty_batch_rejected(small_detector):
    with pytest.raises(ValueError, match='no frames'):
        small_detector.detect_resized(np.zeros((0, 64, 64, 3), np.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the fallback on a machine without CUDA')
@pytest.mark.parametrize('spec', ['cuda', 'cuda:0', 'CUDA:1'])
def test_cuda_without_cuda_falls_back_to_cpu_with_a_warning(spec, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_device(spec) == torch.device('cpu')
    assert 'CUDA is not available' in caplog.text


def test_device_choices(caplog):
    assert resolve_device('cpu') == torch.device('cpu')
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    with caplog.at_level(logging.WARNING):
        assert resolve_device('auto').type == expected
    assert caplog.text == ''  # auto never warns
    for bad in ('gpu', 'cuda:x', '', 'cpu:0'):
        with pytest.raises(ValueError, match='device'):
            resolve_device(bad)


def test_calibration_on_too_few_frames_warns_or_with_strict_refuses(small_detector, frames64, caplog):
    normal = np.concatenate([frames64] * 5)  # 60 frames, as a short patrol's validation split
    with caplog.at_level(logging.WARNING, logger='visual_anomaly.core.scoring'):
        calibration = small_detector.calibrate(normal, fpr=0.01)
    assert '60 normal frames are too few' in caplog.text and 'at least 1000' in caplog.text
    threshold = calibration.thresholds['local']
    assert (threshold.frames, threshold.target) == (60, 0.01)
    assert threshold.fpr_interval == pytest.approx((0.00042, 0.0596), abs=1e-4)  # the largest score's
    with pytest.raises(ValueError, match='60 normal frames are too few'):
        small_detector.calibrate(normal, fpr=0.01, strict=True)
    assert small_detector.calibration is calibration  # a refused calibration changes nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='visual_anomaly.core.scoring'):
        small_detector.calibrate(normal, fpr=1 / 6, strict=True)  # 10 of 60 frames above the threshold
    assert caplog.text == ''
