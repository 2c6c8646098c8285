"""A client's request budget: token buckets shared by every call on the client, whose
rate adapts to what the service actually allows.

Replicate publishes its limits per minute (600 creates, 3000 other requests) and enforces
them with token buckets; its 429 says so ("… 6 requests per minute with a burst of 1 …
resets in ~5s", with ``Retry-After``: the seconds until one token is back, rounded up).
Ours refill at the same rate, and the rules below follow from that model of the service:

- **Headroom as time.** Our bucket holds one second's worth less :data:`HEADROOM`
  seconds' worth (at least one request less). Requests leave our bucket evenly but reach
  the service's with network and scheduling jitter; a request that arrives early finds
  the service's bucket short. With ``HEADROOM`` seconds of tokens to spare, jitter up to
  that much is absorbed at every rate.
- **Start with one token.** A process can't know what others on its token spent lately;
  a burst is earned by staying below the rate while we watch, not assumed at start.
- **Retry-After is a floor.** A 429 pauses the whole bucket (every call on the client):
  nothing leaves it until ``Retry-After`` has passed (1 s when none; at most
  :data:`MAX_PAUSE`, and never past the deadline of the call that drew it: the engine's
  part). A finer wait the service gives (the 429 body's ``retry_after``,
  ``RateLimit-Reset``) is used instead when it lies within the whole seconds the header
  rounded up to (see :func:`throttle_wait`). The bucket then restarts with one token: its
  first request leaves when the wait is over, the next one a token later.
- **The first request after a pause is a probe.** It leaves when the pause ends whatever
  the rate, so a 429 to it says the service is still full, not that the rate is too
  high: it pauses the bucket again (the floor holds) but lowers nothing. Cutting on it
  starved a process whose every request was such a probe while another process held
  the limit (simulated: 0.29 creates a second where its fair share was 2.5).
- **Multiplicative decrease.** A 429 multiplies the rate by :data:`DECREASE` (the
  bucket's first 429 by :data:`START_DECREASE`: processes that started together find
  their shares in a few steps), once per episode (the 429s of requests already sent
  when the rate was lowered say nothing about the new rate), or lowers it to what got
  through over the last :data:`WINDOW` seconds if that is lower (never below
  :data:`MAX_CUT` of it: a client that was idle sent less than it could have; and only
  once the bucket has been in use for :data:`MEASURE_AFTER` seconds).
  A ``Retry-After`` of n ≥ 2 also bounds the service's rate: less than one token in
  n - 1 seconds (in ``w`` seconds, for a finer wait ``w``); so the rate drops to that at
  once, and a limit a hundred times lower than the published one is found in one step.
  The inference stops at :data:`LOWEST_LIMIT` (the lowest limit Replicate documents): a
  longer wait (an outage, a window) pauses the bucket but does not pin its rate.
- **The climb is with time, not successes.** After a decrease the rate climbs by
  :data:`CLIMB` of the ceiling a second (at most :data:`MAX_STEP` of itself per request
  it allows: at low rates, a cut takes minutes to climb back), the same for every
  process: additive increase with multiplicative decrease is the rule under which
  processes that share one limit and see only their own answers converge to equal shares
  (Chiu and Jain, 1989). It climbs whether or not requests are answered: a climb per
  success stayed down for minutes after a storm of 429s, successes being rare at the
  rates a storm leaves.
- **A calm climb speeds up.** After :data:`CALM` requests' worth of time with no 429
  (five seconds at 600 a minute; counted at the lowest rate a long ``Retry-After``
  allowed, so at 6 a minute it is minutes) the climb doubles every :data:`DOUBLING`
  requests' worth: a process left alone (another on the token stopped, the credit was
  topped up) takes the freed share within seconds, while at a low limit the probing
  stays slow (under one 429 a minute at 6 a minute).
- **Bounded by what the last 429s showed.** The limit seen is the highest rate that got
  through when a decrease was made (the rate allowed, or what was measured when that is
  lower: polls allowed 50 a second and sent at 10 showed 10), within :data:`MEMORY`
  seconds of the last decrease (the later 429s of a storm, at rates it had already
  lowered, do not lower it). Below :data:`COLLAPSE` of it the rate also climbs at
  :data:`RECOVERY` times the square of the gap over the ceiling a second: a collapse is
  undone in seconds, while a single decrease is climbed back additively (a faster climb
  there brought the next 429 sooner: four simulated processes drew 7 % more).
  Past it the rate climbs only while requests succeed and wait for tokens (an idle
  bucket, or one whose demand is below its rate, does not climb past what it has seen),
  to at most :data:`DEMAND` times the rate that got through lately (polls sent at 10 a
  second are not raised back to bursts of 40), and, once calm, by at least
  :data:`MAX_STEP` of itself per request: the limit has moved.

The service's answers are the only signal, so processes sharing a token converge without
talking to each other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import anyio

__all__ = [
    "CALM",
    "CLIMB",
    "COLLAPSE",
    "DECREASE",
    "DEMAND",
    "DOUBLING",
    "HEADROOM",
    "MAX_PAUSE",
    "MAX_STEP",
    "MEASURE_AFTER",
    "MEMORY",
    "RECOVERY",
    "START_DECREASE",
    "RateBudget",
    "TokenBucket",
]

#: The longest pause after a 429, in seconds: no answer can stop a client for good.
MAX_PAUSE = 60.0

#: A 429 multiplies the allowed rate by this (once per episode).
DECREASE = 0.75

#: After a decrease, the allowed rate climbs by this fraction of the ceiling a second
#: (0.05 more requests a second, each second, at 600 a minute), at most: the same for
#: every process, so shares of one limit converge.
CLIMB = 0.005

#: ... and by at most this fraction of itself per request it allows (a second's climb at
#: r requests a second is at most ``MAX_STEP * r * r``): at low rates, where the additive
#: climb would be a large fraction of the rate, a cut takes minutes to climb back.
MAX_STEP = 0.02

#: Requests' worth of time (the rate's tokens) with no 429 after which the climb speeds
#: up: two seconds at 600 a minute, three minutes at 6 a minute.
CALM = 50.0

#: Past :data:`CALM`, the climb doubles every this many requests' worth of time.
DOUBLING = 20.0

#: Below the limit the last 429s showed, the rate climbs at least this times the square
#: of the gap over the ceiling a second, below :data:`COLLAPSE` of it: a single decrease
#: is not hurried, a storm's collapse is undone in seconds.
RECOVERY = 1.0

#: Past the limit the last 429s showed, the rate climbs to at most this many times the
#: rate that got through over the last :data:`WINDOW` seconds.
DEMAND = 2.0

#: How long the rate a decrease was made from counts toward the limit the last 429s
#: showed, in seconds.
MEMORY = 6.0

#: The longest step of the climb's integration, in seconds.
_STEP = 0.1

#: Seconds of jitter the bucket absorbs: it holds this many seconds' worth less than the
#: service's (at least one request less).
HEADROOM = 0.2

#: The lowest limit Replicate documents (6 creates a minute, burst 1, for accounts with
#: less than $5 of credit), in requests a minute: a ``Retry-After`` lowers the rate to no
#: less than this by itself.
LOWEST_LIMIT = 6.0

#: One 429 lowers the rate to a quarter of it at most, even when the rate measured lately
#: is lower: a client that was idle sent less than it could have. (Lower than half: a
#: bucket whose demand is far below its rate, polls, is cut near what it sends, so a pause
#: is not followed by bursts at a rate it never used.)
MAX_CUT = 0.25

#: How far back successes count toward the rate measured when a 429 arrives, in seconds.
WINDOW = 10.0

#: A bucket in use for less than this many seconds is not cut to its measured rate: it
#: has not shown one yet.
MEASURE_AFTER = 1.0

#: A bucket's first 429 multiplies the rate by this instead of :data:`DECREASE`:
#: processes that started together at the ceiling find their shares in a few steps.
START_DECREASE = 0.5

#: The fast climb of :data:`RECOVERY` applies below this fraction of the limit the last
#: 429s showed (a collapse); above it, a single decrease is climbed back additively.
COLLAPSE = 0.7

#: The lowest rate a bucket adapts down to, in requests a minute.
FLOOR_PER_MINUTE = 1.0


def _check_rate(rate_per_minute: object) -> float:
    if isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, (int, float)):
        raise ValueError("a rate must be a number of requests per minute")
    if not (rate_per_minute > 0 and math.isfinite(rate_per_minute)):
        raise ValueError(f"a rate must be positive and finite, not {rate_per_minute!r}")
    return float(rate_per_minute)


def _finite(value: object) -> float | None:
    """``value`` as a finite, non-negative number of seconds, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def throttle_wait(
    retry_after: float | None,
    body_retry_after: object = None,
    remaining: str | None = None,
    reset: str | None = None,
) -> tuple[float | None, bool]:
    """How long a 429 asks the client to wait, from what it said, and whether that is a
    finer value than whole seconds rounded up.

    ``retry_after`` is the ``Retry-After`` header (seconds, parsed); ``body_retry_after``
    the answer's JSON ``retry_after`` field, if any; ``remaining`` and ``reset`` the
    ``RateLimit-Remaining`` / ``RateLimit-Reset`` headers (the reset counts when nothing
    remains, or when ``remaining`` is absent). A finer value is used when it is no longer
    than the header (the header rounds up: a finer wait within its last second refines
    it); a longer one is used too (the service asks for more). A shorter one than the
    header's last second is ignored: ``Retry-After`` is a floor.
    """
    finer = _finite(body_retry_after)
    if finer is None and reset is not None:
        left = _finite(remaining.strip()) if remaining is not None else 0.0
        if left is not None and left < 1:
            finer = _finite(reset.strip())
    if finer is None:
        return retry_after, False
    if retry_after is None or retry_after - 1.0 < finer <= retry_after or finer > retry_after:
        exact = retry_after is None or finer != retry_after or finer != math.floor(finer)
        return finer, exact
    return retry_after, False


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
        self._refilled = 0.0  # when the tokens were last counted
        self._started = math.inf  # the first use
        self._paused_until = 0.0
        #: The first request after a pause is a probe: it left at the pause's end
        #: whatever the rate, so its 429 says the service is still full, not that the
        #: rate is too high. Requests sent from ``_probe_from`` (when the first request
        #: after the pause took its token) to ``_probe_until`` (when the second did) are
        #: the probe.
        self._probe_from = math.inf
        self._probe_until = -math.inf
        self._lowered_at = -math.inf
        self._successes: deque[float] = deque()  # when, over the last WINDOW seconds
        self._lock: anyio.Lock | None = None
        #: The limit the last 429s showed, and the requests' worth of time since the
        #: last decrease (the calm the climb speeds up with).
        self._limit_seen = self.ceiling
        self._calm = 0.0
        self._last_success = -math.inf
        self._last_wait = -math.inf  # when a request last had to wait for a token
        #: The highest rate the last long Retry-After allowed the service (the ceiling
        #: until one is seen): the calm is counted in requests' worth at that rate.
        self._bound_seen = self.ceiling
        self._climbed = 0.0  # when the rate's climb was last counted
        self._seen: deque[tuple[float, float]] = deque()  # decreases: when, from what rate
        self.throttles = 0  # 429s seen
        self.decreases = 0  # of which lowered the rate

    @property
    def allowed_per_minute(self) -> float:
        """The rate this bucket currently allows, in requests a minute."""
        return self._allowed * 60.0

    @property
    def share(self) -> float:
        """The fraction of its ceiling the 429s have left this bucket: 1 until the first
        429, then the rate allowed over the ceiling."""
        return 1.0 if self.decreases == 0 else min(1.0, self._allowed / self.ceiling)

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (one second's worth, less :data:`HEADROOM`
        seconds' worth and at least one less; at least one)."""
        return max(1.0, self._allowed - max(1.0, self._allowed * HEADROOM))

    @property
    def rate(self) -> float:
        """Tokens a second the bucket refills with."""
        return self._allowed if self._allowed >= 2.0 else 0.9 * self._allowed

    def _advance(self, now: float) -> float:
        """Count the refill and the climb up to ``now``; the tokens held."""
        if self._tokens is None:
            self._tokens, self._refilled, self._started, self._climbed = 1.0, now, now, now
        if now > self._refilled:  # not during a pause (it refills from its end)
            self._tokens = min(self.capacity, self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now
        if now > self._climbed:
            self._climb_to(self._climbed, now)
            self._climbed = now
        return self._tokens

    def _climb_to(self, start: float, end: float) -> None:
        """The rate's climb from ``start`` to ``end``, with time: see the module's rules.
        Past the limit the last 429s showed it climbs only while requests succeed."""
        rate = self._allowed
        ceiling, limit = self.ceiling, self._limit_seen
        # Past the limit it climbs while requests succeed and wait for tokens: a bucket
        # whose demand is below its rate (polls) gains nothing from a higher rate but a
        # larger burst.
        probing_until = min(self._last_success, self._last_wait) + max(1.0, 2.0 / rate)
        # Past the limit, at most DEMAND times what got through lately: a bucket whose
        # demand is below its rate (polls) is not raised to bursts it never sends.
        measured = self._measured(end)
        cap = ceiling if measured is None else max(rate, limit, DEMAND * measured)
        moment = start
        while moment < end and rate < min(ceiling, cap):
            if rate >= limit and moment >= probing_until:
                break
            # At most a thousand steps however long the stretch (an idle hour).
            step = min(max(_STEP, (end - start) / 1000), end - moment)
            speed = min(CLIMB * ceiling, MAX_STEP * rate * rate)
            calm = self._calm > CALM
            if calm:
                speed *= 2.0 ** min(60.0, (self._calm - CALM) / DOUBLING)
            if rate < limit * COLLAPSE:  # the farther below, the faster: a collapse is undone
                gap = limit * COLLAPSE - rate
                speed = max(speed, RECOVERY * gap * gap / ceiling)
            elif rate >= limit and calm:  # past it, calm: the limit has moved, probe
                speed = max(speed, MAX_STEP * rate * rate)
            self._calm += min(ceiling, max(self._bound_seen, limit)) * step
            rate += speed * step
            if rate > limit >= self._allowed and moment + step > probing_until:
                rate = limit  # with time alone, not past the limit
            moment += step
        self._allowed = min(ceiling, cap, max(self._floor, rate))

    def delay(self) -> float:
        """Seconds until a token is free (0 if one is free now); takes it if so."""
        now = self._clock()
        tokens = self._advance(now)
        if now < self._paused_until:
            return self._paused_until - now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            if self._probe_until == math.inf:  # the first two requests after a pause
                if self._probe_from == math.inf:
                    self._probe_from = now
                else:
                    self._probe_until = now
            return 0.0
        self._last_wait = now
        return (1.0 - tokens) / self.rate

    def paused_for(self) -> float:
        """Seconds until a pause a 429 set is over (0 when there is none): a request
        that took its token before the 429 arrived must still not leave during it."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Send nothing from this bucket for ``seconds`` (after a 429; at most
        :data:`MAX_PAUSE`); when they are over, the bucket holds one token."""
        now = self._clock()
        self._advance(now)
        seconds = min(max(0.0, seconds), MAX_PAUSE) if seconds == seconds else 0.0
        if now + seconds > self._paused_until:
            self._paused_until = now + seconds
            self._tokens, self._refilled = min(1.0, self.capacity), self._paused_until
            self._probe_from, self._probe_until = math.inf, math.inf

    def throttled(
        self, retry_after: float | None, sent_at: float | None = None, *, exact: bool = False
    ) -> None:
        """The service answered 429 to a request sent at ``sent_at``: lower the rate
        (unless the request left before the last decrease) and send nothing more for
        ``retry_after`` seconds (1 s when the service gave none). ``exact``: the wait is
        the service's own, not whole seconds rounded up.

        The new rate is :data:`DECREASE` times the old one, or the rate that got through
        over the last :data:`WINDOW` seconds if that is lower (but never less than
        :data:`MAX_CUT` of the old one). A wait of n ≥ 2 whole seconds also says the
        service's bucket gains less than one token in n - 1 seconds (in ``w`` for an exact
        wait ``w``), so the rate drops to at most that at once (but not below
        :data:`LOWEST_LIMIT` for that reason alone).
        """
        self.throttles += 1
        now = self._clock()
        self._advance(now)
        probe = sent_at is not None and self._probe_from <= sent_at < self._probe_until
        if probe:  # the service is still full: the pause below, no decrease
            bound = _bound(retry_after, exact)
            if bound is not None and bound < self._allowed:
                self._bound_seen = bound
                self._allowed = max(self._floor, bound)
        elif sent_at is None or sent_at > self._lowered_at:
            self._lowered_at = now
            self.decreases += 1
            before = shown = self._allowed
            lowered = before * (START_DECREASE if self.decreases == 1 else DECREASE)
            measured = self._measured(now)
            if measured is not None:
                lowered = max(before * MAX_CUT, min(lowered, measured))
                # What the 429 showed is the rate that got through, not a rate allowed
                # and left unused (polls a bucket allows 50 a second for, sent at 10).
                shown = min(before, max(measured, lowered))
            bound = _bound(retry_after, exact)
            if bound is not None:
                self._bound_seen = bound
                shown = min(shown, bound)
                lowered = min(lowered, bound)
            self._remember(now, shown)
            self._allowed = max(self._floor, lowered)
            self._calm = 0.0
            if self._tokens is not None:
                self._tokens = min(self._tokens, self.capacity)
        self.pause(1.0 if retry_after is None else retry_after)

    def _remember(self, now: float, rate: float) -> None:
        """A decrease was made from ``rate``: the limit seen is the highest such rate
        over the last :data:`MEMORY` seconds."""
        seen = self._seen
        seen.append((now, rate))
        while seen[0][0] < now - MEMORY:  # bounded: at most one decrease per 429
            seen.popleft()
        self._limit_seen = max(rate for _, rate in seen)

    def _measured(self, now: float) -> float | None:
        """Successes a second over the last :data:`WINDOW` seconds (over at least one
        second), or ``None`` without any, or before the bucket has been in use for a whole
        window: a process that has just started has not shown its rate yet, and cutting
        it to what it got through so far starved it."""
        if now - self._started < MEASURE_AFTER:
            return None
        successes = self._successes
        while successes and successes[0] < now - WINDOW:
            successes.popleft()
        if not successes:
            return None
        return len(successes) / max(1.0, now - successes[0])

    def succeeded(self) -> None:
        """A request from this bucket was answered without a 429 (past the limit the
        last 429s showed, the rate climbs only while they are)."""
        now = self._clock()
        self._advance(now)
        self._last_success = now
        successes = self._successes
        successes.append(now)
        while successes[0] < now - WINDOW:  # bounded: the rate times the window
            successes.popleft()

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


def _bound(retry_after: float | None, exact: bool) -> float | None:
    """The highest rate (a second) a wait of ``retry_after`` allows the service to have,
    if it says anything (never below :data:`LOWEST_LIMIT`)."""
    if retry_after is None:
        return None
    if exact:
        if retry_after <= 0:
            return None
        bound = 1.0 / retry_after
    elif retry_after >= 2.0:
        bound = 1.0 / (math.ceil(retry_after) - 1.0)
    else:
        return None
    return max(bound, LOWEST_LIMIT / 60.0)


class RateBudget:
    """The two buckets of one client: creates, and every other request."""

    def __init__(self, creates_per_minute: float, requests_per_minute: float) -> None:
        self.creates = TokenBucket(creates_per_minute)
        self.requests = TokenBucket(requests_per_minute)

    def bucket(self, creating: bool) -> TokenBucket:
        return self.creates if creating else self.requests

    @property
    def share(self) -> float:
        """The smaller :attr:`TokenBucket.share` of the two buckets: below 1, the token
        is shared with other processes or limited lower than published, and the polls
        of this client's predictions get that share of the request limit too."""
        return min(self.creates.share, self.requests.share)
