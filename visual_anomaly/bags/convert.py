"""Dataset -> bag: a Hazards&Robots-layout split as a camera stream with ground truth."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from visual_anomaly.bags.io import (
    CAMERA_TOPIC,
    COMPRESSED_TOPIC,
    COMPRESSED_TYPE,
    EPOCH_NS,
    GROUND_TRUTH_TOPIC,
    IMAGE_TYPE,
    JPEG_QUALITY,
    TYPESTORE,
    VECTOR_TYPE,
    compressed_msg,
    header_msg,
    image_msg,
    open_writer,
    storage_plugin,
    vector_msg,
    write_message,
)
from visual_anomaly.data.hazards import HazardsDataset, SplitIndex
from visual_anomaly.data.images import JPEG_START, decode_image

PNG_START = b'\x89PNG'

logger = logging.getLogger(__name__)


def _fit_size(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Resize so that the longer side is ``image_size`` pixels (aspect ratio kept, INTER_AREA)."""
    height, width = frame.shape[:2]
    scale = image_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return frame if size == (width, height) else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _read_image_file(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its BGR decoding; ValueError when it is not a whole image."""
    data = path.read_bytes()
    return data, decode_image(data)


def _camera_msg(
    data: bytes, frame: np.ndarray, header: Any, *, path: Path, compressed: bool, image_size: int | None
) -> Any:
    """The camera message of image file ``path`` (its ``data``, decoded to ``frame``)."""
    if image_size is not None:
        frame = _fit_size(frame, image_size)
    if not compressed:
        return image_msg(frame, header)
    if image_size is None and data[:2] == JPEG_START:
        return compressed_msg(data, 'jpeg', header)
    if image_size is None and data[:4] == PNG_START:
        return compressed_msg(data, 'png', header)
    ok, encoded = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f'cannot encode {path} as JPEG')
    return compressed_msg(encoded.tobytes(), 'jpeg', header)


def _split_index(dataset_root: str | os.PathLike, split: str) -> SplitIndex:
    dataset = HazardsDataset(dataset_root)
    if split not in dataset.splits:
        raise ValueError(f'no {split!r} split in {dataset_root}; available: {", ".join(dataset.splits)}')
    return dataset.split(split)


def dataset_to_bag(
    dataset_root: str | os.PathLike,
    bag_path: str | os.PathLike,
    *,
    split: str = 'test',
    rate_hz: float = 10.0,
    compressed: bool = False,
    topic: str | None = None,
    storage: str = 'sqlite3',
    image_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a Hazards&Robots-layout split as a camera stream with ground truth (see ``visual_anomaly.bags``).

    Frames are the split's files in sorted order; frame ``i`` is stamped ``EPOCH + i / rate_hz``.
    ``compressed`` writes CompressedImage messages holding the files' own bytes (JPEG or PNG) when
    ``image_size`` is None, else re-encoded as JPEG; otherwise ``bgr8`` Images. ``image_size`` resizes
    frames to that longer side. Unreadable files are skipped with a warning (their stamps stay unused).
    """
    if not rate_hz > 0:
        raise ValueError(f'rate_hz must be positive, got {rate_hz}')
    if image_size is not None and image_size < 1:
        raise ValueError(f'image_size must be positive, got {image_size}')
    storage_plugin(storage)
    index = _split_index(dataset_root, split)
    bag_path = Path(bag_path)
    env = index.env if index.env is not None else np.full(len(index.paths), -1, np.int64)
    skipped = 0
    with open_writer(bag_path, storage) as writer:
        camera = writer.add_connection(
            topic or (COMPRESSED_TOPIC if compressed else CAMERA_TOPIC),
            COMPRESSED_TYPE if compressed else IMAGE_TYPE,
            typestore=TYPESTORE,
        )
        truth = writer.add_connection(GROUND_TRUTH_TOPIC, VECTOR_TYPE, typestore=TYPESTORE)
        for i, path in enumerate(
            tqdm(index.paths, desc=f'{index.folder.name} -> {bag_path.name}', disable=not progress)
        ):
            stamp = EPOCH_NS + round(i * 1e9 / rate_hz)
            header = header_msg(stamp)
            try:
                data, frame = _read_image_file(path)
            except (OSError, ValueError) as error:
                skipped += 1
                logger.warning('skipping %s: %s', path, error)
                continue
            msg = _camera_msg(data, frame, header, path=path, compressed=compressed, image_size=image_size)
            write_message(writer, camera, stamp, msg)
            write_message(writer, truth, stamp, vector_msg(header, index.labels[i], index.difficulty[i], env[i]))
    if skipped:
        logger.warning('%d unreadable files of %s were left out of %s', skipped, index.folder, bag_path)
    return bag_path
