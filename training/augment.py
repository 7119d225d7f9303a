"""The published training augmentations, applied to batches of 64x64 uint8 RGB frames.

Each of horizontal flip, brightness/contrast (+-10%), random sized crop (a 50..64 pixel square
resized back to 64), rotation (+-10 degrees) and a Perlin-style smooth noise overlay is applied
with probability 0.5, independently per frame, from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; ``probability`` applies to each transform separately."""

    probability: float = 0.5
    brightness_contrast: float = 0.1
    min_crop: int = 50
    max_rotation_deg: float = 10.0
    noise_amplitude: float = 12.0  # in 0..255 pixel units

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f'probability must be in [0, 1], got {self.probability}')


def smooth_noise(size: int, rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    """Perlin-style fractal noise in [-1, 1]: random grids at doubling resolutions, upsampled and summed."""
    total = np.zeros((size, size), np.float32)
    amplitude, weight = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        weight += amplitude
        amplitude /= 2
    return np.clip(total / weight, -1.0, 1.0)


def _augment_one(frame: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    size = frame.shape[0]
    p = config.probability
    out = frame
    if rng.random() < p:
        out = out[:, ::-1]
    if rng.random() < p:
        crop = int(rng.integers(min(config.min_crop, size), size + 1))
        top, left = rng.integers(0, size - crop + 1, 2)
        out = cv2.resize(
            np.ascontiguousarray(out[top : top + crop, left : left + crop]), (size, size), interpolation=cv2.INTER_AREA
        )
    if rng.random() < p:
        angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    work = None
    if rng.random() < p:
        strength = config.brightness_contrast
        contrast, brightness = 1 + rng.uniform(-strength, strength), rng.uniform(-strength, strength) * 255
        work = out.astype(np.float32)
        work = (work - work.mean()) * contrast + work.mean() + brightness
    if rng.random() < p:
        work = out.astype(np.float32) if work is None else work
        work += config.noise_amplitude * smooth_noise(size, rng)[..., None]
    if work is not None:
        out = np.clip(work, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def augment_batch(frames: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None) -> np.ndarray:
    """Augmented copy of (N, S, S, 3) uint8 frames."""
    config = config or AugmentConfig()
    return np.stack([_augment_one(frame, rng, config) for frame in frames])
