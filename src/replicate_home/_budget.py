"""A client's request budget: token buckets shared by every call on the client, whose
rate adapts to what the service actually allows.

Replicate publishes its limits per minute (600 creates, 3000 other requests) and enforces
them with buckets that hold one second's worth. Ours refill at the same rate but hold one
request less: a bucket identical to the service's would be exact only without network
jitter (a request that arrives a few milliseconds early finds the service's bucket a
fraction short). With one request of headroom, the service's bucket always holds at least
one more token than this client has spent, so a fan-out of a thousand predictions spreads
itself out instead of drawing 429s. A 429 pauses the whole bucket (every call on the
client), not just the call that drew it.

The published limits are a ceiling, not a promise: accounts with little credit are limited
far lower, and several processes on one token share one limit. So the rate adapts
(additive-increase/multiplicative-decrease in spirit): a 429 lowers it at once, and every
request that succeeds raises it a little, back up to the ceiling. The service's answers
are the only signal, so processes sharing a token converge without talking to each other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["DECREASE", "INCREASE", "MAX_PAUSE", "RateBudget", "TokenBucket"]

#: The longest pause after a 429, in seconds: no answer can stop a client for good.
MAX_PAUSE = 60.0

#: A 429 multiplies the allowed rate by this (once per episode: the 429s of requests
#: already sent when the rate was lowered say nothing about the new rate).
DECREASE = 0.8

#: Every request that succeeds multiplies the allowed rate by ``1 + INCREASE``, up to the
#: ceiling: about 45 successes climb back from one decrease, so a client that keeps
#: probing its limit draws roughly one 429 in 45 requests of that bucket, at any rate.
INCREASE = 0.005

#: One 429 lowers the rate by half at most, even when the rate measured lately is lower:
#: a client that was idle sent less than it could have.
MAX_CUT = 0.5

#: How far back successes count toward the rate measured when a 429 arrives, in seconds.
WINDOW = 10.0

#: The lowest rate a bucket adapts down to, in requests a minute.
FLOOR_PER_MINUTE = 1.0


def _check_rate(rate_per_minute: object) -> float:
    if isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, (int, float)):
        raise ValueError("a rate must be a number of requests per minute")
    if not (rate_per_minute > 0 and math.isfinite(rate_per_minute)):
        raise ValueError(f"a rate must be positive and finite, not {rate_per_minute!r}")
    return float(rate_per_minute)


class TokenBucket:
    """At most ``rate_per_minute`` requests a minute, at most one second's worth (less one)
    at once; the rate it allows adapts between a floor and that ceiling.

    Below two requests a second there is no whole request to spare, so it paces at 90% of
    the rate instead.
    """

    def __init__(self, rate_per_minute: float, clock: Callable[[], float] | None = None) -> None:
        self.ceiling = _check_rate(rate_per_minute) / 60.0  # requests a second
        self._allowed = self.ceiling
        self._floor = min(self.ceiling, FLOOR_PER_MINUTE / 60.0)
        self._clock = clock or anyio.current_time
        self._tokens: float | None = None  # full, from the first use (needs a running loop)
        self._updated = 0.0
        self._paused_until = 0.0
        self._lowered_at = -math.inf
        self._successes: deque[float] = deque()  # when, over the last WINDOW seconds
        self._lock: anyio.Lock | None = None
        self.throttles = 0  # 429s seen
        self.decreases = 0  # of which lowered the rate

    @property
    def allowed_per_minute(self) -> float:
        """The rate this bucket currently allows, in requests a minute."""
        return self._allowed * 60.0

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (one second's worth, less one; at least one)."""
        return max(1.0, self._allowed - 1.0)

    @property
    def rate(self) -> float:
        """Tokens a second the bucket refills with."""
        return self._allowed if self._allowed >= 2.0 else 0.9 * self._allowed

    def _refill(self, now: float) -> float:
        if self._tokens is None:
            self._tokens, self._updated = self.capacity, now
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        return self._tokens

    def delay(self) -> float:
        """Seconds until a token is free (0 if one is free now); takes it if so."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        tokens = self._refill(now)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        return (1.0 - tokens) / self.rate

    def pause(self, seconds: float) -> None:
        """Send nothing from this bucket for ``seconds`` (after a 429; at most
        :data:`MAX_PAUSE`), and start empty."""
        now = self._clock()
        seconds = min(max(0.0, seconds), MAX_PAUSE) if seconds == seconds else 0.0
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens, self._updated = 0.0, self._paused_until

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """The service answered 429 to a request sent at ``sent_at``: lower the rate
        (unless the request left before the last decrease) and pause for ``retry_after``
        (1 s when the service gave none).

        The new rate is :data:`DECREASE` times the old one, or the rate that got through
        over the last :data:`WINDOW` seconds if that is lower (but never less than
        :data:`MAX_CUT` of the old one). A ``Retry-After`` of n ≥ 2 seconds also says the
        service's bucket gains less than one token in n - 1 seconds, so the rate drops to
        at most that at once: a limit a hundred times lower than the published one is
        found in one step, not twenty.
        """
        self.throttles += 1
        if sent_at is None or sent_at > self._lowered_at:
            now = self._clock()
            self._lowered_at = now
            self.decreases += 1
            lowered = self._allowed * DECREASE
            measured = self._measured(now)
            if measured is not None:
                lowered = max(self._allowed * MAX_CUT, min(lowered, measured))
            if retry_after is not None and retry_after >= 2.0:
                lowered = min(lowered, 1.0 / (retry_after - 1.0))
            self._allowed = max(self._floor, lowered)
            if self._tokens is not None:
                self._tokens = min(self._tokens, self.capacity)
        # Empty when the pause ends, so the pause ends one token early: the first request
        # leaves when the service said it may, not a refill later.
        wait = 1.0 if retry_after is None else retry_after
        self.pause(max(0.0, wait - 1.0 / self.rate))

    def _measured(self, now: float) -> float | None:
        """Successes a second over the last :data:`WINDOW` seconds (over at least one
        second), or ``None`` without any."""
        successes = self._successes
        while successes and successes[0] < now - WINDOW:
            successes.popleft()
        if not successes:
            return None
        return len(successes) / max(1.0, now - successes[0])

    def succeeded(self) -> None:
        """A request from this bucket was answered without a 429: climb a little."""
        now = self._clock()
        successes = self._successes
        successes.append(now)
        while successes[0] < now - WINDOW:  # bounded: the rate times the window
            successes.popleft()
        if self._allowed < self.ceiling:
            if self._tokens is not None:  # count the refill so far at the old rate
                self._refill(now)
            self._allowed = min(self.ceiling, self._allowed * (1.0 + INCREASE))

    async def acquire(self) -> None:
        """Wait for a token. Waiters are served in turn (first come, first served)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        # Nobody waiting (a waiter holds the lock, or queues for it) and a token free now:
        # take it without queueing, which costs the event loop a pass per request.
        if not self._lock.locked() and self.delay() == 0:
            return
        async with self._lock:
            # Sleeping for the computed refill time, not polling for a condition.
            while (wait := self.delay()) > 0:  # noqa: ASYNC110
                await anyio.sleep(wait)


class RateBudget:
    """The two buckets of one client: creates, and every other request."""

    def __init__(self, creates_per_minute: float, requests_per_minute: float) -> None:
        self.creates = TokenBucket(creates_per_minute)
        self.requests = TokenBucket(requests_per_minute)

    def bucket(self, creating: bool) -> TokenBucket:
        return self.creates if creating else self.requests
