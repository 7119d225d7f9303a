"""Hostile image files for the tests: small files that declare huge images."""

from __future__ import annotations

import struct
import zlib


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` RGB pixels: a whole black image when it is
    small, else (a decompression bomb's shape) a valid header and the first few rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    rows = zlib.compress(b'\x00' * (1 + 3 * width) * (height if height <= 1000 else 4), 9)
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) + chunk(b'IEND', b'')
