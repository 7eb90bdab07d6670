"""Image files made for tests: a random JPEG, and a tiny PNG that declares any size."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b"")


def jpeg_bytes(size=(48, 32), **options) -> bytes:
    """A JPEG of random pixels, ``size`` = (width, height); ``options`` go to Pillow's save."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", **options)
    return buf.getvalue()
