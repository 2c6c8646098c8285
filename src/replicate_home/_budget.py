"""A client's request budget: token buckets shared by every call on the client.

Replicate publishes its limits per minute (600 creates, 3000 other requests) and enforces
them with buckets that hold one second's worth. Ours refill at the same rate but hold one
request less: a bucket identical to the service's would be exact only without network
jitter (a request that arrives a few milliseconds early finds the service's bucket a
fraction short). With one request of headroom, the service's bucket always holds at least
one more token than this client has spent, so a fan-out of a thousand predictions spreads
itself out instead of drawing 429s. A 429 pauses the whole bucket (every call on the
client), not just the call that drew it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

__all__ = ["RateBudget", "TokenBucket"]


class TokenBucket:
    """``rate_per_minute`` requests a minute, at most one second's worth (less one) at once.

    Below two requests a second there is no whole request to spare, so it paces at 90% of
    the rate instead.
    """

    def __init__(self, rate_per_minute: float, clock: Callable[[], float] | None = None) -> None:
        if isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, (int, float)):
            raise ValueError("a rate must be a number of requests per minute")
        if not (rate_per_minute > 0 and math.isfinite(rate_per_minute)):
            raise ValueError(f"a rate must be positive and finite, not {rate_per_minute!r}")
        per_second = rate_per_minute / 60.0
        self.capacity = max(1.0, per_second - 1.0)
        self.rate = per_second if per_second >= 2.0 else 0.9 * per_second  # tokens a second
        self._clock = clock or anyio.current_time
        self._tokens: float | None = None  # full, from the first use (needs a running loop)
        self._updated = 0.0
        self._paused_until = 0.0
        self._lock: anyio.Lock | None = None

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
        """Send nothing from this bucket for ``seconds`` (after a 429), and start empty."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))
        self._tokens, self._updated = 0.0, self._paused_until

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
