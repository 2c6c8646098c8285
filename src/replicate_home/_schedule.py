"""When to poll and when to retry: pure functions of counts, no clocks, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = [
    "AdaptiveSchedule",
    "FixedSchedule",
    "PollSchedule",
    "RetryPolicy",
    "check_seconds",
    "parse_retry_after",
]


class PollSchedule(Protocol):
    """How long to wait before each poll."""

    def delay(self, poll: int) -> float:
        """Seconds to wait before poll number ``poll`` (0 is the first poll after the create)."""
        ...


def check_seconds(value: object, name: str) -> float:
    """Return ``value`` if it is a positive, finite number of seconds, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class FixedSchedule:
    """The same wait before every poll (the original provider used 5 s)."""

    interval: float

    def __post_init__(self) -> None:
        check_seconds(self.interval, "poll_interval")

    def delay(self, poll: int) -> float:
        """Always ``interval``."""
        return self.interval


@dataclass(frozen=True)
class AdaptiveSchedule:
    """Start fast, then back off geometrically to a cap.

    Short predictions are noticed within a fraction of their duration; long ones cost a
    poll every ``maximum`` seconds. With the defaults the polls fall at about 0.1, 0.23,
    0.38, 0.58, 0.82, 1.1, 1.5, 2.0, 2.6, 3.3 s … after the create, then every 3 s.
    """

    initial: float = 0.1
    factor: float = 1.25
    maximum: float = 3.0

    def __post_init__(self) -> None:
        check_seconds(self.initial, "initial")
        check_seconds(self.maximum, "maximum")
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise ValueError(f"factor must be a finite number >= 1, not {self.factor!r}")
        if self.maximum < self.initial:
            raise ValueError("maximum must not be below initial")

    def delay(self, poll: int) -> float:
        """``initial * factor**poll``, capped at ``maximum``."""
        return _grow(self.initial, self.factor, max(poll, 0), self.maximum)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient failures (429, 502, 503, 504, connection errors).

    ``max_retries`` consecutive failures are retried; one more raises the last error.
    A create that could not connect gets only ``max_connect_retries``: a wrong URL or a
    stopped service should be reported in seconds, not after the whole backoff.
    A ``Retry-After`` from the service replaces the computed backoff.
    """

    max_retries: int = 8
    max_connect_retries: int = 3
    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 8.0

    def __post_init__(self) -> None:
        for name in ("max_retries", "max_connect_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0")
        check_seconds(self.initial, "initial")
        check_seconds(self.maximum, "maximum")
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise ValueError(f"factor must be a finite number >= 1, not {self.factor!r}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return retry_after
        return _grow(self.initial, self.factor, max(attempt, 0), self.maximum)


def _grow(initial: float, factor: float, steps: int, maximum: float) -> float:
    """``initial * factor**steps`` capped at ``maximum``, without overflowing."""
    try:
        return min(maximum, initial * factor**steps)
    except OverflowError:
        return maximum


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay-seconds or an HTTP date. Bad values give ``None``."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
