"""The rate budget over loopback, as the emulator sees it: ``Retry-After`` is a floor for
every request of the bucket (checked on the emulator's own request times), a storm of
429s is recovered from within seconds, and a community model's model route gets one
create at most until its look-up is known."""

from __future__ import annotations

import json

import anyio
import pytest

from replicate_home import RateLimitError, ReplicateAPI
from replicate_home.emulator import Emulator, Fault, Scenario
from replicate_home.emulator._recording import RequestRecord

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
TOKEN = "r8_rate_limits_test"


def throttled(retry_after: float | str, body_retry_after: float | None = None) -> Fault:
    """A 429 as Replicate answers it (problem details), with ``Retry-After``."""
    body: dict[str, object] = {"title": "Request was throttled", "status": 429}
    if body_retry_after is not None:
        body["retry_after"] = body_retry_after
    return Fault(
        status=429,
        body=json.dumps(body),
        content_type="application/problem+json",
        retry_after=retry_after,
    )


def creates(emulator: Emulator) -> list[RequestRecord]:
    return [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/predictions")]


def assert_floor(records: list[RequestRecord], wait: float) -> None:
    """After each 429, no create reached the emulator before ``wait`` had passed."""
    for n, record in enumerate(records):
        if record.status_code == 429:
            following = records[n + 1 :]
            assert all(later.time >= record.time + wait for later in following), (
                f"a create {min(r.time for r in following) - record.time:.3f} s after a 429"
            )


@pytest.mark.parametrize(
    ("fault", "wait"),
    [
        pytest.param(throttled(1), 1.0, id="retry-after-1"),
        # Two whole seconds of waiting: the same rule, in the slow run.
        pytest.param(throttled(2), 2.0, id="retry-after-2", marks=pytest.mark.slow),
        pytest.param(throttled(1, body_retry_after=0.4), 0.4, id="finer-body-0.4"),
    ],
)
async def test_no_create_leaves_before_the_retry_after_of_a_429(fault: Fault, wait: float) -> None:
    # Four predictions at once; the first create to arrive draws a 429. Neither it nor
    # the three others (whose tokens the budget had already given) reach the emulator
    # until the wait is over, at the emulator's own clock.
    emulator = Emulator(Scenario(duration=0.05))
    emulator.script("p", Scenario(duration=0.05, submit_faults=[fault]))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30) as client:
            results = await client.compare([LLAMA] * 4, prompt="p")
            bucket = client.budget.creates
    assert [result.status for result in results] == ["succeeded"] * 4
    records = creates(emulator)
    assert [r.status_code for r in records].count(429) == 1
    assert_floor(records, wait)
    assert (bucket.throttles, bucket.decreases) == (1, 1)


async def test_a_429_on_a_poll_pauses_the_polls_not_the_creates() -> None:
    emulator = Emulator(Scenario(duration=0.3, poll_faults=[throttled(1)]))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30, wait=None) as client:
            prediction = await client.predict("black-forest-labs/flux-schnell", prompt="p")
            assert client.budget.requests.throttles == 1
            assert client.budget.creates.throttles == 0
    assert prediction.status == "succeeded"
    polls = [r for r in emulator.requests if r.method == "GET" and r.prediction_id]
    assert_floor(polls, 1.0)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_storm_of_429s_is_recovered_from_within_15_s() -> None:
    # Replicate's published create limit, and a storm: 50 creates in a row answered 429
    # ("Retry-After: 1", the body's retry_after 0.1 s), which the client draws in about
    # five seconds. Within 15 s of the storm's last 429 the creates are back at >= 90 %
    # of the limit.
    storm = [throttled(1, body_retry_after=0.1)] * 50
    emulator = Emulator(Scenario(duration=0.05), rate_limits=(600, 3000))
    emulator.script("storm", Scenario(duration=0.05, submit_faults=storm))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=100) as client:
            results = await client.compare([LLAMA] * 320, prompt="storm")
    # A create answered 429 more often than its retries allow ends a RateLimitError.
    failed = [result.error for result in results if result.status != "succeeded"]
    assert all(isinstance(error, RateLimitError) for error in failed)
    assert len(failed) < 50
    records = creates(emulator)
    throttled_at = [r.time for r in records if r.status_code == 429]
    assert len(throttled_at) >= 50
    # No floor check here: with the emulator in this process under load, a create sent
    # before a 429 arrived can be decided after it (the quick tests above check it).
    end = throttled_at[49]
    created = [r.time for r in records if r.status_code == 201]
    assert created[-1] > end + 15  # still creating then
    assert sum(1 for t in created if end + 13 <= t < end + 15) >= 0.9 * 10 * 2


async def test_a_community_model_gets_one_404_create_however_many_calls_want_it() -> None:
    # Four predictions of one community model at once: the first create to its model
    # route is answered 404, and the others wait for that answer and the look-up it
    # starts, then go to the version.
    emulator = Emulator(Scenario(duration=0.05), community_models=["jane/fast"])
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30) as client:
            results = await client.compare(["jane/fast"] * 4, prompt="p")
            again = await client.compare(["jane/fast"] * 2, prompt="p")
    assert [result.status for result in [*results, *again]] == ["succeeded"] * 6
    route = [r for r in creates(emulator) if r.path == "/v1/models/jane/fast/predictions"]
    assert [r.status_code for r in route] == [404]
    lookups = [
        r for r in emulator.requests if r.method == "GET" and r.path.startswith("/v1/models/")
    ]
    assert len(lookups) == 1
    assert len([r for r in creates(emulator) if r.path == "/v1/predictions"]) == 6


async def test_an_official_model_is_known_from_its_first_create() -> None:
    # The first answer from the model route settles it: the other creates go at once,
    # and no look-up is needed.
    emulator = Emulator(Scenario(duration=0.05))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30) as client:
            results = await client.compare([LLAMA] * 4, prompt="p")
    assert [result.status for result in results] == ["succeeded"] * 4
    assert [r.status_code for r in creates(emulator)] == [201] * 4
    assert {r.path for r in creates(emulator)} == {f"/v1/models/{LLAMA}/predictions"}
    assert not [r for r in emulator.requests if r.method == "GET" and "/models/" in r.path]


async def test_calls_waiting_on_a_held_first_create_learn_the_model_from_its_look_up() -> None:
    # The calls of one model wait for the first create to its route; held
    # (``Prefer: wait``) it answers only when its prediction ends, and four predictions
    # of 2 s with wait=60 took 4 s. The calls waiting learn the model from one look-up
    # instead, and leave well within the first prediction's time, all held as asked.
    emulator = Emulator(Scenario(duration=2.0))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=120, wait=60) as client:
            results = []

            async def predict() -> None:
                results.append(await client.predict(LLAMA, prompt="p"))

            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(predict)
    assert [result.status for result in results] == ["succeeded"] * 4
    assert [r.headers.get("prefer") for r in creates(emulator)] == ["wait=60"] * 4
    assert {r.path for r in creates(emulator)} == {f"/v1/models/{LLAMA}/predictions"}
    lookups = [r for r in emulator.requests if r.method == "GET" and "/models/" in r.path]
    assert [r.path for r in lookups] == [f"/v1/models/{LLAMA}"]
    # The emulator records a request as it answers it (a held one when its prediction
    # ends): when each prediction was created says when its create arrived.
    created = sorted(result.created_at for result in results if result.created_at)
    assert len(created) == 4
    assert (created[-1] - created[0]).total_seconds() < 1.0


async def test_a_community_model_behind_a_held_first_create_gets_one_404() -> None:
    # The held first create to a community model's route is answered 404 at once; the
    # calls waiting on it share the one look-up and go to the version.
    emulator = Emulator(Scenario(duration=0.05), community_models=["jane/fast"])
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30, wait=5) as client:
            results = []

            async def predict() -> None:
                results.append(await client.predict("jane/fast", prompt="p"))

            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(predict)
    assert [result.status for result in results] == ["succeeded"] * 4
    route = [r for r in creates(emulator) if r.path == "/v1/models/jane/fast/predictions"]
    assert [r.status_code for r in route] == [404]
    lookups = [r for r in emulator.requests if r.method == "GET" and "/models/" in r.path]
    assert len(lookups) == 1
    assert len([r for r in creates(emulator) if r.path == "/v1/predictions"]) == 4


async def test_a_first_create_that_fails_lets_the_next_call_try() -> None:
    # The first create's answer says nothing about the route (a 500, not retried for a
    # create): the next call waiting takes its turn, and the others follow it.
    emulator = Emulator(Scenario(duration=0.05))
    emulator.script("p", Scenario(duration=0.05, submit_faults=[Fault(status=500)]))
    async with emulator.serve():
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=30) as client:
            results = await client.compare([LLAMA] * 3, prompt="p")
    assert sorted(result.status for result in results) == ["error", "succeeded", "succeeded"]
    statuses = [r.status_code for r in creates(emulator)]
    assert statuses == [500, 201, 201]
