"""A synthetic corridor world seen from a patrolling ground robot, with Hazards&Robots-style anomalies.

The real corridor dataset cannot be downloaded on our machines, so tests and the main job train on
this world instead. Frames are ray cast from a pinhole camera about 0.3 m above the floor (floor,
walls, ceiling, tiles, doors, skirting, ceiling lights and their reflections), objects are
projected and drawn on top, then lighting changes, vignetting, sensor noise and JPEG compression
are applied. Everything is deterministic given the seed; :mod:`training.world.dataset` writes the
on-disk layout of the real dataset so the same loader reads both.

Ground truth follows visibility: the renderer knows which pixels an anomaly painted, and a frame is
anomalous when they cover at least ``MIN_VISIBLE_FRACTION`` of the 64x64 frame the detector scores
(:func:`visible_ground_truth`); frames come with that 64x64 mask (empty for a normal frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from training.world.anomalies import DRAWERS, draw_anomaly
from training.world.background import camera_rays, render_background
from training.world.scene import (
    CAMERA_HEIGHT_M,
    HORIZONTAL_FOV_DEG,
    MIN_VISIBLE_FRACTION,
    TRICKY_AREA_FRACTION,
    Anomaly,
    Environment,
    FrameInfo,
    Pose,
    camera_rotation,
    make_environment,
)
from visual_anomaly.data.masks import MASK_SIZE, resize_mask
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES, class_code

_HUMAN, _DOOR, _TROLLEY = (class_code(name) for name in ('human', 'door', 'trolley'))
_PLACEMENT_TRIES = 10  # render() places an object this many times at most to get it in view
_PASSED_M = 1.5  # a patrol's object leaves the scene when the robot is this far past it


def anomaly_classes(classes: Sequence[int] | None) -> list[int]:
    """``classes`` as a list, or every anomaly class of the taxonomy when None or empty."""
    chosen = [] if classes is None else [int(code) for code in classes]
    return chosen or list(range(1, len(ANOMALY_CLASSES)))


def visible_ground_truth(label: int, painted: np.ndarray) -> tuple[int, np.ndarray]:
    """The label and 64x64 mask of a frame where an anomaly of class ``label`` covers ``painted`` of each pixel.

    ``painted`` (frame size, as :meth:`CorridorWorld.render_pose` returns it) becomes a :data:`MASK_SIZE`
    mask by :func:`resize_mask`: the model pixels at least a quarter covered. When the mask covers less
    than ``MIN_VISIBLE_FRACTION`` of the frame (or ``label`` is 0) the frame is normal: label 0, empty mask.
    """
    mask = resize_mask(painted, MASK_SIZE)
    if not label or mask.mean() < MIN_VISIBLE_FRACTION:
        return 0, np.zeros_like(mask)
    return label, mask


def _frame_info(label: int, env: int, mask: np.ndarray, camera_z: float) -> FrameInfo:
    coverage = float(mask.mean())
    difficulty = int(bool(label) and coverage < TRICKY_AREA_FRACTION)
    return FrameInfo(label=label, env=env, difficulty=difficulty, camera_z=camera_z, coverage=coverage)


class CorridorWorld:
    """Corridor environments seen by a ground robot's camera; ``render`` one frame or ``patrol`` a stream.

    Args:
        seed: fixes the environments (geometry, palettes, textures).
        image_size: side of the square RGB frames (the dataset's frames are 512x512).
        n_environments: number of distinct corridors (the dataset's ``env`` column).
        jpeg_quality: (low, high) JPEG quality applied to each frame, or None to skip compression.
        noise_std: standard deviation of the Gaussian sensor noise, in 0..255 units.
    """

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 512,
        n_environments: int = 4,
        jpeg_quality: tuple[int, int] | None = (70, 95),
        noise_std: float = 2.0,
    ) -> None:
        if image_size < 16 or n_environments < 1 or noise_std < 0:
            raise ValueError('image_size must be >= 16, n_environments >= 1 and noise_std >= 0')
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.image_size = image_size
        self.environments = [make_environment(rng, i) for i in range(n_environments)]
        self.jpeg_quality = jpeg_quality
        self.noise_std = noise_std
        self.focal = (image_size / 2) / math.tan(math.radians(HORIZONTAL_FOV_DEG / 2))
        self._rays = camera_rays(image_size, self.focal)
        yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
        radius2 = ((xx - image_size / 2) ** 2 + (yy - image_size / 2) ** 2) / (image_size / 2) ** 2
        self._vignette = (1.0 - 0.22 * radius2)[..., None].astype(np.float32)

    def random_pose(self, rng: np.random.Generator, env: int, camera_z: float) -> Pose:
        """A robot pose anywhere across the corridor with the jitter of a moving ground robot."""
        width = self.environments[env].width
        return Pose(
            x=float(rng.uniform(-0.12, 0.12) * width),
            y=float(CAMERA_HEIGHT_M + rng.normal(0, 0.01)),
            z=float(camera_z),
            rotation=camera_rotation(
                math.radians(rng.uniform(-8, 8)), math.radians(rng.normal(-1.0, 1.5)), math.radians(rng.normal(0, 1.0))
            ),
        )

    def place_anomaly(self, rng: np.random.Generator, label: int, env: int, z: float) -> Anomaly:
        """A random instance of class ``label`` at distance ``z`` along the corridor."""
        if label not in DRAWERS:
            raise ValueError(f'unknown anomaly class {label}; known: {sorted(DRAWERS)}')
        half = self.environments[env].width / 2
        x = float(rng.uniform(-0.7, 0.7) * half) if label != _DOOR else float(rng.choice([-half, half]))
        scale = float(rng.uniform(0.9, 1.1) if label in (_HUMAN, _DOOR) else rng.uniform(0.6, 1.4))
        return Anomaly(label=label, x=x, z=float(z), scale=scale, seed=int(rng.integers(2**31)))

    def render_pose(
        self, rng: np.random.Generator, env: int, pose: Pose, anomalies: Sequence[Anomaly] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render the corridor from ``pose`` with ``anomalies``; the RGB frame and the share of each pixel they cover.

        The share is uint8, 255 = fully covered (anti-aliased edges in between); a pixel the anomalies
        left unchanged is 0.
        """
        image = render_background(self.environments[env], pose, self._rays, self.seed)
        painted = self._draw(image, self.environments[env], pose, anomalies)
        return self._finish(image, rng), painted

    def render(
        self, rng: np.random.Generator, label: int = 0, env: int | None = None, camera_z: float | None = None
    ) -> tuple[np.ndarray, FrameInfo, np.ndarray]:
        """One RGB frame (uint8, image_size x image_size x 3) showing anomaly class ``label`` (0 = none).

        The object is placed again (up to ``_PLACEMENT_TRIES`` times) until it is in view; returns the
        frame, its ground truth and its 64x64 mask (see :func:`visible_ground_truth`).
        """
        env = int(rng.integers(len(self.environments))) if env is None else env
        camera_z = float(rng.uniform(0, 500)) if camera_z is None else camera_z
        pose = self.random_pose(rng, env, camera_z)
        environment = self.environments[env]
        background = render_background(environment, pose, self._rays, self.seed)
        image, painted = background, np.zeros(background.shape[:2], np.uint8)
        for _ in range(_PLACEMENT_TRIES if label else 0):
            ahead = rng.uniform(2.0, 4.0) if label in (_HUMAN, _DOOR, _TROLLEY) else rng.uniform(1.0, 2.5)
            anomaly = self.place_anomaly(rng, label, env, camera_z + ahead)
            image = background.copy()
            painted = self._draw(image, environment, pose, [anomaly])
            if visible_ground_truth(label, painted)[0]:
                break
        label, mask = visible_ground_truth(label, painted)
        return self._finish(image, rng), _frame_info(label, env, mask, camera_z), mask

    def patrol(
        self,
        n_frames: int,
        rng: np.random.Generator,
        anomaly_rate: float = 0.0,
        classes: Sequence[int] | None = None,
        env: int = 0,
        speed_m_per_frame: float = 0.05,
        appear_ahead_m: float = 5.0,
    ) -> tuple[np.ndarray, list[FrameInfo], np.ndarray]:
        """A temporally coherent stream: the robot drives down the corridor and passes anomalies.

        One object at a time comes into the scene ``appear_ahead_m`` ahead and leaves it once passed;
        the gaps between objects are drawn so that about ``anomaly_rate`` of the frames show one
        (see :func:`_frames_to_next`). Classes come in turn, in a random order. Returns the frames,
        their ground truth and their 64x64 masks: a frame is labelled with the object's class only
        while the object is in view (:func:`visible_ground_truth`).
        """
        if not 0.0 <= anomaly_rate < 1.0:
            raise ValueError(f'anomaly_rate must be in [0, 1), got {anomaly_rate}')
        turns = _class_turns(rng, anomaly_classes(classes))
        frames = np.empty((n_frames, self.image_size, self.image_size, 3), np.uint8)
        masks = np.zeros((n_frames, MASK_SIZE, MASK_SIZE), bool)
        infos: list[FrameInfo] = []
        z, x, yaw = float(rng.uniform(0, 100)), 0.0, 0.0
        anomaly: Anomaly | None = None
        next_entry = n_frames  # the first object enters within a typical gap (objects stay in view ~appear_ahead_m)
        if anomaly_rate > 0:
            next_entry = int(rng.integers(round(appear_ahead_m / speed_m_per_frame * (1 / anomaly_rate - 1)) + 1))
        half = self.environments[env].width / 2
        for i in range(n_frames):
            if anomaly is None and i >= next_entry:
                anomaly = self.place_anomaly(rng, next(turns), env, z + appear_ahead_m)
            x, yaw, pose = _drive(rng, x, yaw, z, half, speed_m_per_frame)
            frames[i], painted = self.render_pose(rng, env, pose, [anomaly] if anomaly is not None else [])
            label, masks[i] = visible_ground_truth(anomaly.label if anomaly is not None else 0, painted)
            infos.append(_frame_info(label, env, masks[i], z))
            z += speed_m_per_frame
            if anomaly is not None and anomaly.z < z - _PASSED_M:
                anomaly = None
                anomalous = sum(info.label > 0 for info in infos)
                next_entry = i + 1 + _frames_to_next(rng, i + 1, anomalous, anomaly_rate)
        return frames, infos, masks

    def _draw(
        self, image: np.ndarray, environment: Environment, pose: Pose, anomalies: Sequence[Anomaly]
    ) -> np.ndarray:
        """Draw ``anomalies`` into ``image``, farthest first; the share of each pixel they cover (uint8, x 255)."""
        painted = np.zeros(image.shape[:2], np.uint8)
        for anomaly in sorted(anomalies, key=lambda a: -(a.z - pose.z)):
            np.maximum(painted, draw_anomaly(image, environment, pose, self.focal, anomaly), out=painted)
        return painted

    def _finish(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Lighting gain, vignetting, sensor noise and JPEG compression."""
        gain = rng.uniform(0.8, 1.15) * (1 + rng.normal(0, 0.03, 3))
        out = image.astype(np.float32) * self._vignette * gain.astype(np.float32)
        if self.noise_std > 0:
            out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(self.noise_std)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if self.jpeg_quality is not None:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, encoded = cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        return out


def _drive(
    rng: np.random.Generator, x: float, yaw: float, z: float, half_width: float, speed: float
) -> tuple[float, float, Pose]:
    """One patrol step's heading and lateral drift, and the camera pose at ``z`` with its jitter."""
    yaw = float(np.clip(0.9 * yaw + rng.normal(0, 0.01), -0.12, 0.12))
    x = float(np.clip(x + speed * math.sin(yaw) + rng.normal(0, 0.003), -0.4 * half_width, 0.4 * half_width))
    pose = Pose(
        x=x,
        y=CAMERA_HEIGHT_M + float(rng.normal(0, 0.003)),
        z=z,
        rotation=camera_rotation(yaw, math.radians(-1 + rng.normal(0, 0.4)), math.radians(rng.normal(0, 0.3))),
    )
    return x, yaw, pose


def _class_turns(rng: np.random.Generator, classes: Sequence[int]) -> Iterator[int]:
    """``classes`` in turn, endlessly, each round in a new random order."""
    while True:
        yield from (int(code) for code in rng.permutation(classes))


def _frames_to_next(rng: np.random.Generator, frames: int, anomalous: int, rate: float) -> int:
    """Normal frames before the next object enters: what brings the anomalous share back to ``rate``, jittered.

    Objects differ in how long they stay in view, so the gap makes up for the frames seen so far.
    """
    needed = anomalous * (1 - rate) / rate - (frames - anomalous)
    return max(0, round(needed * rng.uniform(0.5, 1.5)))
