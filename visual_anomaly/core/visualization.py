"""Error heatmaps and overlays (BGR uint8 images, as OpenCV and ROS ``bgr8`` expect)."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS = {
    'jet': cv2.COLORMAP_JET,
    'turbo': cv2.COLORMAP_TURBO,
    'inferno': cv2.COLORMAP_INFERNO,
    'viridis': cv2.COLORMAP_VIRIDIS,
    'hot': cv2.COLORMAP_HOT,
}
HEATMAP_GAIN = 8.0  # heatmaps saturate at this multiple of the typical normal reconstruction error


def decision_label(is_anomaly: bool, score: float, threshold: float | None = None) -> str:
    """The banner text of an overlay: ``ANOMALY 4.20 / 3.10`` or ``normal 0.50`` (without a threshold)."""
    text = f'{"ANOMALY" if is_anomaly else "normal"} {score:.2f}'
    return text if threshold is None else f'{text} / {threshold:.2f}'


def error_heatmap(
    error_map: np.ndarray, error_scale: float, size: tuple[int, int] | None = None, colormap: str = 'jet'
) -> np.ndarray:
    """Colour a per-pixel error map; ``error_scale`` maps to the top of the colormap.

    A fixed scale (e.g. a multiple of the typical normal error) keeps colours comparable from
    frame to frame. ``size`` is (width, height); default: the error map's own size.
    """
    if colormap not in COLORMAPS:
        raise ValueError(f'colormap must be one of {sorted(COLORMAPS)}, got {colormap!r}')
    if not error_scale > 0:
        raise ValueError(f'error_scale must be positive, got {error_scale}')
    levels = np.clip(np.asarray(error_map, dtype=np.float32) * (255.0 / error_scale), 0, 255).astype(np.uint8)
    if size is not None and tuple(size) != levels.shape[::-1]:
        levels = cv2.resize(levels, tuple(size), interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(levels, COLORMAPS[colormap])


def overlay(
    frame_bgr: np.ndarray, heatmap_bgr: np.ndarray, alpha: float = 0.5, label: str | None = None, alarm: bool = False
) -> np.ndarray:
    """Blend a heatmap over a BGR frame (resized to the frame) and draw ``label`` in a banner."""
    height, width = frame_bgr.shape[:2]
    if heatmap_bgr.shape[:2] != (height, width):
        heatmap_bgr = cv2.resize(heatmap_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    blended = cv2.addWeighted(frame_bgr, 1.0 - alpha, heatmap_bgr, alpha, 0.0)
    if label:
        scale = max(height, 240) / 480.0
        thickness = max(1, round(2 * scale))
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        color = (0, 0, 255) if alarm else (0, 160, 0)
        cv2.rectangle(blended, (0, 0), (min(width, text_w + 12), text_h + baseline + 12), color, cv2.FILLED)
        cv2.putText(
            blended, label, (6, text_h + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
    return blended
