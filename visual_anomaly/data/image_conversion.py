"""sensor_msgs Image / CompressedImage -> OpenCV BGR frames, with the checks a camera driver needs.

cv_bridge does the conversion where the ROS install provides it; elsewhere ``rosbags-image``
(which works on rclpy messages) does. What neither checks is done here: the declared width,
height, step and data size must agree, and row padding (``step`` larger than a row) is removed
before conversion. Every problem raises :class:`FrameError` with a message fit for a log line.
"""

from __future__ import annotations

import io
import warnings
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import PIL.Image

try:  # the ROS install's cv_bridge, when it is a working one
    from cv_bridge import CvBridge, CvBridgeError

    _BRIDGE: Any = CvBridge()
    _CONVERSION_ERRORS: tuple[type[Exception], ...] = (CvBridgeError, cv2.error)
except Exception:  # noqa: BLE001  (absent, or PyPI's broken ROS 1 repack)
    from rosbags.image import ImageConversionError, ImageFormatError, image_to_cvimage

    _BRIDGE = None
    _CONVERSION_ERRORS = (ImageConversionError, ImageFormatError, cv2.error)

#: Encodings the node accepts, with bytes per pixel (yuv422 variants pack two pixels in four bytes).
SUPPORTED_ENCODINGS = {
    'mono8': 1, 'mono16': 2, 'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4,
    'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
}  # fmt: skip
MAX_SIDE = 16384  # larger declared sizes are treated as corrupt headers
MAX_FRAME_PIXELS = 4096 * 4096  # the default limit on a frame's pixels (the node's max_frame_pixels)


def _silence_opencv_log() -> None:
    """OpenCV logs its own lines on an undecodable frame; the FrameError already says it, in one sentence.
    OpenCV 5 has ``cv2.utils.logging``; 4.x (4.6 on Ubuntu 24.04) has ``cv2.setLogLevel``, 0 being silent."""
    opencv_logging = getattr(cv2.utils, 'logging', None)
    if opencv_logging is not None:
        opencv_logging.setLogLevel(opencv_logging.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)


_silence_opencv_log()


class FrameError(ValueError):
    """A frame that cannot be used; the message says why."""


def converter_name() -> str:
    return 'cv_bridge' if _BRIDGE is not None else 'rosbags-image'


#: 8-bit encodings whose pixels the detector reads in place: encoding -> (channels, colour order).
DIRECT_ENCODINGS = {
    'mono8': (1, 'mono'),
    'rgb8': (3, 'rgb'),
    'bgr8': (3, 'bgr'),
    'rgba8': (4, 'rgba'),
    'bgra8': (4, 'bgra'),
}
_TO_BGR = {'mono': cv2.COLOR_GRAY2BGR, 'rgb': cv2.COLOR_RGB2BGR, 'rgba': cv2.COLOR_RGBA2BGR, 'bgra': cv2.COLOR_BGRA2BGR}


def _checked_rows(msg: Any, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, str, int, int]:
    """(rows as a (height, step) uint8 view, encoding, width, bytes per row), after every consistency check."""
    encoding = msg.encoding.lower()
    if encoding not in SUPPORTED_ENCODINGS:
        raise FrameError(f'unsupported encoding {msg.encoding!r}; supported: {", ".join(SUPPORTED_ENCODINGS)}')
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise FrameError(f'bad frame size {width}x{height}')
    if width * height > max_pixels:
        raise FrameError(
            f'frame of {width}x{height} pixels, more than the {max_pixels:,} allowed (parameter max_frame_pixels)'
        )
    row = width * SUPPORTED_ENCODINGS[encoding]
    if step < row:
        raise FrameError(f'step {step} is smaller than a {encoding} row of {width} pixels ({row} bytes)')
    data = memoryview(msg.data).cast('B') if not isinstance(msg.data, bytes | bytearray) else msg.data
    if len(data) < step * height:
        raise FrameError(f'truncated frame: {len(data)} bytes for {height} rows of {step} bytes')
    if encoding.startswith(('yuv', 'uyvy', 'yuyv')) and width % 2:
        raise FrameError(f'{encoding} needs an even width, got {width}')
    return np.frombuffer(data, np.uint8, count=step * height).reshape(height, step), encoding, width, row


def image_to_array(msg: Any, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, str]:
    """A ``sensor_msgs/Image`` as (uint8 array, colour order) for the detector, without copying where possible.

    8-bit mono, RGB, BGR, RGBA and BGRA frames come back as a view of the message's own bytes
    (row padding skipped by strides), so the only work left is the detector's resize; other
    encodings are converted to BGR. The view is valid while ``msg`` is. Frames of more than
    ``max_pixels`` pixels are refused.
    """
    rows, encoding, width, row = _checked_rows(msg, max_pixels)
    if encoding in DIRECT_ENCODINGS:
        channels, order = DIRECT_ENCODINGS[encoding]
        pixels = rows[:, :row].reshape(len(rows), width, channels)
        return (pixels[:, :, 0] if channels == 1 else pixels), order
    return _convert(rows, encoding, width, row, msg), 'bgr'


def image_to_bgr(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` as an (H, W, 3) uint8 BGR array (a copy, safe to keep)."""
    return to_bgr(*image_to_array(msg))


def to_bgr(pixels: np.ndarray, color_order: str) -> np.ndarray:
    """A contiguous BGR copy of ``pixels`` given in ``color_order`` (mono, rgb, bgr, rgba or bgra)."""
    if color_order == 'bgr':
        return np.array(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_BGR[color_order])


def _convert(rows: np.ndarray, encoding: str, width: int, row: int, msg: Any) -> np.ndarray:
    """Convert a checked 16-bit or YUV frame to BGR with cv_bridge or rosbags-image."""
    tight = SimpleNamespace(
        encoding=encoding,
        height=len(rows),
        width=width,
        step=row,
        is_bigendian=bool(msg.is_bigendian),
        data=np.ascontiguousarray(rows[:, :row]).tobytes(),
    )
    try:
        if _BRIDGE is not None:
            tight_msg = type(msg)(
                encoding=encoding,
                height=tight.height,
                width=width,
                step=row,
                is_bigendian=tight.is_bigendian,
                data=tight.data,
            )
            frame = _BRIDGE.imgmsg_to_cv2(tight_msg, desired_encoding='bgr8')
        else:
            frame = image_to_cvimage(tight, 'bgr8')
    except _CONVERSION_ERRORS as error:
        raise FrameError(f'cannot convert {encoding}: {error}') from error
    return np.ascontiguousarray(frame, dtype=np.uint8)


def declared_size(data: bytes, fmt: str = '') -> tuple[int, int]:
    """(width, height) that compressed image ``data`` declares, read from its header alone (Pillow)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # Pillow's notes on a corrupt header: the FrameError says it
            warnings.simplefilter('error', PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                return image.size
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning):
        raise FrameError(
            f'compressed frame ({len(data)} bytes, format {fmt!r}) declares more than '
            f'{PIL.Image.MAX_IMAGE_PIXELS:,} pixels; refused before decoding'
        ) from None
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise FrameError(
            f'cannot decode compressed frame ({len(data)} bytes, format {fmt!r}): no image header this node reads'
        ) from None


def compressed_to_bgr(msg: Any, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) as an (H, W, 3) uint8 BGR array.

    The size its header declares is checked against ``max_pixels`` before anything is decoded, so
    that a small file declaring a huge image (a decompression bomb) costs no memory.
    """
    raw = bytes(msg.data)
    if not raw:
        raise FrameError('empty compressed frame')
    width, height = declared_size(raw, msg.format)
    if width * height > max_pixels:
        raise FrameError(
            f'compressed frame declares {width}x{height} pixels, more than the {max_pixels:,} allowed '
            '(parameter max_frame_pixels); refused before decoding'
        )
    try:
        frame = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        frame = None
    if frame is None:
        raise FrameError(f'cannot decode compressed frame ({len(raw)} bytes, format {msg.format!r}, {width}x{height})')
    return frame
