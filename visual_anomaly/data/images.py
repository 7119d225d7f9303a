"""Decoding of encoded image files (JPEG, PNG, ...) that refuses partial images."""

from __future__ import annotations

import cv2
import numpy as np

JPEG_START = b'\xff\xd8'
JPEG_END = b'\xff\xd9'


def decode_image(data: bytes | np.ndarray, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode ``data`` with OpenCV read ``flag``; ValueError when it is not a whole image.

    OpenCV 4 decodes truncated JPEGs with a mere warning, so a JPEG must end with its end-of-image
    marker (looked for in the last 1 KiB, which also accepts padding after it).
    """
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    if buffer[:2].tobytes() == JPEG_START and JPEG_END not in buffer[-1024:].tobytes():
        raise ValueError('truncated JPEG (no end-of-image marker)')
    image = cv2.imdecode(buffer, flag) if buffer.size else None
    if image is None:
        raise ValueError('not a decodable image')
    return image
