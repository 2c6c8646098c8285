"""A tiny, dependency-free PNG encoder for the emulator's generated images.

Pure functions only: the same arguments always give the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping

__all__ = ["digest_png", "encode_png", "gradient_png", "png_text"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rgb: bytes, text: Mapping[str, str] | None = None) -> bytes:
    """Encode 8-bit RGB pixels (row-major, ``width * height * 3`` bytes) as a PNG file,
    with a ``tEXt`` chunk per ``text`` item (Latin-1 keywords of 1 to 79 characters and
    Latin-1 values, as the PNG specification wants)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGB data, got {len(rgb)}")
    # Every scanline starts with its filter type; 0 means "none".
    raw = b"".join(b"\x00" + rgb[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    texts = b""
    for keyword, value in (text or {}).items():
        if not 1 <= len(keyword) <= 79 or "\x00" in keyword or "\x00" in value:
            raise ValueError(f"a PNG text keyword must have 1 to 79 characters, got {keyword!r}")
        texts += _chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + value.encode("latin-1"))
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + texts
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def png_text(png: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG file, keyword -> value: how a test reads back what an
    emulated file model wrote into its output (the SHA-256 and length of its input).

    Raises ``ValueError`` if ``png`` is not a well-formed PNG file (signature, chunk
    lengths and CRCs are checked)."""
    if not png.startswith(_SIGNATURE):
        raise ValueError("not a PNG file: bad signature")
    texts: dict[str, str] = {}
    position = len(_SIGNATURE)
    while position < len(png):
        if position + 12 > len(png):
            raise ValueError("not a PNG file: truncated chunk")
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        end = position + 8 + length
        if end + 4 > len(png):
            raise ValueError("not a PNG file: truncated chunk")
        data = png[position + 8 : end]
        (crc,) = struct.unpack(">I", png[end : end + 4])
        if zlib.crc32(kind + data) & 0xFFFFFFFF != crc:
            raise ValueError(f"not a PNG file: bad CRC in a {kind!r} chunk")
        if kind == b"tEXt":
            keyword, _, value = data.partition(b"\x00")
            texts[keyword.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            return texts
        position = end + 4
    raise ValueError("not a PNG file: no IEND chunk")


def gradient_png(prompt: str, index: int, size: int = 64) -> bytes:
    """A ``size`` x ``size`` diagonal gradient, its two colours derived from the arguments."""
    digest = hashlib.sha256(f"{index}\x00{prompt}".encode()).digest()
    return digest_png(digest, size)


def digest_png(digest: bytes, size: int, text: Mapping[str, str] | None = None) -> bytes:
    """A ``size`` x ``size`` diagonal gradient whose two colours are the first six bytes of
    ``digest``, with ``text`` chunks (see :func:`encode_png`)."""
    start, end = digest[0:3], digest[3:6]
    span = max(1, 2 * (size - 1))
    # A pixel's colour depends on x + y alone: one colour per diagonal, and row y is the
    # diagonals y to y + size - 1 (joined in C: a 64 x 64 image in about 0.1 ms, where a
    # loop per byte took 2 ms, and the emulator renders one per image output it answers).
    diagonals = [
        bytes((a * (span - weight) + b * weight) // span for a, b in zip(start, end, strict=True))
        for weight in range(2 * size - 1)
    ]
    pixels = b"".join(b"".join(diagonals[y : y + size]) for y in range(size))
    return encode_png(size, size, pixels, text)
