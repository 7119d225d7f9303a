"""Photo worlds: corridors of two buildings with photographic textures and photo cut-out anomalies.

An independently written renderer (:mod:`.photo_render`), with the interface of
:class:`~training.world.corridor.CorridorWorld`: ``render`` one frame or ``patrol`` a stream, each
with its :class:`~training.world.scene.FrameInfo` and 64x64 mask. Buildings are chosen by name:

- ``photo-b``: a tuning building (gravel floor, brick walls, bright neutral light, camera 0.35 m, 80 degrees).
- ``photo-c``: HELD OUT. Never use it to choose methods or settings; only to report how a choice made
  elsewhere does in a building it never saw (green brick-tile floor, moon-plaster walls, warm dimmer
  light, camera 0.22 m, 100 degrees, other posters).

The anomaly classes are the photo worlds' own (:data:`PHOTO_CLASSES`: person, box, animal, small_object,
tape, puddle, paper, cable, open_door, debris); ``FrameInfo.label`` holds their codes, named by
:data:`PHOTO_CLASSES` (and :func:`~training.world.dataset.world_class_names`). Ground truth follows
visibility as in the corridor world (:func:`~training.world.corridor.visible_ground_truth`). Needs
scikit-image (off-robot only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from training.world.corridor import visible_ground_truth
from training.world.photo_assets import PHOTO_CLASSES, load_building, load_sprites, photo_class_code
from training.world.photo_render import PhotoRenderer
from training.world.photo_surfaces import OPEN_DOOR
from training.world.scene import TRICKY_AREA_FRACTION, Anomaly, FrameInfo, Pose, camera_rotation
from visual_anomaly.data.masks import MASK_SIZE

_PLACEMENT_TRIES = 10  # render() places an object this many times at most to get it in view
_PASSED_M = 0.5  # a patrol's object leaves the scene when the robot is this far past it


def photo_classes(classes: Sequence[int | str] | None) -> list[int]:
    """Photo-world class codes of ``classes`` (names or codes), or all of them when None or empty."""
    chosen = [photo_class_code(item) for item in classes or ()]
    if 0 in chosen:
        raise ValueError('"normal" is not an anomaly class')
    return chosen or [code for code in PHOTO_CLASSES if code]


def _frame_info(label: int, env: int, mask: np.ndarray, camera_z: float) -> FrameInfo:
    coverage = float(mask.mean())
    difficulty = int(bool(label) and coverage < TRICKY_AREA_FRACTION)
    return FrameInfo(label=label, env=env, difficulty=difficulty, camera_z=camera_z, coverage=coverage)


class PhotoWorld:
    """Corridors of photo building ``building`` seen by a ground robot's camera.

    Args:
        building: ``photo-b`` (tuning) or ``photo-c`` (held out: never for choosing methods or settings).
        seed: fixes where the doors and posters of each corridor are.
        image_size: side of the square RGB frames.
        n_environments: number of corridors of the building (same look, different layout).
        jpeg_quality: (low, high) JPEG quality applied to each frame, or None to skip compression.
        noise_std: standard deviation of the Gaussian sensor noise, in 0..255 units.
    """

    def __init__(
        self,
        building: str = 'photo-b',
        seed: int = 0,
        image_size: int = 128,
        n_environments: int = 4,
        jpeg_quality: tuple[int, int] | None = (75, 95),
        noise_std: float = 2.0,
    ) -> None:
        if image_size < 16 or n_environments < 1 or noise_std < 0:
            raise ValueError('image_size must be >= 16, n_environments >= 1 and noise_std >= 0')
        self.building = load_building(building)
        self.seed = seed
        self.image_size = image_size
        sprites = load_sprites()
        self.environments = [
            PhotoRenderer(self.building, sprites, image_size, seed * n_environments + i) for i in range(n_environments)
        ]
        self.jpeg_quality = jpeg_quality
        self.noise_std = noise_std

    def random_pose(self, rng: np.random.Generator, env: int, camera_z: float) -> Pose:
        """A robot pose anywhere across the corridor with the jitter of a moving ground robot."""
        b = self.building
        return Pose(
            x=float(rng.uniform(-0.12, 0.12) * b.width),
            y=float(b.camera_height + rng.normal(0, 0.01)),
            z=float(camera_z),
            rotation=camera_rotation(
                math.radians(rng.uniform(-8, 8)), math.radians(rng.normal(-2.0, 1.5)), math.radians(rng.normal(0, 1.0))
            ),
        )

    def place_anomaly(self, rng: np.random.Generator, label: int, env: int, z: float) -> Anomaly:
        """A random instance of class ``label`` at distance ``z`` along the corridor."""
        if label not in PHOTO_CLASSES or not label:
            raise ValueError(f'unknown photo-world anomaly class {label}; known: {sorted(PHOTO_CLASSES)[1:]}')
        half = self.building.width / 2
        x = float(rng.choice([-half, half]) * 0.99) if label == OPEN_DOOR else float(rng.uniform(-0.6, 0.6) * half)
        return Anomaly(label=label, x=x, z=float(z), scale=1.0, seed=int(rng.integers(2**31)))

    def render_pose(
        self,
        rng: np.random.Generator,
        env: int,
        pose: Pose,
        anomalies: Sequence[Anomaly] = (),
        gain: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The RGB frame (uint8) from ``pose`` with ``anomalies``, and the share of each pixel they cover (0..1).

        ``gain`` is the camera's exposure (None: a random one between 0.85 and 1.15).
        """
        image, painted = self.environments[env].render(pose, anomalies)
        gain = float(rng.uniform(0.85, 1.15)) if gain is None else gain
        return self._finish(image * gain, rng), painted

    def render(
        self, rng: np.random.Generator, label: int = 0, env: int | None = None, camera_z: float | None = None
    ) -> tuple[np.ndarray, FrameInfo, np.ndarray]:
        """One RGB frame (uint8, image_size x image_size x 3) showing anomaly class ``label`` (0 = none).

        The object is placed again (up to ``_PLACEMENT_TRIES`` times) until it is in view; returns the
        frame, its ground truth and its 64x64 mask.
        """
        env = int(rng.integers(len(self.environments))) if env is None else env
        camera_z = float(rng.uniform(0, 500)) if camera_z is None else camera_z
        pose = self.random_pose(rng, env, camera_z)
        anomalies: list[Anomaly] = []
        image, painted = self.environments[env].render(pose)
        for _ in range(_PLACEMENT_TRIES if label else 0):
            ahead = rng.uniform(2.0, 4.0) if label in (1, OPEN_DOOR) else rng.uniform(1.0, 2.5)
            anomalies = [self.place_anomaly(rng, label, env, camera_z + ahead)]
            image, painted = self.environments[env].render(pose, anomalies)
            if visible_ground_truth(label, painted)[0]:
                break
        label, mask = visible_ground_truth(label, painted)
        frame = self._finish(image * float(rng.uniform(0.85, 1.15)), rng)
        return frame, _frame_info(label, env, mask, camera_z), mask

    def patrol(
        self,
        n_frames: int,
        rng: np.random.Generator,
        anomaly_rate: float = 0.0,
        classes: Sequence[int | str] | None = None,
        env: int = 0,
        speed_m_per_frame: float = 0.06,
        appear_ahead_m: float = 5.0,
    ) -> tuple[np.ndarray, list[FrameInfo], np.ndarray]:
        """A temporally coherent stream: the robot drives down corridor ``env`` and passes anomalies.

        One object at a time comes into the scene ``appear_ahead_m`` ahead and leaves it once passed;
        the gaps between objects keep about ``anomaly_rate`` of the frames showing one. Classes (names
        or codes) come in turn, each round in a random order. Returns the frames, their ground truth
        and 64x64 masks; a frame is labelled with the object's class only while it is in view.
        """
        if not 0.0 <= anomaly_rate < 1.0:
            raise ValueError(f'anomaly_rate must be in [0, 1), got {anomaly_rate}')
        codes = photo_classes(classes)
        frames = np.empty((n_frames, self.image_size, self.image_size, 3), np.uint8)
        masks = np.zeros((n_frames, MASK_SIZE, MASK_SIZE), bool)
        infos: list[FrameInfo] = []
        drive = _Drive(rng, self.building.width / 2, self.building.camera_height, speed_m_per_frame)
        anomaly: Anomaly | None = None
        turns: list[int] = []
        next_entry = _first_entry(rng, anomaly_rate, appear_ahead_m / speed_m_per_frame) if anomaly_rate else n_frames
        for i in range(n_frames):
            if anomaly is None and i >= next_entry:
                turns = turns or [int(code) for code in rng.permutation(codes)]
                anomaly = self.place_anomaly(rng, turns.pop(), env, drive.z + appear_ahead_m)
            pose, gain = drive.step()
            frames[i], painted = self.render_pose(rng, env, pose, [anomaly] if anomaly else [], gain)
            label, masks[i] = visible_ground_truth(anomaly.label if anomaly else 0, painted)
            infos.append(_frame_info(label, env, masks[i], pose.z))
            if anomaly is not None and anomaly.z < drive.z - _PASSED_M:
                anomaly = None
                anomalous = sum(info.label > 0 for info in infos)
                next_entry = i + 1 + _normal_gap(rng, i + 1, anomalous, anomaly_rate)
        return frames, infos, masks

    def _finish(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sensor noise, 8-bit quantization and JPEG compression of a float RGB image."""
        out = image * 255.0
        if self.noise_std > 0:
            out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(self.noise_std)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if self.jpeg_quality is not None:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, encoded = cv2.imencode('.jpg', out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()
        return out


class _Drive:
    """A patrol's motion: steady speed down the corridor, a drifting heading, camera shake, slow exposure drift."""

    def __init__(self, rng: np.random.Generator, half_width: float, camera_height: float, speed: float) -> None:
        self.rng, self.half_width, self.camera_height, self.speed = rng, half_width, camera_height, speed
        self.z, self.x, self.yaw, self.gain = float(rng.uniform(0, 500)), 0.0, 0.0, 1.0

    def step(self) -> tuple[Pose, float]:
        """The pose and exposure gain of the next frame (then the robot moves on)."""
        rng, limit = self.rng, 0.35 * self.half_width
        self.yaw = float(np.clip(0.92 * self.yaw + rng.normal(0, 0.012), -0.15, 0.15))
        self.x = float(np.clip(self.x + self.speed * math.sin(self.yaw) + rng.normal(0, 0.004), -limit, limit))
        self.gain = float(np.clip(self.gain + rng.normal(0, 0.01) - 0.05 * (self.gain - 1.0), 0.85, 1.15))
        rotation = camera_rotation(self.yaw, math.radians(-2 + rng.normal(0, 0.5)), math.radians(rng.normal(0, 0.5)))
        pose = Pose(x=self.x, y=self.camera_height + float(rng.normal(0, 0.004)), z=self.z, rotation=rotation)
        self.z += self.speed
        return pose, self.gain


def _first_entry(rng: np.random.Generator, rate: float, frames_in_view: float) -> int:
    """Frame at which the first object enters: within one typical gap (objects stay ~``frames_in_view``)."""
    return int(rng.integers(round(frames_in_view * (1 / rate - 1)) + 1))


def _normal_gap(rng: np.random.Generator, frames: int, anomalous: int, rate: float) -> int:
    """Normal frames before the next object: what brings the anomalous share back to ``rate``, jittered."""
    needed = anomalous * (1 - rate) / rate - (frames - anomalous)
    return max(0, round(needed * rng.uniform(0.5, 1.5)))
