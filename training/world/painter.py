"""The painter that draws objects over the ray-cast corridor: world-space primitives projected into the frame."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from training.world.scene import Pose


class Painter:
    """Projects world-space primitives into the frame and draws them, shaded by distance."""

    def __init__(self, image: np.ndarray, pose: Pose, focal: float, attenuation: float) -> None:
        self.image = image
        self.pose = pose
        self.focal = focal
        self.center = image.shape[1] / 2.0
        self.attenuation = attenuation
        self.covered = np.zeros(image.shape[:2], np.uint8)  # share of each pixel drawn over, anti-aliased, x 255

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
        cv2.fillPoly(self.covered, contour, 255, cv2.LINE_AA, shift=4)

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
        cv2.polylines(self.covered, curve, False, 255, thickness, cv2.LINE_AA, shift=4)

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
        cv2.circle(self.covered, centre, radius, 255, -1, cv2.LINE_AA)
