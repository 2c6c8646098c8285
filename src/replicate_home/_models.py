"""Value types that cross the public API: predictions and image results."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TERMINAL_STATUSES", "ImageResponse", "Prediction", "PredictionStatus"]

PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]

#: Statuses after which a prediction never changes again.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

_MARKDOWN_SPECIAL = re.compile(r"([\[\]\\])")


def _escape_alt(text: str) -> str:
    """Escape what would end a Markdown image's alt text early; keep it on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


class ImageResponse:
    """The result of an image model: one or more image URLs and their alt text.

    ``str()`` renders Markdown, one image per line, so it can be shown in a chat
    transcript the way the original provider's result was.
    """

    __slots__ = ("alt", "images", "options")

    def __init__(
        self,
        images: str | Sequence[str],
        alt: str,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(images, str):
            images = [images]
        elif not isinstance(images, Sequence) or not all(isinstance(i, str) for i in images):
            raise ValueError("images must be a URL or a sequence of URLs")
        if not isinstance(alt, str):
            raise ValueError("alt must be a string")
        self.images: list[str] = list(images)
        self.alt = alt
        self.options: dict[str, Any] = dict(options or {})

    def __str__(self) -> str:
        alt = _escape_alt(self.alt)
        if len(self.images) == 1:
            return f"![{alt}]({self.images[0]})"
        return "\n".join(
            f"![#{number} {alt}]({url})" for number, url in enumerate(self.images, start=1)
        )

    def __repr__(self) -> str:
        return f"ImageResponse(images={self.images!r}, alt={self.alt!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageResponse):
            return NotImplemented
        return (self.images, self.alt, self.options) == (other.images, other.alt, other.options)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable


@dataclass(frozen=True)
class Prediction:
    """A snapshot of one prediction as this client saw it.

    ``id``, ``model``, ``version``, ``status``, ``output`` and ``error`` are what the
    service reported (``output`` unchanged: a list of text chunks, a string, image URLs,
    or any JSON). ``polls`` counts the status requests sent after the create; ``elapsed``
    is seconds since the create was sent. ``urls`` are the service's links for it (the
    official API's ``get``, ``cancel`` and ``stream``).
    """

    id: str
    model: str
    version: str | None
    status: str
    output: Any = None
    error: Any = None
    polls: int = 0
    elapsed: float = 0.0
    urls: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: Whether this state was read from the event stream (its output so far, in chunks).
    streamed: bool = field(default=False, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the status is terminal (the prediction will not change again)."""
        return self.status in TERMINAL_STATUSES

    @property
    def text(self) -> str | None:
        """The text output (chunks joined), or ``None`` when the output is not text."""
        output = self.output
        if isinstance(output, str):
            return output
        if isinstance(output, list) and all(isinstance(chunk, str) for chunk in output):
            return "".join(output)
        return None
