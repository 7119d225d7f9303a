"""The photo worlds' ray caster: a textured corridor lit by ceiling lamps, with photo cut-outs standing in it.

Floor, walls (with doors, door frames, posters and skirting) and the ceiling are intersected per
ray; lamps in a row along the ceiling light them with an inverse-square falloff in the building's
colour; the floor reflects the lamps. Upright anomalies are alpha-masked photos on a vertical plane
across the corridor, ray traced so that perspective and occlusion are exact; flat ones are painted
in floor coordinates (:mod:`.photo_surfaces`). Distance fades everything to grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from training.world.background import camera_rays, corridor_hits, hash01
from training.world.photo_assets import UPRIGHT_CLASSES, Building, Sprite, Sprites
from training.world.photo_surfaces import PUDDLE, PUDDLE_GLOSS, Hits, contact_shadow, paint_surface_anomaly, sample
from training.world.scene import Anomaly, Pose

_SHARP_M = 3.0  # surfaces nearer than this use the sharp texture, farther ones a blurred copy
_POSTER_SPACING_M = 2.3
_FOG_GREY = 0.12


class PhotoRenderer:
    """Ray casts one corridor of ``building`` at ``image_size`` pixels square; ``layout`` places doors and posters."""

    def __init__(self, building: Building, sprites: Sprites, image_size: int, layout: int) -> None:
        self.building = building
        self.sprites = sprites
        self.image_size = image_size
        self.layout = layout
        focal = (image_size / 2) / math.tan(math.radians(building.fov_deg / 2))
        self.rays = camera_rays(image_size, focal)
        self.floor_far = cv2.GaussianBlur(building.floor, (0, 0), 3)
        self.wall_far = cv2.GaussianBlur(building.wall, (0, 0), 3)

    def render(self, pose: Pose, anomalies: Sequence[Anomaly] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Float RGB (about 0..1.5) seen from ``pose`` with ``anomalies``, and the share of each pixel they cover."""
        b = self.building
        d = self.rays @ pose.rotation.T
        hits = self._intersect(pose, d)
        colour = np.zeros((len(hits.t), 3), np.float32)
        colour[hits.floor] = self._floor(hits)
        colour[hits.wall] = self._walls(hits)
        colour[hits.ceiling] = self._ceiling(hits)
        painted = np.zeros(len(hits.t), np.float32)
        gloss = np.ones(len(hits.t), np.float32)
        for anomaly in anomalies:
            if anomaly.label in UPRIGHT_CLASSES:
                contact_shadow(colour, hits, anomaly)
            else:
                rays = paint_surface_anomaly(colour, hits, anomaly, b, self.sprites)
                painted[rays] = 1.0
                if anomaly.label == PUDDLE:
                    gloss[rays] = PUDDLE_GLOSS
        light = self.light(hits.x, hits.y, hits.z)[:, None] * b.light_rgb
        colour = np.where(hits.ceiling[:, None], colour * b.light_rgb, colour * light)
        phase = (hits.z % b.light_spacing) - b.light_spacing / 2
        reflection = b.gloss * np.exp(-(phase**2) / 0.25 - hits.x**2 / 0.1) * gloss
        colour[hits.floor] += reflection[hits.floor][:, None] * b.light_rgb
        for anomaly in sorted(anomalies, key=lambda a: -a.z):
            if anomaly.label in UPRIGHT_CLASSES:
                np.maximum(painted, self._cutout(colour, anomaly, pose, d, hits.t), out=painted)
        fog = np.exp(-hits.t / b.fog_m)[:, None]
        colour = colour * fog + _FOG_GREY * (1 - fog)
        size = self.image_size
        return colour.reshape(size, size, 3), painted.reshape(size, size)

    def light(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Brightness at points (x, y, z): ambient plus the four nearest lamps (at x = 0 under the ceiling)."""
        b = self.building
        nearest = np.round(z / b.light_spacing)
        total = np.full_like(z, b.ambient)
        for step in (-1, 0, 1, 2):
            lamp_z = (nearest + step) * b.light_spacing
            d2 = x**2 + (y - b.height) ** 2 + (z - lamp_z) ** 2
            total += 2.88 * (b.height - y + 0.3) / (d2 + 0.8) ** 1.5
        return total

    def _intersect(self, pose: Pose, d: np.ndarray) -> Hits:
        x, y, z, t, floor, ceiling = corridor_hits(pose, d, self.building.width, self.building.height)
        return Hits(x, y, z, t, floor, ~(floor | ceiling), ceiling & ~floor)

    def _floor(self, hits: Hits) -> np.ndarray:
        b = self.building
        u, v = hits.x[hits.floor] / b.floor_scale, hits.z[hits.floor] / b.floor_scale
        near = (hits.t[hits.floor] < _SHARP_M)[:, None]
        return np.where(near, sample(b.floor, u, v), sample(self.floor_far, u, v))

    def _walls(self, hits: Hits) -> np.ndarray:
        """Wall texture with doors in frames, posters between them, and a dark skirting."""
        b = self.building
        z, y, x = hits.z[hits.wall], hits.y[hits.wall], hits.x[hits.wall]
        side = (x > 0).astype(np.int64)
        u, v = z / b.wall_scale, y / b.wall_scale
        near = (hits.t[hits.wall] < _SHARP_M)[:, None]
        colour = np.where(near, sample(b.wall, u, v), sample(self.wall_far, u, v))
        salt = b.seed + 7919 * self.layout
        cell = np.floor(z / b.door_spacing)
        has_door = hash01(cell * 2 + side, salt) < b.door_probability
        door_z = (cell + 0.3 + 0.4 * hash01(cell * 2 + side, salt + 5)) * b.door_spacing
        in_door = has_door & (np.abs(z - door_z) < 0.45) & (y < 2.0)
        in_frame = has_door & (np.abs(z - door_z) < 0.52) & (y < 2.07)
        colour = np.where(in_frame[:, None], colour * 0.45, colour)
        colour = np.where(in_door[:, None], sample(b.door, (z - door_z) / 0.9, y / 4.0), colour)
        self._posters(colour, z, y, side, ~in_frame, salt)
        colour = np.where((y < 0.08)[:, None], colour * 0.4, colour)
        return colour * np.where(side == 1, 0.9, 1.0)[:, None]

    def _posters(
        self, colour: np.ndarray, z: np.ndarray, y: np.ndarray, side: np.ndarray, free: np.ndarray, salt: int
    ) -> None:
        """Hang posters (60 x 80 cm, centre 1.45 m high) on free wall between the doors."""
        b = self.building
        cell = np.floor(z / _POSTER_SPACING_M)
        centre = (cell + 0.5) * _POSTER_SPACING_M
        has_poster = (hash01(cell * 2 + side + 1000, salt) < b.poster_probability) & free
        inside = has_poster & (np.abs(z - centre) < 0.3) & (np.abs(y - 1.45) < 0.4)
        if not inside.any():
            return
        which = (hash01(cell * 2 + side + 2000, salt) * len(b.posters)).astype(np.int64)
        u = np.clip((z - centre) / 0.6 + 0.5, 0, 0.999)
        u = np.where(side == 1, 0.999 - u, u)
        v = np.clip(0.5 - (y - 1.45) / 0.8, 0, 0.999)
        for k, poster in enumerate(b.posters):
            rays = inside & (which == k)
            rows, cols = poster.shape[:2]
            colour[rays] = poster[(v[rays] * rows).astype(int), (u[rays] * cols).astype(int)]

    def _ceiling(self, hits: Hits) -> np.ndarray:
        """Grey ceiling with bright lamp panels (half a metre wide, a metre long)."""
        b = self.building
        x, z = hits.x[hits.ceiling], hits.z[hits.ceiling]
        lamp = (np.abs(x) < 0.25) & (np.abs((z % b.light_spacing) - b.light_spacing / 2) > b.light_spacing / 2 - 0.5)
        return np.repeat(np.where(lamp, 2.5, 0.75).astype(np.float32)[:, None], 3, axis=1)

    def _cutout(self, colour: np.ndarray, anomaly: Anomaly, pose: Pose, d: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Draw an upright photo cut-out on the plane z = ``anomaly.z``; the share of each ray it covers."""
        sprite, width, height = self.cutout(anomaly)
        dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            t_plane = np.where(dz > 1e-6, (anomaly.z - pose.z) / dz, np.inf)
        px, py = pose.x + t_plane * dx, pose.y + t_plane * dy
        u, v = (px - (anomaly.x - width / 2)) / width, 1 - py / height
        hit = (t_plane < t) & (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        covered = np.zeros(len(t), np.float32)
        if not hit.any():
            return covered
        rows, cols = sprite.alpha.shape
        iu, iv = (u[hit] * cols).astype(int), (v[hit] * rows).astype(int)
        alpha = sprite.alpha[iv, iu][:, None]
        light = self.light(px[hit], py[hit], np.full(int(hit.sum()), anomaly.z, np.float32))[:, None]
        colour[hit] = colour[hit] * (1 - alpha) + alpha * sprite.image[iv, iu] * light * self.building.light_rgb
        covered[hit] = alpha[:, 0]
        return covered

    def cutout(self, anomaly: Anomaly) -> tuple[Sprite, float, float]:
        """The photo of upright ``anomaly`` and its width and height in metres (fixed by its seed)."""
        rng = np.random.default_rng(anomaly.seed)
        s = self.sprites
        if anomaly.label == 1:  # person
            height = rng.uniform(1.55, 1.85)
            tinted = np.clip(s.person.image * rng.uniform(0.8, 1.2, 3), 0, 1)
            return Sprite(tinted, s.person.alpha), height * 0.42, height
        if anomaly.label == 2:  # box: a cardboard-tinted crop of a photo
            return _box(rng, s.box_sources)
        sprites = s.animals if anomaly.label == 3 else s.small
        sprite = sprites[rng.integers(len(sprites))]
        width = rng.uniform(0.35, 0.7) if anomaly.label == 3 else rng.uniform(0.15, 0.35)
        return sprite, width, width * sprite.alpha.shape[0] / sprite.alpha.shape[1]


def _box(rng: np.random.Generator, sources: Sequence[np.ndarray]) -> tuple[Sprite, float, float]:
    source = sources[rng.integers(len(sources))]
    rows, cols = source.shape[:2]
    crop_rows, crop_cols = int(rng.uniform(0.3, 0.6) * rows), int(rng.uniform(0.3, 0.6) * cols)
    y0, x0 = rng.integers(0, rows - crop_rows), rng.integers(0, cols - crop_cols)
    image = cv2.resize(source[y0 : y0 + crop_rows, x0 : x0 + crop_cols], (96, 96))
    image = image * 0.7 + 0.3 * np.array([0.6, 0.45, 0.3], np.float32)
    image[:4] *= 0.5  # the lid's shadowed edge
    width = rng.uniform(0.3, 0.7)
    return Sprite(image, np.ones((96, 96), np.float32)), width, width * rng.uniform(0.6, 1.2)
