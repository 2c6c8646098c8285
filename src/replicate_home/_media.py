"""Media types of files: the suffix a content type is saved with, a content type
sniffed from a file's name or first bytes, and ``data:`` URIs.

Pure: no I/O. File inputs (:mod:`._file_inputs`, :mod:`._uploads`) and output files
(:mod:`._downloads`) both name and type files this way.
"""

from __future__ import annotations

import base64
import mimetypes

__all__ = ["content_type_of", "data_uri", "sniff", "suffix_for"]

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
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),  # an MPEG audio frame with no ID3 tag before it
    (b"\xff\xf3", "audio/mpeg"),
    (b"\xff\xf2", "audio/mpeg"),
    (b"OggS", "audio/ogg"),
    (b"fLaC", "audio/flac"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),  # EBML: WebM (Matroska)
    (b"%PDF", "application/pdf"),
)

#: RIFF containers, by the form type at bytes 8-12.
_RIFF = {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}


def suffix_for(content_type: str | None) -> str:
    """A file suffix for ``content_type`` (``.bin`` when unknown)."""
    if not content_type:
        return ".bin"
    base = content_type.split(";", 1)[0].strip().lower()
    return _SUFFIXES.get(base) or mimetypes.guess_extension(base) or ".bin"


def sniff(head: bytes) -> str | None:
    """The content type a file's first bytes (at least 12 of them) say, if they say one:
    common image, audio, video and document formats."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"RIFF"):
        return _RIFF.get(head[8:12])
    if head[4:8] == b"ftyp":  # ISO base media: MP4, or M4A for audio alone
        return "audio/mp4" if head[8:12] == b"M4A " else "video/mp4"
    return None


def content_type_of(name: str | None, head: bytes) -> str:
    """A content type from a file's name, else its first bytes, else
    ``application/octet-stream``."""
    if name:
        guessed, _ = mimetypes.guess_type(name)
        if guessed:
            return guessed
    return sniff(head) or "application/octet-stream"


def data_uri(data: bytes, content_type: str) -> str:
    """``data`` as a ``data:`` URI."""
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
