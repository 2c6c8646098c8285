"""The adaptive rate budget: it finds the service's real limit, and a call the budget
never let out ends "not sent", never "timed out"."""

from __future__ import annotations

import json
import sys

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home import PredictionNotSent, PredictionTimeout, ReplicateAPI
from replicate_home._budget import (
    CLIMB,
    DECREASE,
    HEADROOM,
    LOWEST_LIMIT,
    MAX_CUT,
    MAX_STEP,
    TokenBucket,
)
from replicate_home.emulator import Emulator, Scenario

LLAMA = "meta/meta-llama-3-8b-instruct"
TOKEN = "r8_budget_test"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_429_lowers_the_rate_once_per_episode() -> None:
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)
    assert bucket.delay() == 0.0  # first use: full
    bucket.throttled(1.0, sent_at=0.0)
    assert bucket.allowed_per_minute == pytest.approx(600 * DECREASE)
    # Another answer to a request that left before the decrease says nothing new.
    bucket.throttled(1.0, sent_at=0.0)
    assert bucket.allowed_per_minute == pytest.approx(600 * DECREASE)
    assert (bucket.throttles, bucket.decreases) == (2, 1)
    # "Retry-After: 1" is less than a second, rounded up: no pause beyond restarting
    # empty, so the next request leaves one token later at the lowered rate.
    assert bucket.delay() == pytest.approx(1 / bucket.rate)
    clock.now = 1.0
    assert bucket.delay() == 0.0
    clock.now = 2.0
    bucket.throttled(1.0, sent_at=1.5)  # sent after it: the lower rate is still too high
    assert bucket.allowed_per_minute == pytest.approx(600 * DECREASE**2)


def test_a_long_retry_after_finds_a_low_limit_in_one_step() -> None:
    bucket = TokenBucket(600, clock=Clock())
    bucket.throttled(8.0)  # "resets in ~8s": < 1 token in 7 s
    assert bucket.allowed_per_minute == pytest.approx(60 / 7)


def test_a_retry_after_longer_than_the_lowest_limit_pauses_but_does_not_pin_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)
    bucket.throttled(60.0)  # an outage or a window, not one token a minute
    assert bucket.allowed_per_minute == pytest.approx(LOWEST_LIMIT)
    first = 59.0 + 1 / bucket.rate  # the pause (n - 1 s), then one token
    assert first >= 60.0  # honoured: nothing leaves before it
    clock.now = first - 0.01
    assert bucket.delay() > 0
    clock.now = first + 0.001
    assert bucket.delay() == 0.0
    # Further 429s still lower it (down to the floor) by the multiplicative rule.
    clock.now = 80.0
    bucket.throttled(60.0, sent_at=80.0)
    assert bucket.allowed_per_minute == pytest.approx(LOWEST_LIMIT * DECREASE)


def test_the_bucket_starts_with_one_token_and_keeps_headroom() -> None:
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)
    assert bucket.delay() == 0.0
    assert bucket.delay() > 0  # no burst assumed at start
    clock.now = 10.0  # idle: the burst is earned, less the headroom
    assert bucket.capacity == pytest.approx(10 - max(1.0, 10 * HEADROOM))
    sent = 0
    while bucket.delay() == 0:
        sent += 1
    assert sent == int(bucket.capacity)
    assert TokenBucket(3000, clock=clock).capacity == pytest.approx(50 * (1 - HEADROOM))


def test_the_rate_measured_lately_bounds_the_cut_but_never_below_half() -> None:
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)
    high = TokenBucket(600, clock=clock)
    assert bucket.delay() == high.delay() == 0.0  # both in use from 0 s
    for step in range(20):  # 2 a second got through over 10 s
        clock.now = 0.5 + step * 0.5
        bucket.succeeded()
    bucket.throttled(1.0)
    assert bucket.allowed_per_minute == pytest.approx(600 * MAX_CUT)
    for step in range(60):  # 6 a second: between the cut and the decrease
        clock.now = 20 + step / 6
        high.succeeded()
    high.throttled(1.0)
    assert high.allowed_per_minute == pytest.approx(60 * 60 / (59 / 6))


def test_a_bucket_younger_than_the_window_is_not_cut_to_its_measured_rate() -> None:
    # A process that has just started has not shown its rate: only the decrease applies.
    clock = Clock()
    bucket = TokenBucket(600, clock=clock)
    assert bucket.delay() == 0.0
    for step in range(5):
        clock.now = 0.2 * step
        bucket.succeeded()
    bucket.throttled(1.0)
    assert bucket.allowed_per_minute == pytest.approx(600 * DECREASE)


def test_successes_climb_back_to_the_ceiling_and_no_further() -> None:
    bucket = TokenBucket(600, clock=Clock())
    bucket.throttled(10.0)
    low = bucket.allowed_per_minute
    bucket.succeeded()  # a low rate: at most MAX_STEP of itself
    assert bucket.allowed_per_minute == pytest.approx(low * (1 + MAX_STEP))
    for _ in range(20000):
        bucket.succeeded()
    assert bucket.allowed_per_minute == 600


def test_the_climb_is_additive_so_shares_of_one_limit_converge() -> None:
    # Near the ceiling each success adds the same absolute step a second to every
    # process: the climb does not favour the larger share (multiplicative would).
    clock = Clock()
    small, large = TokenBucket(600, clock=clock), TokenBucket(600, clock=clock)
    small._allowed, large._allowed = 4.0, 6.0  # requests a second
    for _ in range(4):
        small.succeeded()
    for _ in range(6):
        large.succeeded()
    gained_small = small.allowed_per_minute / 60 - 4.0
    gained_large = large.allowed_per_minute / 60 - 6.0
    assert gained_small == pytest.approx(gained_large, rel=0.01)
    assert gained_small == pytest.approx(CLIMB * 10, rel=0.01)


def test_past_the_rate_of_its_last_429_the_climb_probes_multiplicatively() -> None:
    bucket = TokenBucket(600, clock=Clock())
    bucket._allowed = 4.0
    bucket.throttled(1.0)  # at 4 a second: lowered to 3.4
    below = bucket.allowed_per_minute / 60
    bucket.succeeded()
    additive = bucket.allowed_per_minute / 60 - below
    assert additive == pytest.approx(min(CLIMB * 10 / below, MAX_STEP * below))
    for _ in range(200):
        bucket.succeeded()
        if bucket.allowed_per_minute / 60 >= 4.0:
            break
    rate = bucket.allowed_per_minute / 60
    bucket.succeeded()  # past 4 a second with no 429: the limit has moved
    assert bucket.allowed_per_minute / 60 == pytest.approx(rate * (1 + MAX_STEP))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["delay", "throttled", "succeeded"]),
            st.floats(0, 30),
            st.one_of(st.none(), st.floats(0, 120)),
        ),
        max_size=60,
    )
)
def test_the_rate_stays_between_the_floor_and_the_ceiling(
    steps: list[tuple[str, float, float | None]],
) -> None:
    clock = Clock()
    bucket = TokenBucket(300, clock=clock)
    for action, elapsed, retry_after in steps:
        clock.now += elapsed
        if action == "delay":
            assert bucket.delay() >= 0
        elif action == "throttled":
            bucket.throttled(retry_after, sent_at=clock.now)
        else:
            bucket.succeeded()
        assert 1.0 <= bucket.allowed_per_minute <= 300
        assert bucket.capacity >= 1
        assert bucket.rate > 0


# -- over loopback ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_call_the_budget_never_let_out_ends_not_sent(emulator: Emulator) -> None:
    # One create a second (paced at 90%): within 1.6 s two creates leave, the rest never
    # do. Those end "not sent"; the ones sent have their own 1.6 s and succeed.
    async with ReplicateAPI(
        TOKEN, base_url=emulator.base_url, creates_per_minute=60, timeout=1.6
    ) as client:
        results = await client.compare([LLAMA] * 5, prompt="p")
    statuses = [result.status for result in results]
    assert "succeeded" in statuses  # the first to get a token (any of them)
    assert "not sent" in statuses
    assert "timeout" not in statuses
    assert emulator.stats().creates == len([s for s in statuses if s != "not sent"])
    for result in results:
        if result.status == "not sent":
            assert isinstance(result.error, PredictionNotSent)
            assert not isinstance(result.error, (PredictionTimeout, TimeoutError))
            assert "not sent" in str(result.error)


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_timeout_starts_when_the_create_is_sent(emulator: Emulator) -> None:
    # Each prediction takes 0.3 s and has 1 s; the third create leaves after ~0.9 s of
    # waiting for the budget (2 a second), yet has its whole second and succeeds.
    async with ReplicateAPI(
        TOKEN, base_url=emulator.base_url, creates_per_minute=120, timeout=1.0
    ) as client:
        results = await client.compare([LLAMA] * 2, prompt="p")
        late = await client.predict(LLAMA, prompt="p")
    assert [result.status for result in results] == ["succeeded"] * 2
    assert late.status == "succeeded"


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_the_budget_converges_to_a_limit_of_6_creates_a_minute() -> None:
    emulator = Emulator(Scenario(duration=0.3), rate_limits=(6, 3000))
    cells = 8
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=200) as client:
            results = await client.compare([LLAMA] * cells, prompt="p")
            allowed = client.budget.creates.allowed_per_minute
    assert [result.status for result in results] == ["succeeded"] * cells
    assert emulator.stats().creates == cells
    # The first burst (the published limit allows 9 at once) draws a 429 for every create
    # but one; once the Retry-After is read, the budget sits at the limit.
    posts = [r for r in emulator.requests if r.method == "POST"]
    first_429 = next(r.time for r in posts if r.status_code == 429)
    later = [r for r in posts if r.time > first_429 + 1.0]
    assert len([r for r in later if r.status_code == 429]) <= 0.25 * len(later)
    assert 3 <= allowed <= 9


_CLIENT = """
import json, sys
import anyio
from replicate_home import ReplicateAPI

async def main() -> None:
    async with ReplicateAPI("t", base_url=sys.argv[1], timeout=300) as client:
        results = await client.compare([sys.argv[2]] * int(sys.argv[3]), prompt="p")
        print(json.dumps([r.status for r in results]))

anyio.run(main)
"""


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_three_processes_on_one_limit_converge() -> None:
    # Three processes, one token, no shared store: 120 creates a minute between them.
    emulator = Emulator(Scenario(duration=1.0), rate_limits=(120, 3000))
    per_process = 20
    outputs: list[str] = []
    async with emulator.serve():

        async def run_one() -> None:
            done = await anyio.run_process(
                [sys.executable, "-c", _CLIENT, emulator.base_url, LLAMA, str(per_process)]
            )
            outputs.append(done.stdout.decode())

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(run_one)
    statuses = [status for output in outputs for status in json.loads(output)]
    assert statuses == ["succeeded"] * 3 * per_process
    assert emulator.stats().creates == 3 * per_process
    # Loose ratios: once the three have found their shares (the second half of the run),
    # few creates draw a 429, and creates go out near the limit.
    posts = [r for r in emulator.requests if r.method == "POST"]
    half = posts[0].time + (posts[-1].time - posts[0].time) / 2
    late = [r for r in posts if r.time >= half]
    late_429 = [r for r in late if r.status_code == 429]
    assert len(late_429) <= 0.2 * len(late)
    created = [r.time for r in posts if r.status_code == 201]
    throughput = (len(created) - 1) / (created[-1] - created[0])  # creates a second
    # Loose: on a loaded machine the three clients themselves can be the bottleneck.
    assert throughput >= 0.25 * 2.0  # the limit: 2 a second
