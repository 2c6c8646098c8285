"""Turning a prediction's (growing) output into what a caller receives. Pure, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import UnexpectedResponseFormat
from ._models import StreamedChunks

__all__ = [
    "ImageScan",
    "TextStream",
    "image_urls",
    "is_image_output",
    "non_text_output",
    "text_chunks",
]

#: File endings that make a URL an image file.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".avif")


def text_chunks(output: Any) -> Sequence[str] | None:
    """Return a text output as its chunks: a string is one chunk, a list of strings is
    a token stream, ``None`` is no chunks yet. Anything else is not text: ``None``.

    The chunks of an event stream (:class:`StreamedChunks`) are text by construction
    and come back as they are, without a look at every chunk."""
    if output is None:
        return []
    if isinstance(output, StreamedChunks):
        return output
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


class ImageScan:
    """:func:`is_image_output` for the successive outputs of one prediction: of an event
    stream's growing chunks (:class:`StreamedChunks`), only the new ones are looked at."""

    __slots__ = ("_checked", "_images", "_source")

    def __init__(self) -> None:
        self._source: list[str] | None = None
        self._checked = 0
        self._images = True

    def __call__(self, output: Any) -> bool:
        if not isinstance(output, StreamedChunks):
            return is_image_output(output)
        if output.source is not self._source or len(output) < self._checked:
            self._source, self._checked, self._images = output.source, 0, True
        if self._images:
            self._images = all(map(_is_image_file, output.tail(self._checked)))
        self._checked = len(output)
        return self._images and len(output) > 0


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

    The cost of an event stream's chunk does not grow with the text before it: a
    :class:`StreamedChunks` view that extends the one last fed is taken from where that
    one ended (a remembered position, not a comparison with everything delivered).
    """

    __slots__ = ("_consumed", "_folded", "_length", "_pieces", "_source")

    def __init__(self) -> None:
        self._pieces: list[str] = []  # joined only when a full comparison needs it
        self._length = 0
        self._folded = False
        # The growing list of the stream last fed, and how many of its chunks are
        # delivered exactly (``None``: the next output is compared in full).
        self._source: list[str] | None = None
        self._consumed = 0

    @property
    def delivered(self) -> str:
        """Everything returned so far, joined."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    @property
    def has_delivered(self) -> bool:
        """Whether any text was returned yet (without joining it)."""
        return self._length > 0

    def fold_line_endings(self) -> None:
        """From now on, compare with CR and CRLF read as LF (text came from an SSE stream)."""
        self._folded = True

    def advance(self, chunks: Sequence[str], *, final: bool) -> list[str] | None:
        """Return the new chunks of ``chunks``; ``None`` if it contradicts what was delivered.

        While the prediction runs an output shorter than what was delivered is taken as
        a stale answer (nothing new). The ``final`` output must contain it exactly.
        """
        if (
            isinstance(chunks, StreamedChunks)
            and chunks.source is self._source
            and len(chunks) >= self._consumed
        ):
            new = [chunk for chunk in chunks.tail(self._consumed) if chunk]
            self._consumed = len(chunks)
            if self._folded and self._joins_crlf(new):
                self._source = None  # see _advance_folded: compare the next one in full
            self._deliver(new)
            return new
        self._source = None
        if self._folded:
            result = self._advance_folded(chunks, final=final)
        else:
            result = self._advance_exact(chunks, final=final)
        if result is None:
            return None
        new, exact = result
        if exact and isinstance(chunks, StreamedChunks):
            self._source, self._consumed = chunks.source, len(chunks)
        return new

    def _deliver(self, new: list[str]) -> None:
        for chunk in new:
            self._pieces.append(chunk)
            self._length += len(chunk)

    def _advance_exact(
        self, chunks: Sequence[str], *, final: bool
    ) -> tuple[list[str], bool] | None:
        """Compare chunk by chunk; ``exact`` says the chunks now equal what was delivered."""
        delivered = self.delivered
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
        self._deliver(new)
        return new, position >= len(delivered)

    def _advance_folded(
        self, chunks: Sequence[str], *, final: bool
    ) -> tuple[list[str], bool] | None:
        text = "".join(chunks)
        folded, starts = _fold(text)
        delivered, _ = _fold(self.delivered)
        if not folded.startswith(delivered):
            stale = delivered.startswith(folded)
            return ([], False) if stale and not final else None
        cut = starts[len(delivered)] if len(delivered) < len(starts) else len(text)
        new: list[str] = []
        position = 0
        for chunk in chunks:
            end = position + len(chunk)
            if end > cut and chunk:
                new.append(chunk[max(0, cut - position) :])
            position = end
        # A delivered CR followed by a new LF reads as one CRLF, so what was delivered now
        # folds shorter than what it was matched against: the next output must be compared
        # in full again, not taken by position (which would skip the line break it lacks).
        merged = self._joins_crlf(new)
        self._deliver(new)
        return new, not merged

    def _joins_crlf(self, new: list[str]) -> bool:
        """Whether ``new`` starts with an LF that the CR delivered last turns into a CRLF."""
        return bool(self._pieces and new) and self._pieces[-1][-1:] == "\r" and new[0][:1] == "\n"


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
