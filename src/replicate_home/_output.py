"""Turning a prediction's (growing) output into what a caller receives. Pure, no I/O."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import UnexpectedResponseFormat

__all__ = ["TextStream", "image_urls", "is_image_output", "non_text_output", "text_chunks"]

#: File endings that make a URL an image file.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".avif")


def text_chunks(output: Any) -> list[str] | None:
    """Return a text output as its chunks: a string is one chunk, a list of strings is
    a token stream, ``None`` is no chunks yet. Anything else is not text: ``None``."""
    if output is None:
        return []
    if isinstance(output, str):
        return [output]
    if isinstance(output, list) and all(isinstance(chunk, str) for chunk in output):
        return output
    return None


def non_text_output(output: Any) -> str:
    """Render an output that is not text (numbers, objects …) as one JSON chunk."""
    return json.dumps(output, ensure_ascii=False)


def _is_image_file(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith("data:image/"):
        return True
    if not value.startswith(("https://", "http://")):
        return False
    path = urlsplit(value).path.lower()
    return path.endswith(_IMAGE_SUFFIXES)


def is_image_output(output: Any) -> bool:
    """Whether ``output`` is image files: an image URL or ``data:image/`` URI, or a
    non-empty list of them. Lets any model's images come out as an ``ImageResponse``,
    not only the models known to make images."""
    if isinstance(output, str):
        return _is_image_file(output)
    return isinstance(output, list) and bool(output) and all(map(_is_image_file, output))


def image_urls(output: Any) -> list[str]:
    """Return every image URL of a finished image prediction (one URL or a list)."""
    if isinstance(output, str) and output:
        return [output]
    if isinstance(output, list) and output and all(isinstance(url, str) and url for url in output):
        return list(output)
    raise UnexpectedResponseFormat(
        json.dumps(output, ensure_ascii=False, default=str),
        "an image prediction succeeded without image URLs",
    )


class TextStream:
    """Yields each piece of a growing text output once, in order.

    Feed it every output the service reports; it returns the chunks not delivered yet,
    split where the service split them. The concatenation of everything returned equals
    the final output exactly. If the service changes text that was already delivered,
    :meth:`advance` returns ``None``: the stream cannot stay truthful.

    Text that came from a server-sent event stream has its line endings folded to LF
    (an event's data can't carry CR), so once such text was delivered, comparisons fold
    CR and CRLF too; what is still to come is taken from the final output unchanged.
    """

    __slots__ = ("_delivered", "_folded")

    def __init__(self) -> None:
        self._delivered = ""
        self._folded = False

    @property
    def delivered(self) -> str:
        """Everything returned so far, joined."""
        return self._delivered

    def fold_line_endings(self) -> None:
        """From now on, compare with CR and CRLF read as LF (text came from an SSE stream)."""
        self._folded = True

    def advance(self, chunks: list[str], *, final: bool) -> list[str] | None:
        """Return the new chunks of ``chunks``; ``None`` if it contradicts what was delivered.

        While the prediction runs an output shorter than what was delivered is taken as
        a stale answer (nothing new). The ``final`` output must contain it exactly.
        """
        if self._folded:
            return self._advance_folded(chunks, final=final)
        delivered = self._delivered
        new: list[str] = []
        position = 0
        for chunk in chunks:
            end = position + len(chunk)
            if position >= len(delivered):
                if chunk:
                    new.append(chunk)
            elif end <= len(delivered):
                if delivered[position:end] != chunk:
                    return None
            else:
                seen = len(delivered) - position
                if delivered[position:] != chunk[:seen]:
                    return None
                new.append(chunk[seen:])
            position = end
        if final and position < len(delivered):
            return None
        self._delivered = delivered + "".join(new)
        return new

    def _advance_folded(self, chunks: list[str], *, final: bool) -> list[str] | None:
        text = "".join(chunks)
        folded, starts = _fold(text)
        delivered, _ = _fold(self._delivered)
        if not folded.startswith(delivered):
            stale = delivered.startswith(folded)
            return [] if stale and not final else None
        cut = starts[len(delivered)] if len(delivered) < len(starts) else len(text)
        new: list[str] = []
        position = 0
        for chunk in chunks:
            end = position + len(chunk)
            if end > cut and chunk:
                new.append(chunk[max(0, cut - position) :])
            position = end
        self._delivered += "".join(new)
        return new


def _fold(text: str) -> tuple[str, list[int]]:
    """``text`` with CRLF and CR read as LF, and where each folded character starts."""
    folded: list[str] = []
    starts: list[int] = []
    index = 0
    while index < len(text):
        starts.append(index)
        if text[index] == "\r":
            folded.append("\n")
            index += 2 if text[index + 1 : index + 2] == "\n" else 1
        else:
            folded.append(text[index])
            index += 1
    return "".join(folded), starts
