"""Media types of files: the suffix a content type is saved with, a content type
sniffed from a file's name or first bytes, and ``data:`` URIs.

Pure: no I/O. File inputs (:mod:`._file_inputs`, :mod:`._uploads`) and output files
(:mod:`._downloads`) both name and type files this way.
"""

from __future__ import annotations

import base64
import mimetypes

__all__ = ["content_type_of", "data_uri", "suffix_for"]

#: Suffixes for content types ``mimetypes`` spells oddly or may not know.
_SUFFIXES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
    "application/octet-stream": ".bin",
}

#: Magic numbers for a content type when a file has no telling name.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "audio/wav"),  # WAV and WebP both start RIFF: told apart below
    (b"ID3", "audio/mpeg"),
    (b"%PDF", "application/pdf"),
)


def suffix_for(content_type: str | None) -> str:
    """A file suffix for ``content_type`` (``.bin`` when unknown)."""
    if not content_type:
        return ".bin"
    base = content_type.split(";", 1)[0].strip().lower()
    return _SUFFIXES.get(base) or mimetypes.guess_extension(base) or ".bin"


def content_type_of(name: str | None, head: bytes) -> str:
    """A content type from a file's name, else its first bytes, else
    ``application/octet-stream``."""
    if name:
        guessed, _ = mimetypes.guess_type(name)
        if guessed:
            return guessed
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if magic == b"RIFF" and head[8:12] == b"WEBP":
                return "image/webp"
            return kind
    return "application/octet-stream"


def data_uri(data: bytes, content_type: str) -> str:
    """``data`` as a ``data:`` URI."""
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
