"""A client's request budget: token buckets shared by every call on the client, whose
rate adapts to what the service actually allows.

Replicate publishes its limits per minute (600 creates, 3000 other requests) and enforces
them with token buckets; its 429 says so ("… 6 requests per minute with a burst of 1 …
resets in ~5s", with ``Retry-After`` and a ``retry_after`` field: the seconds until one
token is back, rounded up). Ours refill at the same rate, and the rules below follow from
that model of the service:

- **Headroom as time.** Our bucket holds one second's worth less :data:`HEADROOM`
  seconds' worth (at least one request less). Requests leave our bucket evenly but reach
  the service's with network and scheduling jitter; a request that arrives early finds
  the service's bucket short. With ``HEADROOM`` seconds of tokens to spare, jitter up to
  that much is absorbed at every rate (one request of headroom was 100 ms at 600 a minute
  but 20 ms at 3000 a minute, which a loaded machine exceeds).
- **Start with one token.** A process can't know what others on its token spent lately;
  a burst is earned by staying below the rate while we watch, not assumed at start
  (four processes each sending a full burst at once drew dozens of 429s).
- **Multiplicative decrease.** A 429 multiplies the rate by :data:`DECREASE` (once per
  episode: the 429s of requests already sent when the rate was lowered say nothing about
  the new rate), or lowers it to what got through over the last :data:`WINDOW` seconds
  if that is lower (never below :data:`MAX_CUT` of it: a client that was idle sent less
  than it could have; and only once the bucket has been in use for a whole window).
- **Additive increase.** While requests succeed the rate climbs by :data:`CLIMB` of the
  ceiling per second (spread over the successes), but by at most :data:`MAX_STEP` of
  itself per success. Additive increase with multiplicative decrease is the rule under
  which processes that share one limit and see only their own answers converge to equal
  shares (Chiu and Jain, 1989): the climb is the same for all, the cut is larger for the
  larger share. Equal shares matter for throughput: an unequal share leaves one process
  finishing its cells alone, long after the others, at a rate it climbs back slowly.
  (The first rule, +0.5 % per success, was multiplicative: a larger share climbed
  faster, so shares drifted apart; four processes used 79 % of the limit.) At low rates,
  where the additive step would be a large fraction of the rate, ``MAX_STEP`` keeps the
  climb at about one 429 per 8 or 9 successes.
- **Probing past the last limit.** Once the rate is back above the rate its last 429
  came at, and still no 429, the limit has moved (another process on the token stopped,
  the account's credit was topped up): the rate then climbs by ``MAX_STEP`` of itself
  per success, so a process left alone takes the freed share in seconds, not minutes.
- **Retry-After.** A 429 pauses the whole bucket (every call on the client) for
  ``Retry-After`` (1 s when none; at most :data:`MAX_PAUSE`). Under the token-bucket
  model a ``Retry-After`` of n ≥ 2 also bounds the service's rate: less than one token
  in n - 1 seconds; so the rate drops to that at once, and a limit a hundred times lower
  than the published one is found in one step, not twenty. The inference stops at
  :data:`LOWEST_LIMIT` (the lowest limit Replicate documents): a longer ``Retry-After``
  (an outage, a window) pauses the bucket but does not pin it to one request a minute.

The service's answers are the only signal, so processes sharing a token converge without
talking to each other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["CLIMB", "DECREASE", "HEADROOM", "MAX_PAUSE", "MAX_STEP", "RateBudget", "TokenBucket"]

#: The longest pause after a 429, in seconds: no answer can stop a client for good.
MAX_PAUSE = 60.0

#: A 429 multiplies the allowed rate by this (once per episode: the 429s of requests
#: already sent when the rate was lowered say nothing about the new rate).
DECREASE = 0.85

#: While requests succeed, the allowed rate climbs by this fraction of the ceiling a
#: second (0.05 more requests a second, each second, at 600 a minute): the same for every
#: process, so shares of one limit converge.
CLIMB = 0.005

#: A success raises the allowed rate by this fraction of itself at most: at low rates
#: about 8 successes climb back from one decrease (one 429 in 8 or 9 requests, probing).
MAX_STEP = 0.02

#: Seconds of jitter the bucket absorbs: it holds this many seconds' worth less than the
#: service's (at least one request less).
HEADROOM = 0.2

#: The lowest limit Replicate documents (6 creates a minute, burst 1, for accounts with
#: less than $5 of credit), in requests a minute: ``Retry-After`` lowers the rate to no
#: less than this by itself.
LOWEST_LIMIT = 6.0

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
    """At most ``rate_per_minute`` requests a minute, at most one second's worth (less
    :data:`HEADROOM` seconds' worth) at once; the rate it allows adapts between a floor and
    that ceiling.

    Below two requests a second there is no whole request to spare, so it paces at 90% of
    the rate instead.
    """

    def __init__(self, rate_per_minute: float, clock: Callable[[], float] | None = None) -> None:
        self.ceiling = _check_rate(rate_per_minute) / 60.0  # requests a second
        self._allowed = self.ceiling
        self._floor = min(self.ceiling, FLOOR_PER_MINUTE / 60.0)
        self._clock = clock or anyio.current_time
        self._tokens: float | None = None  # one, from the first use (needs a running loop)
        self._updated = 0.0
        self._started = math.inf  # the first use
        self._paused_until = 0.0
        self._lowered_at = -math.inf
        self._successes: deque[float] = deque()  # when, over the last WINDOW seconds
        self._lock: anyio.Lock | None = None
        self._limit_seen = self.ceiling  # the rate the last decrease was made from
        self.throttles = 0  # 429s seen
        self.decreases = 0  # of which lowered the rate

    @property
    def allowed_per_minute(self) -> float:
        """The rate this bucket currently allows, in requests a minute."""
        return self._allowed * 60.0

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (one second's worth, less :data:`HEADROOM`
        seconds' worth and at least one less; at least one)."""
        return max(1.0, self._allowed - max(1.0, self._allowed * HEADROOM))

    @property
    def rate(self) -> float:
        """Tokens a second the bucket refills with."""
        return self._allowed if self._allowed >= 2.0 else 0.9 * self._allowed

    def _refill(self, now: float) -> float:
        if self._tokens is None:
            self._tokens, self._updated, self._started = 1.0, now, now
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
        at most that at once (but not below :data:`LOWEST_LIMIT` for that reason alone).
        """
        self.throttles += 1
        if sent_at is None or sent_at > self._lowered_at:
            now = self._clock()
            self._lowered_at = now
            self.decreases += 1
            self._limit_seen = self._allowed
            lowered = self._allowed * DECREASE
            measured = self._measured(now)
            if measured is not None:
                lowered = max(self._allowed * MAX_CUT, min(lowered, measured))
            if retry_after is not None and retry_after >= 2.0:
                inferred = max(1.0 / (retry_after - 1.0), LOWEST_LIMIT / 60.0)
                lowered = min(lowered, inferred)
            self._allowed = max(self._floor, lowered)
            if self._tokens is not None:
                self._tokens = min(self._tokens, self.capacity)
        # Retry-After is whole seconds, rounded up: the service's wait lies in (n - 1, n].
        # The bucket pauses for the part certainly needed, n - 1, and restarts empty, so
        # its first request leaves one token (at the lowered rate) later. For n >= 2 the
        # rate is at most one a second by then, so that is n seconds or more; for n = 1
        # ("less than a second": a tenth of one at 600 a minute), a full second's pause
        # cost every process that drew a 429 a second of its share. The request that drew
        # the 429 waits the whole Retry-After before it is sent again (the engine's retry).
        wait = 1.0 if retry_after is None else retry_after
        self.pause(max(0.0, math.ceil(wait) - 1.0))

    def _measured(self, now: float) -> float | None:
        """Successes a second over the last :data:`WINDOW` seconds (over at least one
        second), or ``None`` without any, or before the bucket has been in use for a whole
        window: a process that has just started has not shown its rate yet, and cutting
        it to what it got through so far starved it (one of four processes sharing a
        limit ran at a tenth of it, and finished alone a minute after the others)."""
        if now - self._started < WINDOW:
            return None
        successes = self._successes
        while successes and successes[0] < now - WINDOW:
            successes.popleft()
        if not successes:
            return None
        return len(successes) / max(1.0, now - successes[0])

    def succeeded(self) -> None:
        """A request from this bucket was answered without a 429: climb a little
        (:data:`CLIMB` of the ceiling a second, over the successes of that second; at most
        :data:`MAX_STEP` of the rate)."""
        now = self._clock()
        successes = self._successes
        successes.append(now)
        while successes[0] < now - WINDOW:  # bounded: the rate times the window
            successes.popleft()
        if self._allowed < self.ceiling:
            if self._tokens is not None:  # count the refill so far at the old rate
                self._refill(now)
            if self._allowed >= self._limit_seen:  # past the last 429's rate: probe
                step = MAX_STEP * self._allowed
            else:
                step = min(CLIMB * self.ceiling / self._allowed, MAX_STEP * self._allowed)
            self._allowed = min(self.ceiling, self._allowed + step)

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
