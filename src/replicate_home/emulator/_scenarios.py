"""What a script makes predictions do: :class:`Scenario` (timing, outcome, output) and
:class:`Fault` (a scripted bad answer), both checked when built. Pure data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Fault", "FileOutput", "Outcome", "Scenario", "check_number"]

Outcome = Literal["succeeded", "failed", "canceled"]
FileOutput = Literal["url", "data"]

_OUTCOMES: tuple[Outcome, ...] = ("succeeded", "failed", "canceled")
_FILE_OUTPUTS: tuple[FileOutput, ...] = ("url", "data")


# --------------------------------------------------------------------------- validation


def check_number(owner: str, name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number (not a bool), else ``ValueError``
    naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    return float(value)


def _header_value(owner: str, name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{owner}.{name} must not contain line breaks, got {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{owner}.{name} must be encodable as Latin-1, got {value!r}") from None


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Fault:
    """One scripted bad answer instead of the normal response."""

    status: int = 503
    """HTTP status code of the answer (200..599; 1xx cannot be a final answer)."""
    body: bytes | str = b""
    """Response body; a ``str`` is sent UTF-8 encoded."""
    content_type: str | None = "text/plain; charset=utf-8"
    """``Content-Type`` header sent verbatim; ``None`` sends no ``Content-Type`` at all."""
    retry_after: float | str | None = None
    """``Retry-After`` header: a number is sent as ``str(number)``, a ``str`` verbatim."""

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"Fault.status must be an int, got {self.status!r}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be between 100 and 599, got {self.status}")
        if self.status < 200:
            raise ValueError(
                f"Fault.status {self.status} is informational (1xx), which HTTP/1.1 cannot "
                "send as a final answer; use a status between 200 and 599"
            )
        if not isinstance(self.body, (bytes, str)):
            raise ValueError(f"Fault.body must be bytes or str, got {type(self.body).__name__}")
        if self.body and self.status in (204, 304):
            raise ValueError(f"Fault.body must be empty for status {self.status}")
        if self.content_type is not None:
            if not isinstance(self.content_type, str):
                raise ValueError(
                    f"Fault.content_type must be a str or None, got {self.content_type!r}"
                )
            _header_value("Fault", "content_type", self.content_type)
        if isinstance(self.retry_after, str):
            _header_value("Fault", "retry_after", self.retry_after)
        elif (
            self.retry_after is not None
            and check_number("Fault", "retry_after", self.retry_after) < 0
        ):
            raise ValueError(f"Fault.retry_after must not be negative, got {self.retry_after}")

    @property
    def body_bytes(self) -> bytes:
        """The body as sent on the wire."""
        return self.body.encode() if isinstance(self.body, str) else self.body

    @property
    def headers(self) -> dict[str, str]:
        """The headers this fault answers with (besides ``Content-Length``)."""
        headers: dict[str, str] = {}
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers


@dataclass(frozen=True)
class Scenario:
    """How predictions with a given prompt behave."""

    duration: float = 1.0
    """Seconds from create to terminal status."""
    start_delay: float | None = None
    """Seconds in ``starting`` before ``processing``; ``None`` means 10% of ``duration``."""
    outcome: Outcome = "succeeded"
    """The terminal status."""
    error: str = "Emulated failure"
    """The ``error`` field when ``outcome == "failed"``."""
    output: str | Sequence[str] | None = None
    """Overrides the generated output: a ``str`` is a single-string output (growing as a
    prefix while processing, for text models), a sequence a list of chunks. For image
    models it replaces the list of image URLs."""
    images: int = 1
    """Number of image URLs an image model produces."""
    content_type: str | None = "application/json"
    """``Content-Type`` of normal poll answers (``None``: no header), to act out servers
    that send JSON under a wrong content type."""
    submit_faults: Sequence[Fault] = ()
    """The first ``len(submit_faults)`` creates with this prompt get these answers in turn
    and create nothing."""
    poll_faults: Sequence[Fault | None] = ()
    """The k-th poll (0-based) of a prediction gets ``poll_faults[k]`` unless it is ``None``;
    polls beyond the sequence get normal answers."""
    file_output: FileOutput | None = None
    """How image outputs are given: ``"url"``, URLs of PNG files the emulator serves, or
    ``"data"``, ``data:image/png;base64,...`` URIs carrying the files themselves;
    ``None``: as the emulator's ``file_output`` says for ``/v1`` predictions, URLs on the
    homepage routes."""
    quirks: bool = False
    """Answer ``/v1`` prediction objects the way the real API sometimes does: ``logs: null``
    before any log, extra unknown fields, richer ``metrics`` objects and a duplicated key in
    the JSON text (with the same value)."""

    def __post_init__(self) -> None:
        duration = check_number("Scenario", "duration", self.duration)
        if duration < 0:
            raise ValueError(f"Scenario.duration must not be negative, got {self.duration}")
        if self.start_delay is not None:
            start_delay = check_number("Scenario", "start_delay", self.start_delay)
            if start_delay < 0:
                raise ValueError(
                    f"Scenario.start_delay must not be negative, got {self.start_delay}"
                )
            if start_delay > duration:
                raise ValueError(
                    f"Scenario.start_delay ({self.start_delay}) must not exceed "
                    f"Scenario.duration ({self.duration})"
                )
        if self.outcome not in _OUTCOMES:
            raise ValueError(
                f"Scenario.outcome must be one of {', '.join(_OUTCOMES)}, got {self.outcome!r}"
            )
        if not isinstance(self.error, str):
            raise ValueError(f"Scenario.error must be a str, got {self.error!r}")
        if self.output is not None and not isinstance(self.output, str):
            chunks = tuple(self.output)
            for chunk in chunks:
                if not isinstance(chunk, str):
                    raise ValueError(f"Scenario.output items must be str, got {chunk!r}")
            object.__setattr__(self, "output", chunks)
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 0:
            raise ValueError(f"Scenario.images must be a non-negative int, got {self.images!r}")
        if self.content_type is not None:
            if not isinstance(self.content_type, str):
                raise ValueError(
                    f"Scenario.content_type must be a str or None, got {self.content_type!r}"
                )
            _header_value("Scenario", "content_type", self.content_type)
        submit_faults = tuple(self.submit_faults)
        for fault in submit_faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"Scenario.submit_faults items must be Fault, got {fault!r}")
        object.__setattr__(self, "submit_faults", submit_faults)
        poll_faults = tuple(self.poll_faults)
        for maybe_fault in poll_faults:
            if maybe_fault is not None and not isinstance(maybe_fault, Fault):
                raise ValueError(
                    f"Scenario.poll_faults items must be Fault or None, got {maybe_fault!r}"
                )
        object.__setattr__(self, "poll_faults", poll_faults)
        if self.file_output is not None and self.file_output not in _FILE_OUTPUTS:
            raise ValueError(
                f"Scenario.file_output must be one of {', '.join(_FILE_OUTPUTS)}, "
                f"got {self.file_output!r}"
            )
        if not isinstance(self.quirks, bool):
            raise ValueError(f"Scenario.quirks must be a bool, got {self.quirks!r}")

    @property
    def effective_start_delay(self) -> float:
        """``start_delay``, or 10% of ``duration`` when it is ``None``."""
        return 0.1 * self.duration if self.start_delay is None else float(self.start_delay)

    def poll_fault(self, poll_number: int) -> Fault | None:
        """The scripted fault for the ``poll_number``-th poll (0-based), if any."""
        if 0 <= poll_number < len(self.poll_faults):
            return self.poll_faults[poll_number]
        return None
