import cv2
import numpy as np
import pytest
import torch

from visual_anomaly.core import PreprocessingConfig, Preprocessor, resize_frame


def reference_rgb64(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ('order', 'convert'),
    [
        ('rgb', lambda rgb: rgb),
        ('bgr', lambda rgb: rgb[:, :, ::-1].copy()),
        ('rgba', lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ('bgra', lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])),
    ],
)
def test_colour_orders_give_the_same_rgb(rng, order, convert):
    rgb = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_frame(convert(rgb), order), reference_rgb64(rgb))


@pytest.mark.parametrize('shape', [(48, 64), (48, 64, 1)])
def test_mono_becomes_three_equal_channels(rng, shape):
    mono = rng.integers(0, 256, size=shape, dtype=np.uint8)
    out = resize_frame(mono, 'mono')
    assert out.shape == (64, 64, 3)
    expected = cv2.resize(mono.reshape(48, 64), (64, 64), interpolation=cv2.INTER_AREA)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], expected)


@pytest.mark.parametrize('size', [(64, 64), (17, 300), (1080, 1920), (1, 1)])
def test_any_size_resizes_to_model_input(rng, size):
    frame = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    assert resize_frame(frame).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ('frame', 'order'),
    [
        (np.zeros((10, 10, 3), np.float32), 'rgb'),
        (np.zeros((10, 10, 4), np.uint8), 'rgb'),
        (np.zeros((10, 10, 3), np.uint8), 'mono'),
        (np.zeros((0, 10, 3), np.uint8), 'rgb'),
        (np.zeros((10, 10, 3), np.uint8), 'yuv'),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(frame, order):
    with pytest.raises(ValueError):
        resize_frame(frame, order)


def test_per_image_standardization_matches_published_formula(rng):
    batch = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    out = Preprocessor(PreprocessingConfig(normalization='standardize')).normalize(batch)
    x = batch.astype(np.float64) / 255.0
    expected = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-7)
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 64, 64)


def test_scale_normalization_and_constant_frames(rng):
    batch = np.full((1, 64, 64, 3), 255, np.uint8)
    assert float(Preprocessor(PreprocessingConfig(normalization='scale')).normalize(batch).max()) == 1.0
    # A constant frame standardizes to zeros, never to NaN.
    assert torch.all(Preprocessor().normalize(batch) == 0)


def test_unknown_normalization_rejected():
    with pytest.raises(ValueError, match='normalization'):
        PreprocessingConfig(normalization='zscore')


@pytest.mark.parametrize('normalization', ['standardize', 'scale'])
def test_denormalize_inverts_normalize(frames64, normalization):
    preprocessor = Preprocessor(PreprocessingConfig(normalization=normalization))
    restored = preprocessor.denormalize(preprocessor.normalize(frames64), frames64)
    assert restored.dtype == np.uint8
    assert np.abs(restored.astype(int) - frames64.astype(int)).max() <= 1
