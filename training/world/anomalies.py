"""The anomaly classes of the corridor world: one drawing function per Hazards&Robots class.

Each drawer gets the :class:`Painter`, the placed :class:`Anomaly`, its corridor and a generator
seeded by the anomaly, so an object looks the same in every frame it appears in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from training.world.painter import Painter
from training.world.scene import Anomaly, Environment, Pose
from visual_anomaly.data.taxonomy import class_code

Drawer = Callable[[Painter, Anomaly, Environment, np.random.Generator], None]


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


# One drawing function per anomaly class, named after it.
def _draw_water(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    tint = env.floor_a * 0.55 + np.array([10, 25, 45], np.float32)
    p.polygon(_floor_blob(a.x, a.z, 0.45 * a.scale, rng, 32), tint, alpha=0.75)
    for _ in range(3):
        p.polygon(
            _floor_blob(a.x + rng.uniform(-0.2, 0.2), a.z + rng.uniform(-0.15, 0.15), 0.08 * a.scale, rng),
            (235, 240, 245),
            alpha=0.6,
            light=1.1,
        )


def _draw_cable(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    xs = np.linspace(-env.width / 2, env.width / 2, 40)
    zs = a.z + 0.25 * a.scale * np.sin(xs * rng.uniform(1.5, 4.0) + rng.uniform(0, 6)) + rng.uniform(-0.3, 0.3) * xs
    color = rng.choice([(20, 20, 20), (230, 120, 20), (30, 60, 200), (220, 220, 220)])
    p.polyline(np.stack([xs, np.full_like(xs, 0.01), zs], axis=1), color, 0.02 * a.scale)


def _draw_cellophane(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.35 * a.scale, rng, 10), (245, 245, 250), alpha=0.45, light=1.2)
    for _ in range(4):
        start = np.array([a.x + rng.uniform(-0.25, 0.25), 0.003, a.z + rng.uniform(-0.2, 0.2)])
        end = start + np.array([rng.uniform(-0.15, 0.15), 0, rng.uniform(-0.1, 0.1)])
        p.polyline(np.stack([start, end]), (255, 255, 255), 0.01, light=1.2)


def _draw_defects(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.18 * a.scale, rng, 12), env.floor_a * 0.35)
    for _ in range(3):
        steps = rng.normal(0, 0.06, (8, 2)).cumsum(axis=0) * a.scale
        crack = np.stack([a.x + steps[:, 0], np.full(8, 0.003), a.z + steps[:, 1]], axis=1)
        p.polyline(crack, env.floor_a * 0.3, 0.012)


def _draw_hanging_cable(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    t = np.linspace(0, 1, 30)
    drop = env.height - rng.uniform(0.4, 1.6) * a.scale
    xs = a.x + rng.uniform(-0.3, 0.3) * t
    ys = env.height - (env.height - drop) * np.sin(np.pi * t / 2)
    zs = a.z + 0.1 * np.sin(6 * t)
    p.polyline(np.stack([xs, ys, zs], axis=1), rng.choice([(20, 20, 20), (200, 40, 40), (240, 200, 30)]), 0.025)


def _draw_floor(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    w, d = 0.6 * a.scale, 0.8 * a.scale
    quad = np.array(
        [[a.x - w, 0.002, a.z - d], [a.x + w, 0.002, a.z - d], [a.x + w, 0.002, a.z + d], [a.x - w, 0.002, a.z + d]],
        np.float32,
    )
    p.polygon(quad, _random_color(rng, saturated=rng.random() < 0.5))


def _draw_human(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    s = a.scale
    trousers, shirt = _random_color(rng, False) * 0.6, _random_color(rng)
    yaw = rng.uniform(-0.5, 0.5)
    for side in (-1, 1):
        p.box((a.x + side * 0.1 * s, 0, a.z), (0.13 * s, 0.85 * s, 0.15 * s), yaw, trousers)
    p.box((a.x, 0.85 * s, a.z), (0.42 * s, 0.6 * s, 0.22 * s), yaw, shirt)
    for side in (-1, 1):
        p.box((a.x + side * 0.26 * s, 0.82 * s, a.z), (0.09 * s, 0.6 * s, 0.1 * s), yaw, shirt * 0.9)
    p.disc((a.x, 1.6 * s, a.z), 0.11 * s, (205, 160, 130))


def _draw_screws(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(8, 20)):
        x, z = a.x + rng.normal(0, 0.15), a.z + rng.normal(0, 0.15)
        start = np.array([x, 0.005, z])
        end = start + np.array([rng.uniform(-0.05, 0.05), 0, rng.uniform(-0.05, 0.05)])
        p.polyline(np.stack([start, end]), (rng.uniform(150, 220),) * 3, 0.015, light=1.2)


def _draw_boxes(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    color = rng.choice([(170, 130, 85), (190, 150, 100), (150, 110, 70), (220, 220, 215)])
    for i in range(rng.integers(1, 3)):
        size = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5)]) * a.scale
        p.box((a.x + 0.4 * i * rng.uniform(-1, 1), 0, a.z + 0.3 * i), size, rng.uniform(-0.6, 0.6), color)


def _draw_door(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
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


def _draw_cones(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
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


def _draw_tape(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    color = rng.choice([(240, 210, 30), (220, 40, 40), (240, 240, 240), (40, 120, 220)])
    x0, x1 = sorted(rng.uniform(-env.width / 2, env.width / 2, 2))
    width = 0.05 * a.scale
    strip = np.array(
        [[x0, 0.003, a.z], [x1, 0.003, a.z + 0.1], [x1, 0.003, a.z + 0.1 + width], [x0, 0.003, a.z + width]], np.float32
    )
    p.polygon(strip, color)


def _draw_trolley(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    s, metal = a.scale, (150, 155, 160)
    yaw = rng.uniform(-0.4, 0.4)
    for level in (0.15, 0.55, 0.9):
        p.box((a.x, level * s, a.z), (0.55 * s, 0.04 * s, 0.9 * s), yaw, metal)
    for dx in (-0.25, 0.25):
        for dz in (-0.42, 0.42):
            p.box((a.x + dx * s, 0, a.z + dz * s), (0.03 * s, 0.95 * s, 0.03 * s), yaw, (90, 95, 100))
    p.box((a.x, 0.6 * s, a.z), (0.45 * s, 0.3 * s, 0.6 * s), yaw, _random_color(rng))


def _draw_debris(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(4, 10)):
        p.polygon(
            _floor_blob(
                a.x + rng.normal(0, 0.25), a.z + rng.normal(0, 0.25), rng.uniform(0.03, 0.08) * a.scale, rng, 6
            ),
            rng.uniform(40, 160, 3),
        )


def _draw_misc(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
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


def _draw_shard(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
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


def _draw_sawdust(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    p.polygon(_floor_blob(a.x, a.z, 0.25 * a.scale, rng, 20), (205, 170, 115), alpha=0.85)


def _draw_foam(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(2, 5)):
        p.polygon(
            _floor_blob(
                a.x + rng.normal(0, 0.12), a.z + rng.normal(0, 0.12), rng.uniform(0.08, 0.18) * a.scale, rng, 14, y=0.02
            ),
            (248, 248, 244),
            light=1.1,
        )


def _draw_clutter(p: Painter, a: Anomaly, env: Environment, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(3, 7)):
        size = rng.uniform(0.1, 0.35, 3) * a.scale
        p.box((a.x + rng.normal(0, 0.35), 0, a.z + rng.normal(0, 0.3)), size, rng.uniform(-1, 1), _random_color(rng))


_CLASS_DRAWERS: dict[str, Drawer] = {
    'water': _draw_water,
    'cable': _draw_cable,
    'cellophane': _draw_cellophane,
    'defects': _draw_defects,
    'hanging_cable': _draw_hanging_cable,
    'floor': _draw_floor,
    'human': _draw_human,
    'screws': _draw_screws,
    'boxes': _draw_boxes,
    'door': _draw_door,
    'cones': _draw_cones,
    'tape': _draw_tape,
    'trolley': _draw_trolley,
    'debris': _draw_debris,
    'misc': _draw_misc,
    'shard': _draw_shard,
    'sawdust': _draw_sawdust,
    'foam': _draw_foam,
    'clutter': _draw_clutter,
}
#: The drawer of every anomaly class, by its Hazards&Robots code.
DRAWERS: dict[int, Drawer] = {class_code(name): drawer for name, drawer in _CLASS_DRAWERS.items()}


def draw_anomaly(image: np.ndarray, env: Environment, pose: Pose, focal: float, anomaly: Anomaly) -> np.ndarray:
    """Draw ``anomaly`` into ``image`` seen from ``pose``; return the share of each pixel it covers (uint8, x 255)."""
    painter = Painter(image, pose, focal, attenuation=15.0)
    DRAWERS[anomaly.label](painter, anomaly, env, np.random.default_rng(anomaly.seed))
    return painter.covered
