"""A simulation of processes that share one rate limit, each with its own
:class:`~replicate_home.TokenBucket`, against the emulator's token bucket, on a simulated
clock: the budget's rules in seconds of CPU instead of minutes of wall time.

Each process has a backlog of creates that wait for its bucket in turn (as the engine's
lock serves them); a create reaches the service after a network delay, and the service
answers 201 or 429 (``Retry-After``: the wait for one token, rounded up; the body's
``retry_after`` the same). A 429'd create waits its ``Retry-After``, then queues again
for a token, as the engine's retry does. Scheduling jitter is acted out as stalls: a
process that is stalled sends and reads nothing until the stall ends, then does it all
at once (the bunching a loaded machine shows); the service can stall too
(``service_stalls_per_second``: requests that arrive during a stall are taken in together
when it ends, as a busy emulator takes them). A storm answers every create with a 429 for
a while, whatever the service's bucket holds.

Used by the budget's tests (deterministic: a seeded random generator) and by
``python tests/budget_sim.py`` to try rules quickly; the scale benchmark measures
the real thing.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicate_home._budget import TokenBucket
from replicate_home.emulator._api_rules import TokenBucket as ServiceBucket

__all__ = ["Outcome", "Process", "Storm", "simulate"]


@dataclass(frozen=True)
class Storm:
    """Every create that reaches the service in ``[start, end)`` is answered 429."""

    start: float
    end: float
    retry_after: float = 1.0


@dataclass(frozen=True)
class Process:
    """One process on the token: ``creates`` to send, from ``start`` seconds on."""

    creates: int
    start: float = 0.0


@dataclass
class Outcome:
    """What the service saw: when each create was answered 201 (``created``, with the
    process it came from) and 429 (``throttled``)."""

    created: list[tuple[float, int]] = field(default_factory=list)
    throttled: list[tuple[float, int]] = field(default_factory=list)
    #: Each process's allowed rate (requests a second) sampled each second.
    allowed: list[list[tuple[float, float]]] = field(default_factory=list)
    #: When each 429'd create was answered and when that process next sent one.
    floors: list[tuple[float, float, float]] = field(default_factory=list)

    def rate(self, start: float, end: float) -> float:
        """Creates answered 201 a second over ``[start, end)``."""
        return sum(1 for t, _ in self.created if start <= t < end) / (end - start)

    def throughput(self) -> float:
        """Creates a second from the first create to the last (as the benchmark counts)."""
        times = [t for t, _ in self.created]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def simulate(
    processes: Sequence[Process],
    *,
    limit_per_minute: int = 600,
    burst: int | None = None,
    ceiling_per_minute: float = 600,
    latency: float = 0.004,
    stalls_per_second: float = 0.0,
    stall_mean: float = 0.05,
    service_stalls_per_second: float = 0.0,
    storm: Storm | None = None,
    until: float = 3600.0,
    seed: int = 0,
    bucket_factory: Callable[[float, Callable[[], float]], TokenBucket] | None = None,
) -> Outcome:
    """Run the processes until every create has succeeded (or ``until``)."""
    rng = random.Random(seed)
    now = 0.0
    events: list[tuple[float, int, Callable[[], None]]] = []
    order = itertools.count()

    def at(time: float, action: Callable[[], None]) -> None:
        heapq.heappush(events, (time, next(order), action))

    def clock() -> float:
        return now

    service = ServiceBucket(limit_per_minute, burst)
    make = bucket_factory or (lambda rate, c: TokenBucket(rate, clock=c))
    outcome = Outcome(allowed=[[] for _ in processes])
    buckets = [make(ceiling_per_minute, clock) for _ in processes]
    queues: list[deque[int]] = [deque() for _ in processes]
    waking = [False] * len(processes)
    stalled_until = [0.0] * len(processes)
    left = [p.creates for p in processes]
    last_429: list[float | None] = [None] * len(processes)

    def when_free(number: int, time: float) -> float:
        """The process runs code at ``time`` or, stalled, when the stall ends."""
        return max(time, stalled_until[number])

    def stall(number: int) -> None:
        length = min(0.5, rng.expovariate(1 / stall_mean))
        stalled_until[number] = max(stalled_until[number], now + length)
        if left[number]:
            at(now + rng.expovariate(stalls_per_second), lambda: stall(number))

    def wake(number: int) -> None:
        waking[number] = False
        send_what_it_can(number)

    def send_what_it_can(number: int) -> None:
        if now < stalled_until[number]:
            if not waking[number]:
                waking[number] = True
                at(stalled_until[number], lambda: wake(number))
            return
        bucket, waiting = buckets[number], queues[number]
        while waiting:
            wait = bucket.delay()
            if wait > 0:
                if not waking[number]:
                    waking[number] = True
                    at(now + wait + 1e-9, lambda: wake(number))  # past float rounding
                return
            waiting.popleft()
            sent_at = now
            if last_429[number] is not None:
                outcome.floors.append((last_429[number], sent_at, 0.0))
                last_429[number] = None
            at(now + latency * (0.5 + rng.random()), lambda s=sent_at: arrive(number, s))

    service_stalled_until = [0.0]

    def service_stall() -> None:
        length = min(0.5, rng.expovariate(1 / stall_mean))
        service_stalled_until[0] = max(service_stalled_until[0], now + length)
        if any(left):
            at(now + rng.expovariate(service_stalls_per_second), service_stall)

    def arrive(number: int, sent_at: float) -> None:
        if now < service_stalled_until[0]:  # the service takes it in when the stall ends
            at(service_stalled_until[0], lambda: arrive(number, sent_at))
            return
        if storm is not None and storm.start <= now < storm.end:
            retry_after: float | None = storm.retry_after
        else:
            wait = service.take(now)
            retry_after = None if wait == 0 else max(1.0, math.ceil(wait))
        if retry_after is None:
            outcome.created.append((now, number))
        else:
            outcome.throttled.append((now, number))
        answered = now + latency * (0.5 + rng.random())
        at(answered, lambda: answer(number, sent_at, retry_after))

    def answer(number: int, sent_at: float, retry_after: float | None) -> None:
        time = when_free(number, now)
        if time > now:
            at(time, lambda: answer(number, sent_at, retry_after))
            return
        bucket = buckets[number]
        if retry_after is None:
            bucket.succeeded()
            left[number] -= 1
            return
        bucket.throttled(retry_after, sent_at)
        if last_429[number] is None:
            last_429[number] = now
        # The create that drew the 429 waits its Retry-After, then queues again.
        at(now + retry_after, lambda: requeue(number))

    def requeue(number: int) -> None:
        queues[number].append(0)
        send_what_it_can(number)

    def sample() -> None:
        for number, bucket in enumerate(buckets):
            if left[number]:
                outcome.allowed[number].append((now, bucket.allowed_per_minute / 60))
        if any(left):
            at(now + 1.0, sample)

    for number, process in enumerate(processes):
        queues[number].extend([0] * process.creates)
        at(process.start, lambda n=number: send_what_it_can(n))
        if stalls_per_second > 0:
            at(process.start + rng.expovariate(stalls_per_second), lambda n=number: stall(n))
    at(0.0, sample)
    if service_stalls_per_second > 0:
        at(rng.expovariate(service_stalls_per_second), service_stall)
    while events and any(left):
        now, _, action = heapq.heappop(events)
        if now > until:
            break
        action()
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tests/budget_sim.py")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--creates", type=int, default=1000, help="in all")
    parser.add_argument("--limit", type=int, default=600, help="creates a minute")
    parser.add_argument("--stalls", type=float, default=1.0, help="stalls a second")
    parser.add_argument("--stall-mean", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--requests-per-create", type=float, default=3.63)
    args = parser.parse_args(argv)
    for seed in range(args.seeds):
        share = args.creates // args.processes
        result = simulate(
            [Process(share)] * args.processes,
            limit_per_minute=args.limit,
            stalls_per_second=args.stalls,
            stall_mean=args.stall_mean,
            seed=seed,
        )
        throttled = len(result.throttled)
        requests = args.creates * args.requests_per_create + throttled
        ends = [max(t for t, n in result.created if n == k) for k in range(args.processes)]
        print(
            f"seed {seed}: {throttled} 429s ({100 * throttled / requests:.2f} %), "
            f"throughput {100 * result.throughput() / (args.limit / 60):.1f} % of the limit, "
            f"ends {', '.join(f'{e:.0f}' for e in ends)} s"
        )


if __name__ == "__main__":
    main()
