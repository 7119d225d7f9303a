"""The published augmentations: seeded, shape-preserving, and off at probability 0."""

import numpy as np
import pytest

from training.augment import AugmentConfig, augment_batch, smooth_noise


def test_augmentation_is_seeded_and_keeps_shape(frames64):
    a = augment_batch(frames64, np.random.default_rng(0))
    b = augment_batch(frames64, np.random.default_rng(0))
    c = augment_batch(frames64, np.random.default_rng(1))
    assert a.shape == frames64.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_probability_zero_is_identity_and_one_changes_every_frame(frames64):
    unchanged = augment_batch(frames64, np.random.default_rng(0), AugmentConfig(probability=0.0))
    np.testing.assert_array_equal(unchanged, frames64)
    changed = augment_batch(frames64, np.random.default_rng(0), AugmentConfig(probability=1.0))
    assert all(not np.array_equal(x, y) for x, y in zip(changed, frames64, strict=True))


def test_smooth_noise_is_bounded_and_smooth():
    noise = smooth_noise(64, np.random.default_rng(0))
    assert noise.min() >= -1 and noise.max() <= 1
    assert np.abs(np.diff(noise, axis=0)).mean() < 0.1 * np.abs(noise).mean() + 0.05


def test_invalid_probability_is_refused():
    with pytest.raises(ValueError, match='probability'):
        AugmentConfig(probability=1.5)
