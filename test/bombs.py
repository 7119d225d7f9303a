"""Hostile image files for the tests: small files that declare huge images, and a hypothesis strategy
of damaged compressed frames."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from hypothesis import strategies as st


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` RGB pixels: a whole black image when it is
    small, else (a decompression bomb's shape) a valid header and the first few rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    rows = zlib.compress(b'\x00' * (1 + 3 * width) * (height if height <= 1000 else 4), 9)
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) + chunk(b'IEND', b'')


_ENCODED = {
    name: cv2.imencode(f'.{name}', np.random.default_rng(7).integers(0, 256, (24, 32, 3), np.uint8))[1].tobytes()
    for name in ('png', 'jpg', 'bmp', 'tiff', 'webp', 'ppm')
}
_SIZE_FIELDS = {'png': (16, '>II'), 'bmp': (18, '<ii')}  # where the header declares width and height
_FORMATS = st.sampled_from(['jpeg', 'png', 'bmp', 'tiff', 'rgb8; jpeg compressed bgr8', 'bgr8; png compressed '])


@st.composite
def hostile_compressed(draw) -> tuple[str, bytes]:
    """(format string, data) of a CompressedImage: random bytes, or a small real image (PNG, JPEG, BMP,
    TIFF, WebP, PPM) with its declared size set to anything up to 2^31 - 1, header bytes changed and/or
    cut short; the format string is a usual one or any text."""
    if draw(st.booleans()):
        data = bytearray(draw(st.binary(max_size=3000)))
    else:
        name = draw(st.sampled_from(sorted(_ENCODED)))
        data = bytearray(_ENCODED[name])
        if name in _SIZE_FIELDS and draw(st.booleans()):
            offset, layout = _SIZE_FIELDS[name]
            sides = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1))
            data[offset : offset + 8] = struct.pack(layout, *sides)
        for position, value in draw(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4)):
            if position < len(data):
                data[position] = value
        data = data[: draw(st.integers(0, len(data)))]
    return draw(_FORMATS | st.text(max_size=30)), bytes(data)


def declaring(kind: str, width: int, height: int) -> bytes:
    """A small real ``jpg`` or ``bmp`` image whose header declares ``width`` x ``height`` pixels."""
    data = bytearray(_ENCODED[kind])
    if kind == 'jpg':  # the baseline frame header: FF C0, length, precision, height, width
        start = data.index(b'\xff\xc0') + 5
        data[start : start + 4] = struct.pack('>HH', height, width)
    else:
        data[18:26] = struct.pack('<ii', width, height)
    return bytes(data)
