"""A synthetic corridor world seen from a patrolling ground robot, with Hazards&Robots-style anomalies.

The real corridor dataset cannot be downloaded on our machines, so tests and the main job train on
this world instead. Frames are ray cast from a pinhole camera about 0.3 m above the floor (floor,
walls, ceiling, tiles, doors, skirting, ceiling lights and their reflections), objects are
projected and drawn on top, then lighting changes, vignetting, sensor noise and JPEG compression
are applied. Everything is deterministic given the seed, and ``write_hazards_layout`` writes the
on-disk layout of the real dataset so the same loader reads both.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ANOMALY_CLASSES: dict[int, str] = {
    0: 'normal',
    1: 'water',
    2: 'cable',
    3: 'cellophane',
    4: 'defects',
    5: 'hanging_cable',
    6: 'floor',
    7: 'human',
    8: 'screws',
    9: 'boxes',
    10: 'door',
    11: 'cones',
    12: 'tape',
    13: 'trolley',
    14: 'debris',
    15: 'misc',
    16: 'shard',
    17: 'sawdust',
    18: 'foam',
    19: 'clutter',
}
#: Classes that cover a good part of a 64x64 frame; the rest are small or low-contrast ("tricky").
LARGE_CLASSES: tuple[int, ...] = (7, 9, 10, 11, 13, 15, 19)

CAMERA_HEIGHT_M = 0.3
HORIZONTAL_FOV_DEG = 90.0
TRICKY_AREA_FRACTION = 0.01  # anomalies covering less of the frame than this are marked difficulty 1
_FAR = 1e4


@dataclass(frozen=True)
class FrameInfo:
    """Ground truth of one rendered frame."""

    label: int
    env: int
    difficulty: int  # 1 = small or low-contrast ("tricky"), as in the dataset's metadata
    camera_z: float  # robot position along the corridor, metres


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


def _make_environment(rng: np.random.Generator, index: int) -> Environment:
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


def _hash01(values: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random numbers in [0, 1) for integer cells (doors, tiles)."""
    v = (values.astype(np.int64) * 73856093) ^ (salt * 19349663)
    v = (v ^ (v >> 13)) * 1274126177
    return ((v ^ (v >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
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


class _Painter:
    """Projects world-space primitives into the frame and draws them, shaded by distance."""

    def __init__(self, image: np.ndarray, pose: Pose, focal: float, attenuation: float) -> None:
        self.image = image
        self.pose = pose
        self.focal = focal
        self.center = image.shape[1] / 2.0
        self.attenuation = attenuation
        self.covered = np.zeros(image.shape[:2], np.uint8)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        offset = np.asarray(points, np.float32) - np.array([self.pose.x, self.pose.y, self.pose.z], np.float32)
        return offset @ self.pose.rotation

    def project(self, points: np.ndarray) -> np.ndarray | None:
        cam = self.to_camera(points)
        if (cam[:, 2] < 0.05).any():
            return None
        u = self.center + self.focal * cam[:, 0] / cam[:, 2]
        v = self.center - self.focal * cam[:, 1] / cam[:, 2]
        return np.stack([u, v], axis=1)

    def _shade(self, color: Sequence[float], points: np.ndarray, light: float) -> tuple[float, ...]:
        depth = float(np.mean(self.to_camera(points)[:, 2]))
        factor = light * (0.55 + 0.45 * math.exp(-depth / self.attenuation))
        return tuple(float(np.clip(c * factor, 0, 255)) for c in color)

    def polygon(self, points: np.ndarray, color: Sequence[float], alpha: float = 1.0, light: float = 1.0) -> None:
        pixels = self.project(points)
        if pixels is None:
            return
        shaded = self._shade(color, points, light)
        contour = [np.round(pixels * 16).astype(np.int32)]
        if alpha >= 1.0:
            cv2.fillPoly(self.image, contour, shaded, cv2.LINE_AA, shift=4)
        else:
            layer = self.image.copy()
            cv2.fillPoly(layer, contour, shaded, cv2.LINE_AA, shift=4)
            cv2.addWeighted(layer, alpha, self.image, 1.0 - alpha, 0.0, dst=self.image)
        cv2.fillPoly(self.covered, contour, 1, cv2.LINE_8, shift=4)

    def polyline(self, points: np.ndarray, color: Sequence[float], width_m: float, light: float = 1.0) -> None:
        cam = self.to_camera(points)
        keep = cam[:, 2] > 0.05
        if keep.sum() < 2:
            return
        points = np.asarray(points)[keep]
        pixels = self.project(points)
        depth = float(np.median(cam[keep, 2]))
        thickness = max(1, round(self.focal * width_m / depth))
        shaded = self._shade(color, points, light)
        curve = [np.round(pixels * 16).astype(np.int32)]
        cv2.polylines(self.image, curve, False, shaded, thickness, cv2.LINE_AA, shift=4)
        cv2.polylines(self.covered, curve, False, 1, thickness, cv2.LINE_8, shift=4)

    def box(self, center: Sequence[float], size: Sequence[float], yaw: float, color: Sequence[float]) -> None:
        """An axis-aligned-in-yaw cuboid standing on ``center`` (bottom face centre), visible faces shaded."""
        cx, cy, cz = center
        sx, sy, sz = (s / 2 for s in size)
        c, s = math.cos(yaw), math.sin(yaw)
        corners = []
        for dy in (0.0, 2 * sy):
            for dx, dz in ((-sx, -sz), (sx, -sz), (sx, sz), (-sx, sz)):
                corners.append((cx + c * dx + s * dz, cy + dy, cz - s * dx + c * dz))
        corners = np.array(corners, np.float32)
        faces = (  # (vertex indices, outward normal in box frame, light)
            ((0, 1, 5, 4), (0, 0, -1), 0.95),
            ((1, 2, 6, 5), (1, 0, 0), 0.75),
            ((2, 3, 7, 6), (0, 0, 1), 0.6),
            ((3, 0, 4, 7), (-1, 0, 0), 0.8),
            ((4, 5, 6, 7), (0, 1, 0), 1.1),
        )
        eye = np.array([self.pose.x, self.pose.y, self.pose.z], np.float32)
        visible = []
        for indices, (nx, ny, nz), light in faces:
            normal = np.array([c * nx + s * nz, ny, -s * nx + c * nz], np.float32)
            quad = corners[list(indices)]
            if float(np.dot(normal, eye - quad.mean(axis=0))) > 0:
                visible.append((float(np.linalg.norm(eye - quad.mean(axis=0))), quad, light))
        for _, quad, light in sorted(visible, key=lambda item: -item[0]):
            self.polygon(quad, color, light=light)

    def disc(self, center: Sequence[float], radius_m: float, color: Sequence[float]) -> None:
        """A sphere seen as a disc (heads, knobs)."""
        point = np.array([center], np.float32)
        pixels = self.project(point)
        if pixels is None:
            return
        depth = float(self.to_camera(point)[0, 2])
        radius = max(1, round(self.focal * radius_m / depth))
        shaded = self._shade(color, point, 1.0)
        centre = tuple(int(v) for v in np.round(pixels[0]))
        cv2.circle(self.image, centre, radius, shaded, -1, cv2.LINE_AA)
        cv2.circle(self.covered, centre, radius, 1, -1)


def _floor_blob(
    x: float, z: float, radius: float, rng: np.random.Generator, n: int = 24, y: float = 0.002
) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = 1.0 + 0.25 * np.sin(angles * rng.integers(2, 5) + rng.uniform(0, 6)) + rng.uniform(-0.1, 0.1, n)
    return np.stack(
        [x + radius * wobble * np.cos(angles), np.full(n, y), z + 0.7 * radius * wobble * np.sin(angles)], axis=1
    ).astype(np.float32)


def _random_color(rng: np.random.Generator, saturated: bool = True) -> np.ndarray:
    hue = rng.integers(0, 180)
    hsv = np.uint8([[[hue, rng.integers(150, 255) if saturated else rng.integers(0, 60), rng.integers(90, 230)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


# One drawing function per anomaly class; each gets the painter, the object and its own rng.
def _draw_water(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    tint = env.floor_a * 0.55 + np.array([10, 25, 45], np.float32)
    p.polygon(_floor_blob(a.x, a.z, 0.45 * a.scale, rng, 32), tint, alpha=0.75)
    for _ in range(3):
        p.polygon(
            _floor_blob(a.x + rng.uniform(-0.2, 0.2), a.z + rng.uniform(-0.15, 0.15), 0.08 * a.scale, rng),
            (235, 240, 245),
            alpha=0.6,
            light=1.1,
        )


def _draw_cable(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    xs = np.linspace(-env.width / 2, env.width / 2, 40)
    zs = a.z + 0.25 * a.scale * np.sin(xs * rng.uniform(1.5, 4.0) + rng.uniform(0, 6)) + rng.uniform(-0.3, 0.3) * xs
    color = rng.choice([(20, 20, 20), (230, 120, 20), (30, 60, 200), (220, 220, 220)])
    p.polyline(np.stack([xs, np.full_like(xs, 0.01), zs], axis=1), color, 0.02 * a.scale)


def _draw_cellophane(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.35 * a.scale, rng, 10), (245, 245, 250), alpha=0.45, light=1.2)
    for _ in range(4):
        start = np.array([a.x + rng.uniform(-0.25, 0.25), 0.003, a.z + rng.uniform(-0.2, 0.2)])
        end = start + np.array([rng.uniform(-0.15, 0.15), 0, rng.uniform(-0.1, 0.1)])
        p.polyline(np.stack([start, end]), (255, 255, 255), 0.01, light=1.2)


def _draw_defects(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.18 * a.scale, rng, 12), env.floor_a * 0.35)
    for _ in range(3):
        steps = rng.normal(0, 0.06, (8, 2)).cumsum(axis=0) * a.scale
        crack = np.stack([a.x + steps[:, 0], np.full(8, 0.003), a.z + steps[:, 1]], axis=1)
        p.polyline(crack, env.floor_a * 0.3, 0.012)


def _draw_hanging_cable(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    t = np.linspace(0, 1, 30)
    drop = env.height - rng.uniform(0.4, 1.6) * a.scale
    xs = a.x + rng.uniform(-0.3, 0.3) * t
    ys = env.height - (env.height - drop) * np.sin(np.pi * t / 2)
    zs = a.z + 0.1 * np.sin(6 * t)
    p.polyline(np.stack([xs, ys, zs], axis=1), rng.choice([(20, 20, 20), (200, 40, 40), (240, 200, 30)]), 0.025)


def _draw_floor(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    w, d = 0.6 * a.scale, 0.8 * a.scale
    quad = np.array(
        [[a.x - w, 0.002, a.z - d], [a.x + w, 0.002, a.z - d], [a.x + w, 0.002, a.z + d], [a.x - w, 0.002, a.z + d]],
        np.float32,
    )
    p.polygon(quad, _random_color(rng, saturated=rng.random() < 0.5))


def _draw_human(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    s = a.scale
    trousers, shirt = _random_color(rng, False) * 0.6, _random_color(rng)
    yaw = rng.uniform(-0.5, 0.5)
    for side in (-1, 1):
        p.box((a.x + side * 0.1 * s, 0, a.z), (0.13 * s, 0.85 * s, 0.15 * s), yaw, trousers)
    p.box((a.x, 0.85 * s, a.z), (0.42 * s, 0.6 * s, 0.22 * s), yaw, shirt)
    for side in (-1, 1):
        p.box((a.x + side * 0.26 * s, 0.82 * s, a.z), (0.09 * s, 0.6 * s, 0.1 * s), yaw, shirt * 0.9)
    p.disc((a.x, 1.6 * s, a.z), 0.11 * s, (205, 160, 130))


def _draw_screws(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(8, 20)):
        x, z = a.x + rng.normal(0, 0.15), a.z + rng.normal(0, 0.15)
        start = np.array([x, 0.005, z])
        end = start + np.array([rng.uniform(-0.05, 0.05), 0, rng.uniform(-0.05, 0.05)])
        p.polyline(np.stack([start, end]), (rng.uniform(150, 220),) * 3, 0.015, light=1.2)


def _draw_boxes(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    color = rng.choice([(170, 130, 85), (190, 150, 100), (150, 110, 70), (220, 220, 215)])
    for i in range(rng.integers(1, 3)):
        size = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5)]) * a.scale
        p.box((a.x + 0.4 * i * rng.uniform(-1, 1), 0, a.z + 0.3 * i), size, rng.uniform(-0.6, 0.6), color)


def _draw_door(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    side = 1 if a.x > 0 else -1
    wall_x, width, height = side * env.width / 2, 0.9, 2.05
    opening = np.array(
        [[wall_x, 0, a.z], [wall_x, 0, a.z + width], [wall_x, height, a.z + width], [wall_x, height, a.z]], np.float32
    )
    p.polygon(opening, (40, 38, 35))
    angle = rng.uniform(0.6, 1.4)
    tip_x, tip_z = wall_x - side * width * math.sin(angle), a.z + width * math.cos(angle)
    panel = np.array([[wall_x, 0, a.z], [tip_x, 0, tip_z], [tip_x, height, tip_z], [wall_x, height, a.z]], np.float32)
    p.polygon(panel, env.door, light=0.9)


def _draw_cones(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for i in range(rng.integers(1, 4)):
        x, z, s = a.x + 0.5 * i * rng.uniform(-1, 1), a.z + 0.4 * i, a.scale
        base, top, height = 0.16 * s, 0.025 * s, 0.5 * s
        p.polygon(
            np.array([[x - base, 0, z], [x + base, 0, z], [x + top, height, z], [x - top, height, z]]), (240, 90, 20)
        )
        for level in (0.45, 0.7):
            r0, r1 = base + (top - base) * level, base + (top - base) * (level + 0.1)
            y0, y1 = height * level, height * (level + 0.1)
            p.polygon(
                np.array(
                    [[x - r0, y0, z - 0.01], [x + r0, y0, z - 0.01], [x + r1, y1, z - 0.01], [x - r1, y1, z - 0.01]]
                ),
                (240, 240, 240),
            )


def _draw_tape(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    color = rng.choice([(240, 210, 30), (220, 40, 40), (240, 240, 240), (40, 120, 220)])
    x0, x1 = sorted(rng.uniform(-env.width / 2, env.width / 2, 2))
    width = 0.05 * a.scale
    strip = np.array(
        [[x0, 0.003, a.z], [x1, 0.003, a.z + 0.1], [x1, 0.003, a.z + 0.1 + width], [x0, 0.003, a.z + width]], np.float32
    )
    p.polygon(strip, color)


def _draw_trolley(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    s, metal = a.scale, (150, 155, 160)
    yaw = rng.uniform(-0.4, 0.4)
    for level in (0.15, 0.55, 0.9):
        p.box((a.x, level * s, a.z), (0.55 * s, 0.04 * s, 0.9 * s), yaw, metal)
    for dx in (-0.25, 0.25):
        for dz in (-0.42, 0.42):
            p.box((a.x + dx * s, 0, a.z + dz * s), (0.03 * s, 0.95 * s, 0.03 * s), yaw, (90, 95, 100))
    p.box((a.x, 0.6 * s, a.z), (0.45 * s, 0.3 * s, 0.6 * s), yaw, _random_color(rng))


def _draw_debris(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(4, 10)):
        p.polygon(
            _floor_blob(
                a.x + rng.normal(0, 0.25), a.z + rng.normal(0, 0.25), rng.uniform(0.03, 0.08) * a.scale, rng, 6
            ),
            rng.uniform(40, 160, 3),
        )


def _draw_misc(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    color, s = _random_color(rng), a.scale
    if rng.random() < 0.5:  # a bin or bucket
        radius, height = rng.uniform(0.15, 0.25) * s, rng.uniform(0.3, 0.6) * s
        p.polygon(
            np.array(
                [
                    [a.x - radius, 0, a.z],
                    [a.x + radius, 0, a.z],
                    [a.x + radius, height, a.z],
                    [a.x - radius, height, a.z],
                ]
            ),
            color,
        )
        p.polygon(_floor_blob(a.x, a.z, radius, rng, 16, y=height), color * 0.6)
    else:  # a chair-like object
        p.box((a.x, 0.4 * s, a.z), (0.45 * s, 0.05 * s, 0.45 * s), 0.2, color)
        p.box((a.x, 0.45 * s, a.z + 0.2 * s), (0.45 * s, 0.45 * s, 0.05 * s), 0.2, color)
        for dx in (-0.2, 0.2):
            for dz in (-0.2, 0.2):
                p.box((a.x + dx * s, 0, a.z + dz * s), (0.03, 0.4 * s, 0.03), 0.2, (50, 50, 50))


def _draw_shard(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(2, 6)):
        x, z = a.x + rng.normal(0, 0.12), a.z + rng.normal(0, 0.12)
        tri = np.array(
            [
                [x, 0.004, z],
                [x + rng.uniform(-0.08, 0.08), 0.004, z + rng.uniform(0.02, 0.08)],
                [x + rng.uniform(-0.08, 0.08), 0.004, z - rng.uniform(0.0, 0.05)],
            ]
        ) * [1, 1, 1]
        p.polygon(tri, (230, 240, 245), alpha=0.7, light=1.2)


def _draw_sawdust(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.25 * a.scale, rng, 20), (205, 170, 115), alpha=0.85)


def _draw_foam(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(2, 5)):
        p.polygon(
            _floor_blob(
                a.x + rng.normal(0, 0.12), a.z + rng.normal(0, 0.12), rng.uniform(0.08, 0.18) * a.scale, rng, 14, y=0.02
            ),
            (248, 248, 244),
            light=1.1,
        )


def _draw_clutter(p: _Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(3, 7)):
        size = rng.uniform(0.1, 0.35, 3) * a.scale
        p.box((a.x + rng.normal(0, 0.35), 0, a.z + rng.normal(0, 0.3)), size, rng.uniform(-1, 1), _random_color(rng))


_DRAWERS: dict[int, Callable[[_Painter, Anomaly, Environment, np.random.Generator], None]] = {
    1: _draw_water,
    2: _draw_cable,
    3: _draw_cellophane,
    4: _draw_defects,
    5: _draw_hanging_cable,
    6: _draw_floor,
    7: _draw_human,
    8: _draw_screws,
    9: _draw_boxes,
    10: _draw_door,
    11: _draw_cones,
    12: _draw_tape,
    13: _draw_trolley,
    14: _draw_debris,
    15: _draw_misc,
    16: _draw_shard,
    17: _draw_sawdust,
    18: _draw_foam,
    19: _draw_clutter,
}


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
        self.environments = [_make_environment(rng, i) for i in range(n_environments)]
        self.jpeg_quality = jpeg_quality
        self.noise_std = noise_std
        self.focal = (image_size / 2) / math.tan(math.radians(HORIZONTAL_FOV_DEG / 2))
        centers = (np.arange(image_size, dtype=np.float32) + 0.5 - image_size / 2) / self.focal
        u, v = np.meshgrid(centers, -centers)
        self._rays = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
        yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
        radius2 = ((xx - image_size / 2) ** 2 + (yy - image_size / 2) ** 2) / (image_size / 2) ** 2
        self._vignette = (1.0 - 0.22 * radius2)[..., None].astype(np.float32)

    # -- camera ---------------------------------------------------------------------------------
    def random_pose(self, rng: np.random.Generator, env: int, camera_z: float) -> Pose:
        """A robot pose anywhere across the corridor with the jitter of a moving ground robot."""
        width = self.environments[env].width
        return Pose(
            x=float(rng.uniform(-0.12, 0.12) * width),
            y=float(CAMERA_HEIGHT_M + rng.normal(0, 0.01)),
            z=float(camera_z),
            rotation=_rotation(
                math.radians(rng.uniform(-8, 8)), math.radians(rng.normal(-1.0, 1.5)), math.radians(rng.normal(0, 1.0))
            ),
        )

    # -- rendering ------------------------------------------------------------------------------
    def _background(self, env: Environment, pose: Pose, rng: np.random.Generator) -> np.ndarray:
        d = self._rays @ pose.rotation.T
        dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
        half = env.width / 2
        with np.errstate(divide='ignore', invalid='ignore'):
            t_floor = np.where(dy < -1e-6, -pose.y / dy, _FAR)
            t_ceiling = np.where(dy > 1e-6, (env.height - pose.y) / dy, _FAR)
            t_wall = np.where(dx > 1e-6, (half - pose.x) / dx, np.where(dx < -1e-6, (-half - pose.x) / dx, _FAR))
        t = np.minimum(np.minimum(t_floor, t_ceiling), t_wall).astype(np.float32)
        x, y, z = pose.x + t * dx, pose.y + t * dy, pose.z + t * dz
        floor, ceiling = t == t_floor, t == t_ceiling
        wall = ~(floor | ceiling)
        tex = env.texture
        n = tex.shape[0]
        color = np.empty((len(t), 3), np.float32)

        # Floor: tiles with grout, mottled texture, reflections of the ceiling lights.
        fx, fz = x[floor], z[floor]
        tile_x, tile_z = fx / env.tile, fz / env.tile
        checker = ((np.floor(tile_x) + np.floor(tile_z)) % 2).astype(np.float32)[:, None]
        base = env.floor_a * (1 - checker) + env.floor_b * checker
        grout = (np.minimum(tile_x % 1, tile_z % 1) < env.grout / env.tile)[:, None]
        mottle = tex[(fz * 9).astype(np.int64) % n, (fx * 9).astype(np.int64) % n][:, None]
        phase = (fz % env.light_spacing) - env.light_spacing / 2
        reflection = env.gloss * 255 * np.exp(-(phase**2) / 0.3 - fx**2 / 0.15)[:, None]
        color[floor] = np.where(grout, base * 0.8, base) * (1 + 0.06 * mottle) + reflection

        # Walls: paint, skirting, optional handrail, doors with frames at hashed positions.
        wx, wy, wz = x[wall], y[wall], z[wall]
        side = (wx > 0).astype(np.int64)
        cell = np.floor(wz / env.door_spacing)
        has_door = _hash01(cell * 2 + side, self.seed) < env.door_probability
        door_z = (cell + 0.3 + 0.4 * _hash01(cell * 2 + side, self.seed + 7)) * env.door_spacing
        in_frame = has_door & (np.abs(wz - door_z) < 0.5) & (wy < 2.1)
        in_door = has_door & (np.abs(wz - door_z) < 0.44) & (wy < 2.05)
        shade = np.where(side == 1, 0.86, 0.95).astype(np.float32)[:, None]
        wall_color = (
            np.broadcast_to(env.wall, (len(wx), 3))
            * (1 + 0.03 * tex[(wy * 20).astype(np.int64) % n, (wz * 20).astype(np.int64) % n])[:, None]
        )
        wall_color = np.where((wy < 0.1)[:, None], env.skirting, wall_color)
        if env.handrail:
            wall_color = np.where(((wy > 0.9) & (wy < 0.96))[:, None], env.wall * 0.6, wall_color)
        wall_color = np.where(in_frame[:, None], env.door * 0.7, wall_color)
        wall_color = np.where(in_door[:, None], env.door, wall_color)
        color[wall] = wall_color * shade

        # Ceiling: panels and bright light fixtures.
        cx, cz = x[ceiling], z[ceiling]
        lamp = (np.abs(cx) < 0.22) & (np.abs((cz % env.light_spacing) - env.light_spacing / 2) < 0.6)
        panel = (np.minimum(cx % 0.6, cz % 0.6) < 0.015)[:, None]
        ceiling_color = np.where(panel, env.ceiling * 0.85, env.ceiling)
        color[ceiling] = np.where(lamp[:, None], np.float32(255 * 1.3), ceiling_color)

        color *= (0.55 + 0.45 * np.exp(-t / 15.0))[:, None]
        size = self.image_size
        return np.clip(color, 0, 255).astype(np.uint8).reshape(size, size, 3)

    def _finish(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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

    def _draw(self, image: np.ndarray, env: Environment, pose: Pose, anomaly: Anomaly) -> float:
        """Draw ``anomaly`` into ``image``; return the fraction of the frame it covers."""
        painter = _Painter(image, pose, self.focal, attenuation=15.0)
        _DRAWERS[anomaly.label](painter, anomaly, env, np.random.default_rng(anomaly.seed))
        return float(painter.covered.mean())

    def place_anomaly(self, rng: np.random.Generator, label: int, env: int, z: float) -> Anomaly:
        """A random instance of class ``label`` at distance ``z`` along the corridor."""
        if label not in _DRAWERS:
            raise ValueError(f'unknown anomaly class {label}; known: {sorted(_DRAWERS)}')
        half = self.environments[env].width / 2
        x = float(rng.uniform(-0.7, 0.7) * half) if label != 10 else float(rng.choice([-half, half]))
        scale = float(rng.uniform(0.9, 1.1) if label in (7, 10) else rng.uniform(0.6, 1.4))
        return Anomaly(label=label, x=x, z=float(z), scale=scale, seed=int(rng.integers(2**31)))

    def render_pose(
        self, rng: np.random.Generator, env: int, pose: Pose, anomalies: Sequence[Anomaly] = ()
    ) -> tuple[np.ndarray, float]:
        """Render the corridor from ``pose`` with ``anomalies``; return the RGB frame and their coverage."""
        environment = self.environments[env]
        image = self._background(environment, pose, rng)
        coverage = 0.0
        for anomaly in sorted(anomalies, key=lambda a: -(a.z - pose.z)):
            coverage += self._draw(image, environment, pose, anomaly)
        return self._finish(image, rng), coverage

    def render(
        self, rng: np.random.Generator, label: int = 0, env: int | None = None, camera_z: float | None = None
    ) -> tuple[np.ndarray, FrameInfo]:
        """One RGB frame (uint8, image_size x image_size x 3) showing anomaly class ``label`` (0 = none)."""
        env = int(rng.integers(len(self.environments))) if env is None else env
        camera_z = float(rng.uniform(0, 500)) if camera_z is None else camera_z
        pose = self.random_pose(rng, env, camera_z)
        anomalies = []
        if label:
            ahead = rng.uniform(2.0, 4.0) if label in (7, 10, 13) else rng.uniform(1.0, 2.5)
            anomalies.append(self.place_anomaly(rng, label, env, camera_z + ahead))
        frame, coverage = self.render_pose(rng, env, pose, anomalies)
        difficulty = int(bool(label) and coverage < TRICKY_AREA_FRACTION)
        return frame, FrameInfo(label=label, env=env, difficulty=difficulty, camera_z=camera_z)

    def patrol(
        self,
        n_frames: int,
        rng: np.random.Generator,
        anomaly_rate: float = 0.0,
        classes: Sequence[int] | None = None,
        env: int = 0,
        speed_m_per_frame: float = 0.05,
    ) -> tuple[np.ndarray, list[FrameInfo]]:
        """A temporally coherent stream: the robot drives down the corridor and passes anomalies.

        Anomalies are placed ahead of the robot so that about ``anomaly_rate`` of the frames show
        one; a frame is labelled with the class of the object in view (1 to 5 m ahead).
        """
        if not 0.0 <= anomaly_rate < 1.0:
            raise ValueError(f'anomaly_rate must be in [0, 1), got {anomaly_rate}')
        classes = list(classes or range(1, len(ANOMALY_CLASSES)))
        visible_near, visible_far = 1.0, 5.0
        frames = np.empty((n_frames, self.image_size, self.image_size, 3), np.uint8)
        infos: list[FrameInfo] = []
        z, x, yaw = float(rng.uniform(0, 100)), 0.0, 0.0
        anomaly: Anomaly | None = None
        next_anomaly_z = z + self._gap(rng, anomaly_rate, visible_far - visible_near) + visible_far
        half = self.environments[env].width / 2
        for i in range(n_frames):
            if anomaly is None and anomaly_rate > 0 and z + visible_far >= next_anomaly_z:
                anomaly = self.place_anomaly(rng, int(rng.choice(classes)), env, next_anomaly_z)
            yaw = float(np.clip(0.9 * yaw + rng.normal(0, 0.01), -0.12, 0.12))
            x = float(np.clip(x + speed_m_per_frame * math.sin(yaw) + rng.normal(0, 0.003), -0.4 * half, 0.4 * half))
            pose = Pose(
                x=x,
                y=CAMERA_HEIGHT_M + float(rng.normal(0, 0.003)),
                z=z,
                rotation=_rotation(yaw, math.radians(-1 + rng.normal(0, 0.4)), math.radians(rng.normal(0, 0.3))),
            )
            in_view = anomaly is not None and visible_near <= anomaly.z - z <= visible_far
            frames[i], coverage = self.render_pose(rng, env, pose, [anomaly] if anomaly is not None else [])
            label = anomaly.label if in_view else 0
            infos.append(
                FrameInfo(
                    label=label, env=env, difficulty=int(bool(label) and coverage < TRICKY_AREA_FRACTION), camera_z=z
                )
            )
            z += speed_m_per_frame
            if anomaly is not None and anomaly.z - z < visible_near - 0.5:  # passed it: plan the next one
                anomaly = None
                next_anomaly_z = z + self._gap(rng, anomaly_rate, visible_far - visible_near) + visible_far
        return frames, infos

    @staticmethod
    def _gap(rng: np.random.Generator, rate: float, visible_span: float) -> float:
        if rate <= 0:
            return math.inf
        return float(rng.exponential(visible_span * (1 - rate) / rate))


def generate_frames(
    n: int,
    seed: int = 0,
    image_size: int = 512,
    anomaly_fraction: float = 0.0,
    classes: Sequence[int] | None = None,
    world_seed: int = 0,
    n_environments: int = 4,
    jpeg_quality: tuple[int, int] | None = (70, 95),
) -> tuple[np.ndarray, list[FrameInfo]]:
    """``n`` independent frames, ``round(n * anomaly_fraction)`` of them anomalous (classes cycled), shuffled.

    ``world_seed`` fixes the corridors; ``seed`` the sampled poses, lighting and anomalies, so that
    training and test sets drawn with different seeds show the same building.
    """
    if not 0.0 <= anomaly_fraction <= 1.0:
        raise ValueError(f'anomaly_fraction must be in [0, 1], got {anomaly_fraction}')
    classes = list(classes or range(1, len(ANOMALY_CLASSES)))
    rng = np.random.default_rng(seed)
    world = CorridorWorld(world_seed, image_size, n_environments, jpeg_quality)
    n_anomalous = round(n * anomaly_fraction)
    labels = np.zeros(n, np.int64)
    labels[:n_anomalous] = [classes[i % len(classes)] for i in range(n_anomalous)]
    labels = rng.permutation(labels)
    frames = np.empty((n, image_size, image_size, 3), np.uint8)
    infos = []
    for i, label in enumerate(labels):
        frames[i], info = world.render(rng, int(label))
        infos.append(info)
    return frames, infos


def _write_split(folder: Path, frames: np.ndarray, rng: np.random.Generator, quality: tuple[int, int]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, frame in enumerate(frames):
        name = f'frame_{i:06d}.jpg'
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(quality[0], quality[1] + 1))]
        if not cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f'could not write {folder / name}')
        names.append(name)
    return names


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


_SPLIT_CSV = {
    'train_set': ('train_frames_envs.csv', ('frame', 'env')),
    'validation_set': ('validation_frames_envs.csv', ('frame', 'env')),
    'test_set': ('frames_labels.csv', ('frame', 'label', 'difficulty')),
    'outliers_set': ('outliers_frames_labels.csv', ('frame', 'label', 'difficulty')),
}


def write_split(
    root: str | Path,
    split: str,
    frames: np.ndarray,
    infos: Sequence[FrameInfo],
    seed: int = 0,
    jpeg_quality: tuple[int, int] = (70, 95),
) -> Path:
    """Write RGB ``frames`` as ``root/split/frame_NNNNNN.jpg`` and their CSV in ``root/metadata``."""
    if split not in _SPLIT_CSV:
        raise ValueError(f'split must be one of {sorted(_SPLIT_CSV)}, got {split!r}')
    root = Path(root)
    names = _write_split(root / split, frames, np.random.default_rng(seed), jpeg_quality)
    csv_name, header = _SPLIT_CSV[split]
    fields = {'frame': None, 'env': 'env', 'label': 'label', 'difficulty': 'difficulty'}
    rows = [
        (name, *(getattr(info, fields[column]) for column in header[1:]))
        for name, info in zip(names, infos, strict=True)
    ]
    _write_csv(root / 'metadata' / csv_name, header, rows)
    return root / split


def write_hazards_layout(
    root: str | Path,
    n_train: int = 400,
    n_validation: int = 100,
    n_test: int = 200,
    n_outliers: int = 100,
    seed: int = 0,
    image_size: int = 512,
    test_anomaly_fraction: float = 0.3,
    outlier_classes: Sequence[int] | None = None,
    test_classes: Sequence[int] | None = None,
    jpeg_quality: tuple[int, int] = (70, 95),
) -> Path:
    """Write a synthetic dataset in the Hazards&Robots corridor layout under ``root`` and return it.

    ``train_set/`` and ``validation_set/`` hold normal frames, ``test_set/`` normal and anomalous
    frames of ``test_classes``, ``outliers_set/`` anomalous frames of ``outlier_classes`` for outlier
    exposure; ``metadata/`` holds the label and environment CSVs in sorted file order.
    """
    splits = {
        'train_set': (n_train, 0.0, None),
        'validation_set': (n_validation, 0.0, None),
        'test_set': (n_test, test_anomaly_fraction, test_classes),
        'outliers_set': (n_outliers, 1.0, outlier_classes),
    }
    for offset, (split, (count, fraction, classes)) in enumerate(splits.items()):
        frames, infos = generate_frames(
            count, seed * 10 + offset + 1, image_size, fraction, classes, world_seed=seed, jpeg_quality=None
        )
        write_split(root, split, frames, infos, seed * 10 + offset, jpeg_quality)
    return Path(root)
