"""What the corridor world is made of: frame ground truth, corridor looks, camera poses and placed objects."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from visual_anomaly.data.masks import MASK_SIZE

CAMERA_HEIGHT_M = 0.3
HORIZONTAL_FOV_DEG = 90.0
#: A frame is anomalous when its anomaly covers at least this share of the 64x64 frame the detector
#: scores (4 of its 4,096 pixels, each counted when at least a quarter of its area shows the anomaly);
#: below that the object is out of view or too small to see, and the frame is normal with an empty mask.
MIN_VISIBLE_PIXELS = 4
MIN_VISIBLE_FRACTION = MIN_VISIBLE_PIXELS / MASK_SIZE**2
TRICKY_AREA_FRACTION = 0.01  # visible anomalies covering less of the 64x64 frame than this are difficulty 1


@dataclass(frozen=True)
class FrameInfo:
    """Ground truth of one rendered frame: ``label`` is the class of the visible anomaly, 0 when none is visible."""

    label: int
    env: int
    difficulty: int  # 1 = small or low-contrast ("tricky"), as in the dataset's metadata
    camera_z: float  # robot position along the corridor, metres
    coverage: float  # share of the 64x64 frame the visible anomaly covers (0 for a normal frame)


@dataclass(frozen=True)
class Environment:
    """The look of one corridor: geometry, palette and fixtures."""

    width: float
    height: float
    wall: np.ndarray
    floor_a: np.ndarray
    floor_b: np.ndarray
    ceiling: np.ndarray
    skirting: np.ndarray
    door: np.ndarray
    tile: float
    grout: float
    light_spacing: float
    door_spacing: float
    door_probability: float
    handrail: bool
    gloss: float
    texture: np.ndarray  # smooth noise in [-1, 1], sampled by surface coordinates


@dataclass(frozen=True)
class Pose:
    """Where the camera is (metres) and how it is turned."""

    x: float
    y: float
    z: float
    rotation: np.ndarray  # world-from-camera; camera axes are (right, up, forward)


@dataclass(frozen=True)
class Anomaly:
    """An object placed in the world; its look is fixed by ``seed`` so it stays the same across frames."""

    label: int
    x: float
    z: float
    scale: float
    seed: int


# Hand-picked corridor palettes (RGB): institutional walls, linoleum, tiles, wood.
_PALETTES = (
    dict(
        wall=(214, 211, 200),
        floor_a=(150, 150, 146),
        floor_b=(138, 138, 134),
        ceiling=(225, 225, 220),
        skirting=(70, 70, 75),
        door=(120, 85, 60),
        tile=0.6,
    ),
    dict(
        wall=(222, 205, 170),
        floor_a=(180, 170, 150),
        floor_b=(110, 100, 90),
        ceiling=(235, 232, 225),
        skirting=(100, 80, 60),
        door=(150, 150, 160),
        tile=0.4,
    ),
    dict(
        wall=(170, 185, 200),
        floor_a=(160, 120, 80),
        floor_b=(150, 112, 74),
        ceiling=(210, 214, 218),
        skirting=(60, 60, 60),
        door=(200, 200, 195),
        tile=1.2,
    ),
    dict(
        wall=(235, 235, 235),
        floor_a=(90, 110, 120),
        floor_b=(84, 103, 112),
        ceiling=(240, 240, 240),
        skirting=(40, 50, 60),
        door=(180, 60, 50),
        tile=0.5,
    ),
    dict(
        wall=(200, 210, 190),
        floor_a=(200, 200, 195),
        floor_b=(190, 190, 186),
        ceiling=(220, 220, 215),
        skirting=(90, 100, 80),
        door=(90, 110, 140),
        tile=0.3,
    ),
    dict(
        wall=(190, 170, 160),
        floor_a=(120, 95, 85),
        floor_b=(105, 85, 75),
        ceiling=(215, 210, 205),
        skirting=(60, 40, 35),
        door=(70, 60, 55),
        tile=0.45,
    ),
)


def _smooth_noise(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    coarse = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.0)
    noise = 0.6 * coarse + 0.4 * fine
    return (noise / (np.abs(noise).max() + 1e-6)).astype(np.float32)


def make_environment(rng: np.random.Generator, index: int) -> Environment:
    """Corridor ``index``: one of the hand-picked palettes (cycled by ``index``), jittered by ``rng``."""
    palette = _PALETTES[index % len(_PALETTES)]

    def jitter(color: tuple[int, int, int], amount: float = 12.0) -> np.ndarray:
        return np.clip(np.array(color, np.float32) + rng.normal(0.0, amount, 3), 0, 255).astype(np.float32)

    return Environment(
        width=float(rng.uniform(1.8, 3.0)),
        height=float(rng.uniform(2.5, 3.2)),
        wall=jitter(palette['wall']),
        floor_a=jitter(palette['floor_a']),
        floor_b=jitter(palette['floor_b'], 4.0),
        ceiling=jitter(palette['ceiling'], 6.0),
        skirting=jitter(palette['skirting']),
        door=jitter(palette['door'], 20.0),
        tile=float(palette['tile'] * rng.uniform(0.85, 1.15)),
        grout=float(rng.uniform(0.01, 0.025)),
        light_spacing=float(rng.uniform(2.5, 4.5)),
        door_spacing=float(rng.uniform(4.0, 7.0)),
        door_probability=float(rng.uniform(0.4, 0.8)),
        handrail=bool(rng.random() < 0.5),
        gloss=float(rng.uniform(0.1, 0.45)),
        texture=_smooth_noise(rng),
    )


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation: yaw about the vertical axis, then pitch, then roll (radians)."""
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (ry @ rx @ rz).astype(np.float32)
