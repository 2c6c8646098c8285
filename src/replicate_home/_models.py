"""Value types that cross the public API: predictions and image results."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Literal, overload

from ._downloads import Downloads, FileOutput, file_urls

__all__ = [
    "TERMINAL_STATUSES",
    "Deployment",
    "ImageResponse",
    "Prediction",
    "PredictionProgress",
    "PredictionStatus",
    "StreamedChunks",
    "parse_progress",
]

PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]

#: Statuses after which a prediction never changes again.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

_MARKDOWN_SPECIAL = re.compile(r"([\[\]\\])")
#: A tqdm progress line: ``NN%|<bar>| current/total`` (the rest of the line is ignored).
_PROGRESS = re.compile(r"^\s*(\d{1,3})%\s*\|[^|]*\|\s*(\d{1,12})/(\d{1,12})")
#: How much of the end of the logs is searched for a progress line: the latest one is
#: near the end, and a long log must not make every look at ``progress`` slower.
_PROGRESS_WINDOW = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _escape_alt(text: str) -> str:
    """Escape what would end a Markdown image's alt text early; keep it on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


class ImageResponse:
    """The result of an image model: one or more image URLs and their alt text.

    ``str()`` renders Markdown, one image per line, so it can be shown in a chat
    transcript the way the original provider's result was.
    """

    __slots__ = ("_downloads", "alt", "images", "options")

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
        #: How its files download (set by the client that made it).
        self._downloads: Downloads | None = None

    def __str__(self) -> str:
        alt = _escape_alt(self.alt)
        if len(self.images) == 1:
            return f"![{alt}]({self.images[0]})"
        return "\n".join(
            f"![#{number} {alt}]({url})" for number, url in enumerate(self.images, start=1)
        )

    @property
    def files(self) -> list[FileOutput]:
        """Each image as a :class:`FileOutput` (read, stream or save it), in order;
        from a client, they download as its :attr:`Prediction.files` do."""
        return [FileOutput._via(url, self._downloads) for url in self.images]

    def __repr__(self) -> str:
        return f"ImageResponse(images={self.images!r}, alt={self.alt!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageResponse):
            return NotImplemented
        return (self.images, self.alt, self.options) == (other.images, other.alt, other.options)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable


@dataclass(frozen=True)
class DeploymentRelease:
    """A deployment's current release, as the API describes it: the model and version
    it runs (``number`` counts the releases) and its instance settings."""

    number: int | None = None
    model: str | None = None
    version: str | None = None
    created_at: datetime | None = field(default=None, repr=False)
    #: The username that made the release.
    created_by: str | None = field(default=None, repr=False)
    hardware: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None


@dataclass(frozen=True)
class Deployment:
    """A deployment (``owner/name``) to run instead of a model, on :class:`ReplicateAPI`.

    Pass it wherever a model is accepted (``predict``, ``generate``, ``create``, and in
    the model lists of ``fan_out``, ``compare`` and ``race``, mixed with models): its
    predictions are created with ``POST /v1/deployments/{owner}/{name}/predictions``. A
    value of its own, so that a deployment can never be mistaken for a model of the same
    name. Events and results name it ``deployment:owner/name``.

    ``release`` is what the deployment runs, where the API said it
    (``api.deployments.get()`` and the other management calls); it takes no part in
    comparing deployments.
    """

    name: str
    release: DeploymentRelease | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"a deployment name must be a string, not {type(self.name).__name__}")
        owner, _, name = self.name.partition("/")
        if not (_NAME.fullmatch(owner) and _NAME.fullmatch(name)):
            raise ValueError(f"a deployment is named 'owner/name', not {self.name!r}")

    @property
    def owner(self) -> str:
        """The deployment's owner (user or organisation)."""
        return self.name.partition("/")[0]

    def __str__(self) -> str:
        return f"deployment:{self.name}"


@dataclass(frozen=True)
class PredictionProgress:
    """How far a prediction has got, read from a tqdm-style line of its logs."""

    #: From 0.0 to 1.0.
    percentage: float
    current: int
    total: int


def parse_progress(logs: str | None) -> PredictionProgress | None:
    """The last tqdm-style progress line (``NN%|bar| current/total``) of ``logs``.

    Only the end of the logs is searched (the latest progress line is there), so the
    cost does not grow with the length of the logs.
    """
    if not logs:
        return None
    for line in reversed(logs[-_PROGRESS_WINDOW:].splitlines()):
        # A tqdm bar redraws itself with carriage returns: the last redraw counts.
        match = _PROGRESS.match(line.rsplit("\r", 1)[-1]) or _PROGRESS.match(line)
        if match is not None:
            percent, current, total = (int(group) for group in match.groups())
            return PredictionProgress(min(percent, 100) / 100.0, current, total)
    return None


class StreamedChunks(Sequence[str]):
    """The output of a prediction while its event stream is read: the chunks so far.

    A read-only view of the first ``length`` chunks of one growing, append-only list:
    chunks that arrive later do not change it. Making one costs the same at the
    16000th event as at the first, where copying the list would grow with every event.
    It compares equal to a list (or any sequence) of the same chunks; ``list(output)``
    copies it.
    """

    __slots__ = ("_chunks", "_length")

    def __init__(self, chunks: list[str], length: int | None = None) -> None:
        self._chunks = chunks
        self._length = len(chunks) if length is None else length

    @property
    def source(self) -> list[str]:
        """The growing list this is a view of (to tell that one view extends another)."""
        return self._chunks

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self._chunks[: self._length][index]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("chunk index out of range")
        return self._chunks[index]

    def __iter__(self) -> Iterator[str]:
        return islice(self._chunks, self._length)

    def tail(self, start: int) -> list[str]:
        """The chunks from ``start`` on (a copy of only those)."""
        return self._chunks[start : self._length]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists: not hashable either

    def __repr__(self) -> str:
        return repr(list(self))


@dataclass(frozen=True)
class Prediction:
    """A snapshot of one prediction as this client saw it.

    ``id``, ``model``, ``version``, ``status``, ``output`` and ``error`` are what the
    service reported (``output`` unchanged: a list of text chunks, a string, image URLs,
    or any JSON; while an event stream is read, the chunks so far as a read-only
    :class:`StreamedChunks` sequence). ``polls`` counts the status requests sent after
    the create; ``elapsed`` is seconds since the create was sent (for a prediction
    followed by id, since the follow began). ``urls`` are the service's links for it
    (the official API's ``get``, ``cancel``, ``stream`` and ``web``).

    The rest is the record as the official API keeps it (the homepage service tells
    less, and leaves these empty): ``input``, ``logs``, ``metrics``, the timestamps
    ``created_at``, ``started_at`` and ``completed_at`` (timezone-aware ``datetime``),
    ``source`` (``"api"`` or ``"web"``), ``data_removed``, ``deadline`` (when the service
    will cancel it, if it has one), ``deployment`` (the deployment that ran it) and
    ``webhook`` (the URL its create gave).
    A field the service did not send, or sent malformed, is ``None`` (or empty).
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
    input: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    logs: str | None = field(default=None, repr=False, compare=False)
    metrics: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    created_at: datetime | None = field(default=None, repr=False, compare=False)
    started_at: datetime | None = field(default=None, repr=False, compare=False)
    completed_at: datetime | None = field(default=None, repr=False, compare=False)
    source: str | None = field(default=None, repr=False, compare=False)
    data_removed: bool = field(default=False, repr=False, compare=False)
    deadline: datetime | None = field(default=None, repr=False, compare=False)
    deployment: str | None = field(default=None, repr=False, compare=False)
    #: The webhook URL its create gave, when the service shows it (it may carry a
    #: secret in its query: never in a repr).
    webhook: str | None = field(default=None, repr=False, compare=False)
    #: How :attr:`files` download: through the client that read this state.
    _downloads: Downloads | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the status is terminal (the prediction will not change again)."""
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> PredictionProgress | None:
        """The latest tqdm-style progress line of the logs, if there is one."""
        return parse_progress(self.logs)

    @property
    def predict_time(self) -> float | None:
        """Seconds the model ran (``metrics.predict_time``), once reported."""
        return _seconds(self.metrics.get("predict_time"))

    @property
    def total_time(self) -> float | None:
        """Seconds from create to completion (``metrics.total_time``), once reported."""
        return _seconds(self.metrics.get("total_time"))

    @property
    def files(self) -> list[FileOutput]:
        """Every file in the output (``https:`` URLs and ``data:`` URIs, however deep in
        lists and objects), in order, as :class:`FileOutput` values to read, stream or
        save. ``output`` itself stays the JSON the service returned.

        From a client, they download through its connection pool (while it is open),
        within its ``timeout``, ``read()`` within its ``max_response_bytes``. The API
        token goes only to the API's own origin (where the Files API serves files);
        Replicate's delivery hosts (``replicate.delivery``) get no credentials."""
        return [FileOutput._via(url, self._downloads) for url in file_urls(self.output)]

    @property
    def text(self) -> str | None:
        """The text output (chunks joined), or ``None`` when the output is not text."""
        output = self.output
        if isinstance(output, str):
            return output
        if isinstance(output, StreamedChunks):
            return "".join(output)
        if isinstance(output, list) and all(isinstance(chunk, str) for chunk in output):
            return "".join(output)
        return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
