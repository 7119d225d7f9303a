"""Per-pixel ground truth beside the frames of a Hazards&Robots-layout split (optional: the real dataset has none).

A split folder ``<root>/<split>`` may have a sibling ``<root>/<split>_masks`` holding one single-channel
PNG per frame, named after the frame's stem (``test_set/frame_000012.jpg`` ->
``test_set_masks/frame_000012.png``): white where the frame shows an anomaly, black elsewhere (grey: that
share of the pixel, as anti-aliased edges).
A frame without a mask file has nothing marked, as the defect-free images of MVTec AD. Masks of any
size are brought to the model's :data:`MASK_SIZE` by area averaging (INTER_AREA): a model pixel is
anomalous when at least :data:`MASK_MIN_AREA` of its area is (:func:`resize_mask`). A quarter rather
than a half, so that a cable or a strip of tape a quarter of a model pixel wide, which still visibly
changes the pixels it crosses, stays in the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from visual_anomaly.data.images import decode_image

MASK_SIZE = 64  # the side of the frames the detector scores and of its error maps
MASK_MIN_AREA = 0.25  # share of a model pixel's area that must be anomalous for the pixel to be
MASKS_SUFFIX = '_masks'


def masks_folder(split_folder: Path) -> Path:
    """The folder that holds the masks of the frames in ``split_folder``."""
    return split_folder.with_name(split_folder.name + MASKS_SUFFIX)


def mask_path(frame_path: Path) -> Path:
    """Where the mask of the frame at ``frame_path`` is (or would be) stored."""
    return masks_folder(frame_path.parent) / f'{frame_path.stem}.png'


def resize_mask(mask: np.ndarray, size: int = MASK_SIZE) -> np.ndarray:
    """A 2-D mask as ``size`` x ``size`` bool (see :data:`MASK_MIN_AREA`).

    ``mask`` holds the anomalous share of each pixel: bool, float in [0, 1], or uint8 with 255 = all.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not mask.size:
        raise ValueError(f'a mask must be a 2-D image, got shape {mask.shape}')
    share = mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)
    if share.shape != (size, size):
        share = cv2.resize(share, (size, size), interpolation=cv2.INTER_AREA)
    return share >= MASK_MIN_AREA - 1e-6  # INTER_AREA weights are not exact at every scale


def write_mask(frame_path: Path, mask: np.ndarray) -> Path:
    """Store the bool ``mask`` of the frame at ``frame_path`` as a black-and-white PNG; return its path."""
    path = mask_path(frame_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8)):
        raise OSError(f'could not write {path}')
    return path


def read_masks(frame_paths: Sequence[Path], size: int = MASK_SIZE, workers: int | None = None) -> np.ndarray | None:
    """(N, size, size) bool masks of ``frame_paths``, or None when their split has no masks folder."""
    if not frame_paths or not masks_folder(frame_paths[0].parent).is_dir():
        return None

    def read(frame_path: Path) -> np.ndarray:
        path = mask_path(frame_path)
        if not path.is_file():
            return np.zeros((size, size), bool)
        try:
            return resize_mask(decode_image(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE), size)
        except ValueError as error:
            raise ValueError(f'{path}: {error}') from None

    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(read, frame_paths)))
