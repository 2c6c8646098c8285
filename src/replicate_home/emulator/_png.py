"""A tiny, dependency-free PNG encoder for the emulator's generated images.

Pure functions only: the same arguments always give the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

__all__ = ["encode_png", "gradient_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """Encode 8-bit RGB pixels (row-major, ``width * height * 3`` bytes) as a PNG file."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGB data, got {len(rgb)}")
    # Every scanline starts with its filter type; 0 means "none".
    raw = b"".join(b"\x00" + rgb[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def gradient_png(prompt: str, index: int, size: int = 64) -> bytes:
    """A ``size`` x ``size`` diagonal gradient, its two colours derived from the arguments."""
    digest = hashlib.sha256(f"{index}\x00{prompt}".encode()).digest()
    start, end = digest[0:3], digest[3:6]
    span = max(1, 2 * (size - 1))
    pixels = bytearray()
    for y in range(size):
        for x in range(size):
            weight = x + y
            for a, b in zip(start, end, strict=True):
                pixels.append((a * (span - weight) + b * weight) // span)
    return encode_png(size, size, bytes(pixels))
