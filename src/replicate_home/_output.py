"""Turning a prediction's (growing) output into what a caller receives. Pure, no I/O."""

from __future__ import annotations

import json
from typing import Any

from ._exceptions import UnexpectedResponseFormat

__all__ = ["TextStream", "image_urls", "non_text_output", "text_chunks"]


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
    """

    __slots__ = ("_delivered",)

    def __init__(self) -> None:
        self._delivered = ""

    @property
    def delivered(self) -> str:
        """Everything returned so far, joined."""
        return self._delivered

    def advance(self, chunks: list[str], *, final: bool) -> list[str] | None:
        """Return the new chunks of ``chunks``; ``None`` if it contradicts what was delivered.

        While the prediction runs an output shorter than what was delivered is taken as
        a stale answer (nothing new). The ``final`` output must contain it exactly.
        """
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
