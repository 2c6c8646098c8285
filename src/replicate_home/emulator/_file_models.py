"""The outputs of the emulator's file models, derived from their inputs. Pure, no I/O.

Each output proves what reached the model, so that a test can check that a file arrived
intact:

- the upscaler's PNG and the image-to-image model's PNGs carry ``tEXt`` chunks with the
  input's SHA-256 and length (read them with :func:`png_text`);
- the speech-to-text model's ``transcription`` states the audio's length and SHA-256;
- the video model's file is deterministic for its inputs (:func:`video_sha256` gives its
  hash) and opens with a small box whose JSON names them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

from ._png import digest_png

__all__ = [
    "VIDEO_CHUNK",
    "FileDigest",
    "decode_data_uri",
    "image_to_image_png",
    "transcription_output",
    "transcription_text",
    "upscale_png",
    "video_chunks",
    "video_sha256",
]

#: The side of the upscaler's output per unit of ``scale``, in pixels.
UPSCALE_BASE = 16
#: The side of the image-to-image model's outputs, in pixels.
IMAGE_TO_IMAGE_SIZE = 64
#: How the video model's file is produced and served: chunks of this many bytes.
VIDEO_CHUNK = 1024 * 1024

_DATA_URI = re.compile(r"data:(?P<type>[^,;]*(?:;[^,;=]+=[^,;]*)*)(?P<base64>;base64)?,", re.I)


class FileDigest(NamedTuple):
    """What a model keeps of an input file: its length and hex SHA-256."""

    length: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> FileDigest:
        return cls(len(data), hashlib.sha256(data).hexdigest())


def decode_data_uri(uri: str) -> bytes:
    """The bytes a ``data:`` URI carries (base64 or percent-encoded); ``ValueError`` if it
    is not one or its base64 is broken."""
    match = _DATA_URI.match(uri)
    if match is None:
        raise ValueError("not a data: URI (data:[<media type>][;base64],<data>)")
    payload = uri[match.end() :]
    if not match["base64"]:
        return unquote_to_bytes(payload)
    try:
        return base64.b64decode(unquote_to_bytes(payload), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its base64 data is malformed") from None


def upscale_png(image: FileDigest, scale: int) -> bytes:
    """The upscaler's output: a gradient of ``16 * scale`` pixels a side coloured by the
    input's hash, with ``tEXt`` chunks ``input-sha256``, ``input-length`` and ``scale``."""
    digest = hashlib.sha256(f"upscale\x00{image.sha256}\x00{scale}".encode()).digest()
    text = {"input-sha256": image.sha256, "input-length": str(image.length), "scale": str(scale)}
    return digest_png(digest, UPSCALE_BASE * scale, text)


def image_to_image_png(
    image: FileDigest,
    prompt: str,
    strength: float,
    index: int,
    references: Sequence[FileDigest] = (),
) -> bytes:
    """Output ``index`` of the image-to-image model, with ``tEXt`` chunks
    ``input-sha256``, ``input-length``, ``prompt-sha256`` (of its UTF-8 bytes),
    ``strength``, ``index`` and ``reference-sha256s`` (comma-separated, maybe empty)."""
    prompt_sha256 = hashlib.sha256(prompt.encode()).hexdigest()
    refs = ",".join(reference.sha256 for reference in references)
    seed = f"img2img\x00{image.sha256}\x00{prompt_sha256}\x00{strength!r}\x00{index}\x00{refs}"
    text = {
        "input-sha256": image.sha256,
        "input-length": str(image.length),
        "prompt-sha256": prompt_sha256,
        "strength": repr(float(strength)),
        "index": str(index),
        "reference-sha256s": refs,
    }
    return digest_png(hashlib.sha256(seed.encode()).digest(), IMAGE_TO_IMAGE_SIZE, text)


def transcription_text(audio: bytes | FileDigest) -> str:
    """What the speech-to-text model "hears" in ``audio`` (its bytes, or their digest): a
    sentence naming their length and SHA-256, ``"The audio is 5 bytes long and its
    SHA-256 is 2cf24d…."``."""
    digest = audio if isinstance(audio, FileDigest) else FileDigest.of(bytes(audio))
    return f"The audio is {digest.length} bytes long and its SHA-256 is {digest.sha256}."


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def transcription_output(
    audio: FileDigest, transcription: str = "plain text", translate: bool = False
) -> dict[str, Any]:
    """The speech-to-text model's output, shaped like a Whisper model's on Replicate:
    ``transcription`` in the format asked (``"plain text"``, ``"srt"`` or ``"vtt"``; the
    sentence of :func:`transcription_text` in each), ``segments``, ``translation`` (with
    ``translate``) and ``detected_language``."""
    text = transcription_text(audio)
    seconds = round(audio.length / 16000, 3)  # as if 16 kHz, 8-bit mono
    if transcription == "srt":
        formatted = f"1\n{_timestamp(0, ',')} --> {_timestamp(seconds, ',')}\n{text}\n"
    elif transcription == "vtt":
        formatted = f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(seconds, '.')}\n{text}\n"
    else:
        formatted = text
    return {
        "segments": [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": seconds,
                "text": text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.1,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
        ],
        "transcription": formatted,
        "translation": text if translate else None,
        "txt_file": None,
        "srt_file": None,
        "detected_language": "english",
    }


def _video_seed(prompt: str, first_frame: FileDigest | None) -> str:
    frame = "" if first_frame is None else first_frame.sha256
    return hashlib.sha256(f"video\x00{prompt}\x00{frame}".encode()).hexdigest()


def _video_header(prompt: str, size: int, first_frame: FileDigest | None) -> bytes:
    """An MP4-like start: an ``ftyp`` box, then a ``free`` box holding JSON that names
    the inputs (``prompt-sha256``, ``first-frame-sha256``, ``first-frame-length``) and
    the file's ``length``."""
    facts = {
        "prompt-sha256": hashlib.sha256(prompt.encode()).hexdigest(),
        "first-frame-sha256": None if first_frame is None else first_frame.sha256,
        "first-frame-length": None if first_frame is None else first_frame.length,
        "length": size,
    }
    note = json.dumps(facts, separators=(",", ":")).encode()
    ftyp = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    free = (8 + len(note)).to_bytes(4, "big") + b"free" + note
    return ftyp + free


def video_chunks(prompt: str, size: int, first_frame: FileDigest | None = None) -> Iterator[bytes]:
    """The video model's output file, ``size`` bytes in pieces of about
    :data:`VIDEO_CHUNK`: its header, then pseudo-random bytes seeded by the inputs, so the
    file is never held whole."""
    seed = _video_seed(prompt, first_frame)
    header = _video_header(prompt, size, first_frame)[:size]
    left = size - len(header)
    index = 0
    pending = header
    while left > 0:
        block = random.Random(f"{seed}:{index}").randbytes(min(VIDEO_CHUNK, left))
        left -= len(block)
        index += 1
        yield pending + block if pending else block
        pending = b""
    if pending:
        yield pending


def video_sha256(prompt: str, size: int, first_frame: bytes | None = None) -> str:
    """The hex SHA-256 of the video model's output for these inputs (``first_frame``: the
    bytes of its ``first_frame_image``, if any), computed a chunk at a time."""
    frame = None if first_frame is None else FileDigest.of(first_frame)
    digest = hashlib.sha256()
    for chunk in video_chunks(prompt, size, frame):
        digest.update(chunk)
    return digest.hexdigest()
