"""Anomalies that lie on a surface of a photo world: things flat on the floor, and an open door in a wall.

Each painter changes the colour of the rays that hit its surface where the anomaly is, and returns
which rays it painted (the anomaly's pixels, for the frame's mask).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.world.photo_assets import Building, Sprites
from training.world.scene import Anomaly

TAPE_COLOURS = ((0.95, 0.85, 0.1), (0.9, 0.2, 0.15), (0.95, 0.95, 0.95), (0.2, 0.4, 0.9))
CABLE_COLOURS = ((0.05, 0.05, 0.05), (0.85, 0.4, 0.05), (0.1, 0.2, 0.7), (0.9, 0.9, 0.9))
PUDDLE, OPEN_DOOR = 6, 9  # photo-world class codes painted specially
PUDDLE_GLOSS = 4.0  # a puddle reflects the lamps this many times more than the floor


@dataclass(frozen=True)
class Hits:
    """Where each camera ray hit the corridor: world coordinates, distance, and which surface."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    t: np.ndarray
    floor: np.ndarray
    wall: np.ndarray
    ceiling: np.ndarray


def sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``tex`` repeated over the surface, looked up at texture coordinates ``u``, ``v`` (one repeat per unit)."""
    rows, cols = tex.shape[:2]
    return tex[(v * rows).astype(np.int64) % rows, (u * cols).astype(np.int64) % cols]


def _floor_strip(
    hits: Hits, centre: tuple[float, float], angle: float, half_length: float, half_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays (indices) hitting a floor rectangle, and their coordinates along and across it."""
    ex, ez = math.cos(angle), math.sin(angle)
    fx, fz = hits.x[hits.floor] - centre[0], hits.z[hits.floor] - centre[1]
    along, across = fx * ex + fz * ez, -fx * ez + fz * ex
    inside = (np.abs(along) < half_length) & (np.abs(across) < half_width)
    return np.flatnonzero(hits.floor)[inside], along[inside], across[inside]


def _tape(colour: np.ndarray, hits: Hits, anomaly: Anomaly, rng: np.random.Generator, sprites: Sprites) -> np.ndarray:
    """One or two straight strips of coloured tape, 5 cm wide."""
    painted = np.zeros(len(hits.t), bool)
    tint = np.asarray(TAPE_COLOURS[rng.integers(len(TAPE_COLOURS))], np.float32) * 0.9
    for _ in range(rng.integers(1, 3)):
        angle = rng.uniform(-0.6, 0.6) + (np.pi / 2 if rng.random() < 0.3 else 0)
        centre = (anomaly.x + rng.uniform(-0.3, 0.3), anomaly.z + rng.uniform(-0.3, 0.3))
        rays, _, _ = _floor_strip(hits, centre, angle, rng.uniform(0.3, 0.8), 0.025)
        colour[rays] = tint
        painted[rays] = True
    return painted


def _puddle(colour: np.ndarray, hits: Hits, anomaly: Anomaly, rng: np.random.Generator, sprites: Sprites) -> np.ndarray:
    """A dark, wobbly blob of water (its gloss is added by the renderer)."""
    radius, phases = rng.uniform(0.3, 0.6), rng.uniform(0, 6, 3)
    fx, fz = hits.x[hits.floor] - anomaly.x, hits.z[hits.floor] - anomaly.z
    theta = np.arctan2(fz, fx)
    edge = radius * (1 + 0.25 * np.sin(2 * theta + phases[0]) + 0.15 * np.sin(3 * theta + phases[1]))
    rays = np.flatnonzero(hits.floor)[np.hypot(fx, fz * 1.3) < edge]
    colour[rays] = colour[rays] * 0.55 + np.array([0.02, 0.03, 0.05], np.float32)
    return _mask(hits, rays)


def _paper(colour: np.ndarray, hits: Hits, anomaly: Anomaly, rng: np.random.Generator, sprites: Sprites) -> np.ndarray:
    """One to three printed A4 sheets."""
    painted = np.zeros(len(hits.t), bool)
    for _ in range(rng.integers(1, 4)):
        page = sprites.paper[rng.integers(len(sprites.paper))]
        centre = (anomaly.x + rng.uniform(-0.3, 0.3), anomaly.z + rng.uniform(-0.3, 0.3))
        rays, along, across = _floor_strip(hits, centre, rng.uniform(0, np.pi), 0.15, 0.105)
        rows, cols = page.shape[:2]
        u, v = along / 0.3 + 0.5, across / 0.21 + 0.5
        colour[rays] = 0.35 + 0.6 * page[(v * (rows - 1)).astype(int), (u * (cols - 1)).astype(int)]
        painted[rays] = True
    return painted


def _cable(colour: np.ndarray, hits: Hits, anomaly: Anomaly, rng: np.random.Generator, sprites: Sprites) -> np.ndarray:
    """A thin cable curving across the floor."""
    tint = np.asarray(CABLE_COLOURS[rng.integers(len(CABLE_COLOURS))], np.float32)
    frequency, phase = rng.uniform(1.5, 4), rng.uniform(0, 6)
    amplitude, tilt = rng.uniform(0.1, 0.35), rng.uniform(-0.3, 0.3)
    fx, fz = hits.x[hits.floor], hits.z[hits.floor]
    curve = anomaly.z + amplitude * np.sin(fx * frequency + phase) + tilt * fx
    rays = np.flatnonzero(hits.floor)[np.abs(fz - curve) < 0.012]
    colour[rays] = tint
    return _mask(hits, rays)


def _debris(colour: np.ndarray, hits: Hits, anomaly: Anomaly, rng: np.random.Generator, sprites: Sprites) -> np.ndarray:
    """Scattered small chips (crops of a photo of coins)."""
    painted = np.zeros(len(hits.t), bool)
    for _ in range(rng.integers(6, 15)):
        ox, oz, size = anomaly.x + rng.normal(0, 0.2), anomaly.z + rng.normal(0, 0.2), rng.uniform(0.03, 0.07)
        y0, x0, tint = rng.integers(0, 250), rng.integers(0, 330), rng.uniform(0.6, 1.3, 3)
        rays, along, across = _floor_strip(hits, (ox, oz), 0.0, size, size * 0.8)
        if len(rays):
            u = (along / (2 * size) + 0.5) * 50 + x0
            v = (across / (1.6 * size) + 0.5) * 50 + y0
            colour[rays] = sprites.coins[v.astype(int), u.astype(int)] * tint
            painted[rays] = True
    return painted


_FLOOR_PAINTERS: dict[int, Callable[..., np.ndarray]] = {5: _tape, PUDDLE: _puddle, 7: _paper, 8: _cable, 10: _debris}


def open_door(colour: np.ndarray, hits: Hits, anomaly: Anomaly, building: Building) -> np.ndarray:
    """A door-sized region of the wall at ``anomaly.x``'s side showing a dark room behind it."""
    side = 1.0 if anomaly.x > 0 else -1.0
    rays = hits.wall & (np.sign(hits.x) == side) & (np.abs(hits.z - anomaly.z) < 0.47) & (hits.y < 2.02)
    if rays.any():
        y, z = hits.y[rays], hits.z[rays]
        depth = 0.4 + 0.6 * (y / 2.0)
        room = sample(building.interior, (z - anomaly.z) / 1.5, y / 2.5)
        colour[rays] = room * depth[:, None] + np.array([0.05, 0.05, 0.04], np.float32)
    return rays


def contact_shadow(colour: np.ndarray, hits: Hits, anomaly: Anomaly) -> None:
    """Darken the floor under an upright object."""
    fx, fz = hits.x[hits.floor], hits.z[hits.floor]
    r2 = ((fx - anomaly.x) / 0.35) ** 2 + ((fz - anomaly.z) / 0.2) ** 2
    colour[hits.floor] *= (1 - 0.45 * np.exp(-r2))[:, None]


def paint_surface_anomaly(
    colour: np.ndarray, hits: Hits, anomaly: Anomaly, building: Building, sprites: Sprites
) -> np.ndarray:
    """Paint a floor anomaly or an open door into ``colour`` (rays x 3); the rays it painted."""
    if anomaly.label == OPEN_DOOR:
        return open_door(colour, hits, anomaly, building)
    painter = _FLOOR_PAINTERS.get(anomaly.label)
    if painter is None:
        raise ValueError(f'photo-world class {anomaly.label} is not painted on a surface')
    return painter(colour, hits, anomaly, np.random.default_rng(anomaly.seed), sprites)


def _mask(hits: Hits, rays: np.ndarray) -> np.ndarray:
    """A mask over all rays, True at ``rays`` (the rays an anomaly painted)."""
    painted = np.zeros(len(hits.t), bool)
    painted[rays] = True
    return painted
