"""The empty corridor, ray cast: floor tiles and reflections, walls with doors and skirting, ceiling lights."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from training.world.scene import Environment, Pose

_FAR = 1e4


def camera_rays(image_size: int, focal: float) -> np.ndarray:
    """(image_size**2, 3) camera-frame directions through the pixel centres, row by row, z = 1."""
    centers = (np.arange(image_size, dtype=np.float32) + 0.5 - image_size / 2) / focal
    u, v = np.meshgrid(centers, -centers)
    return np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)


def hash01(values: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random numbers in [0, 1) for integer cells (doors, tiles)."""
    v = (values.astype(np.int64) * 73856093) ^ (salt * 19349663)
    v = (v ^ (v >> 13)) * 1274126177
    return ((v ^ (v >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


class CorridorHits(NamedTuple):
    """Where rays from the camera meet a corridor's box: points, distances, and which surface."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    t: np.ndarray
    floor: np.ndarray
    ceiling: np.ndarray  # a ray that meets neither floor, ceiling nor walls (t = far) counts as both


def corridor_hits(pose: Pose, directions: np.ndarray, width: float, height: float) -> CorridorHits:
    """Intersect world-frame ray ``directions`` (N, 3) from ``pose`` with a corridor ``width`` wide, ``height`` high."""
    dx, dy, dz = directions[:, 0], directions[:, 1], directions[:, 2]
    half = width / 2
    with np.errstate(divide='ignore', invalid='ignore'):
        t_floor = np.where(dy < -1e-6, -pose.y / dy, _FAR)
        t_ceiling = np.where(dy > 1e-6, (height - pose.y) / dy, _FAR)
        t_wall = np.where(dx > 1e-6, (half - pose.x) / dx, np.where(dx < -1e-6, (-half - pose.x) / dx, _FAR))
    t = np.minimum(np.minimum(t_floor, t_ceiling), t_wall).astype(np.float32)
    return CorridorHits(pose.x + t * dx, pose.y + t * dy, pose.z + t * dz, t, t == t_floor, t == t_ceiling)


def render_background(env: Environment, pose: Pose, rays: np.ndarray, seed: int) -> np.ndarray:
    """The corridor without objects seen along ``rays`` (see :func:`camera_rays`): a square uint8 RGB frame.

    ``seed`` places the doors, so the same corridor shows them at the same places in every frame.
    """
    x, y, z, t, floor, ceiling = corridor_hits(pose, rays @ pose.rotation.T, env.width, env.height)
    wall = ~(floor | ceiling)
    color = np.empty((len(t), 3), np.float32)
    color[floor] = _floor_color(env, x[floor], z[floor])
    color[wall] = _wall_color(env, x[wall], y[wall], z[wall], seed)
    color[ceiling] = _ceiling_color(env, x[ceiling], z[ceiling])
    color *= (0.55 + 0.45 * np.exp(-t / 15.0))[:, None]
    size = math.isqrt(len(rays))
    return np.clip(color, 0, 255).astype(np.uint8).reshape(size, size, 3)


def _floor_color(env: Environment, fx: np.ndarray, fz: np.ndarray) -> np.ndarray:
    """Tiles with grout, mottled texture, reflections of the ceiling lights."""
    tex = env.texture
    n = tex.shape[0]
    tile_x, tile_z = fx / env.tile, fz / env.tile
    checker = ((np.floor(tile_x) + np.floor(tile_z)) % 2).astype(np.float32)[:, None]
    base = env.floor_a * (1 - checker) + env.floor_b * checker
    grout = (np.minimum(tile_x % 1, tile_z % 1) < env.grout / env.tile)[:, None]
    mottle = tex[(fz * 9).astype(np.int64) % n, (fx * 9).astype(np.int64) % n][:, None]
    phase = (fz % env.light_spacing) - env.light_spacing / 2
    reflection = env.gloss * 255 * np.exp(-(phase**2) / 0.3 - fx**2 / 0.15)[:, None]
    return np.where(grout, base * 0.8, base) * (1 + 0.06 * mottle) + reflection


def _wall_color(env: Environment, wx: np.ndarray, wy: np.ndarray, wz: np.ndarray, seed: int) -> np.ndarray:
    """Paint, skirting, optional handrail, doors with frames at hashed positions."""
    tex = env.texture
    n = tex.shape[0]
    side = (wx > 0).astype(np.int64)
    cell = np.floor(wz / env.door_spacing)
    has_door = hash01(cell * 2 + side, seed) < env.door_probability
    door_z = (cell + 0.3 + 0.4 * hash01(cell * 2 + side, seed + 7)) * env.door_spacing
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
    return wall_color * shade


def _ceiling_color(env: Environment, cx: np.ndarray, cz: np.ndarray) -> np.ndarray:
    """Panels and bright light fixtures."""
    lamp = (np.abs(cx) < 0.22) & (np.abs((cz % env.light_spacing) - env.light_spacing / 2) < 0.6)
    panel = (np.minimum(cx % 0.6, cz % 0.6) < 0.015)[:, None]
    ceiling_color = np.where(panel, env.ceiling * 0.85, env.ceiling)
    return np.where(lamp[:, None], np.float32(255 * 1.3), ceiling_color)
