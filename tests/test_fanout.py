"""Fan-out, compare and race against the emulator over loopback, on asyncio and trio."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import anyio
import pytest

import replicate_home
from replicate_home import (
    AllPredictionsFailed,
    Chunk,
    Event,
    Failed,
    Finished,
    Image,
    ModelNotSupportedError,
    PredictionFailed,
    PredictionTimeout,
    Progress,
    ReplicateHome,
    StatusChanged,
)
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

GEMMA = "google-deepmind/gemma-2b-it"
SD3 = "stability-ai/stable-diffusion-3"
SDXL = "bytedance/sdxl-lightning-4step"
PLAYGROUND = "playgroundai/playground-v2.5-1024px-aesthetic"


def created_ids(emulator: Emulator) -> list[str]:
    return [r.prediction_id for r in emulator.requests if r.method == "POST" and r.prediction_id]


async def test_every_model_ends_once_and_events_come_in_order_per_model(
    emulator: Emulator,
) -> None:
    models = ["gemma-2b", "gemma-2b", "sd-3", GEMMA]
    events: dict[int, list[Event]] = defaultdict(list)
    async with ReplicateHome(emulator.base_url) as client:
        async with client.fan_out(models, prompt="Compare us") as stream:
            async for event in stream:
                events[event.index].append(event)
    assert sorted(events) == [0, 1, 2, 3]
    texts = set()
    for index, sequence in events.items():
        assert isinstance(sequence[0], StatusChanged)
        assert isinstance(sequence[-1], Finished)
        assert [e for e in sequence if isinstance(e, (Finished, Failed))] == [sequence[-1]]
        assert {e.model for e in sequence} == {GEMMA if index != 2 else SD3}
        final = sequence[-1].prediction
        if index == 2:
            (image,) = [e for e in sequence if isinstance(e, Image)]
            assert image.image.images == final.output
        else:
            text = "".join(e.text for e in sequence if isinstance(e, Chunk))
            assert text == final.text
            texts.add(text)
    assert len(texts) == 1  # the same model and prompt: the same (deterministic) text
    assert len(set(created_ids(emulator))) == 4  # a duplicate is a prediction of its own


async def test_a_fast_model_is_not_held_back_by_a_slow_one(emulator: Emulator) -> None:
    emulator.script("who wins", Scenario(duration=30), model=GEMMA)
    emulator.script("who wins", Scenario(duration=0.1), model=SDXL)
    async with ReplicateHome(emulator.base_url) as client:
        async with client.fan_out(["gemma-2b", "sdxl"], prompt="who wins") as stream:
            async for event in stream:
                if isinstance(event, Finished):
                    break
    assert event.model == SDXL
    assert event.index == 1
    assert emulator.stats().in_flight == 1  # the slow one was still running


async def test_failures_are_isolated_by_default(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=0.1, outcome="failed", error="boom"), model=SD3)
    async with ReplicateHome(emulator.base_url) as client:
        async with client.fan_out(["gemma-2b", "sd-3", "sdxl"], prompt="p") as stream:
            ends = [e async for e in stream if isinstance(e, (Finished, Failed))]
    by_index = {e.index: e for e in ends}
    assert len(ends) == 3
    assert isinstance(by_index[0], Finished)
    assert isinstance(by_index[2], Finished)
    failed = by_index[1]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, PredictionFailed)
    assert failed.error.error == "boom"
    assert failed.elapsed > 0


async def test_fail_fast_cancels_the_rest_and_raises_the_error(
    emulator: Emulator, client_tasks: Callable[[], set[int]]
) -> None:
    emulator.script("p", Scenario(duration=30), model=GEMMA)
    emulator.script("p", Scenario(duration=0.1, outcome="failed", error="boom"), model=SD3)
    before = client_tasks()
    seen: list[Event] = []

    async def consume(client: ReplicateHome) -> None:
        async with client.fan_out(["gemma-2b", "sd-3"], prompt="p", fail_fast=True) as stream:
            async for event in stream:
                seen.append(event)

    async with ReplicateHome(emulator.base_url, poll_interval=0.05) as client:
        with pytest.raises(PredictionFailed, match="boom"):
            await consume(client)
        assert not any(isinstance(e, (Finished, Failed)) for e in seen)
        slow = created_ids(emulator)[0]
        polls = emulator.polls(slow)
        await client.predict("sdxl", prompt="something else")  # many poll intervals
        assert emulator.polls(slow) == polls
    assert client_tasks() == before


async def test_limit_caps_predictions_in_flight(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=0.2))
    async with ReplicateHome(emulator.base_url, poll_interval=0.02) as client:
        async with client.fan_out(["gemma-2b"] * 6, prompt="p", limit=2) as stream:
            ends = [e async for e in stream if isinstance(e, (Finished, Failed))]
    assert len(ends) == 6
    assert all(isinstance(e, Finished) for e in ends)
    assert emulator.stats().peak_in_flight == 2


async def test_timeout_is_per_model(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=30), model=GEMMA)
    emulator.script("p", Scenario(duration=0.1), model=SDXL)
    async with ReplicateHome(emulator.base_url) as client:
        async with client.fan_out(["gemma-2b", "sdxl"], prompt="p", timeout=1) as stream:
            ends = {e.index: e for e in stream_ends([e async for e in stream])}
    assert isinstance(ends[1], Finished)
    assert isinstance(ends[0], Failed)
    assert isinstance(ends[0].error, PredictionTimeout)


def stream_ends(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, (Finished, Failed))]


@pytest.mark.parametrize("how", ["break", "exception", "outer cancel"])
async def test_leaving_early_cancels_everything_at_once(
    emulator: Emulator, client_tasks: Callable[[], set[int]], how: str
) -> None:
    emulator.script("p", Scenario(duration=30, start_delay=0.01))
    before = client_tasks()
    left_at: list[float] = []

    async def leave(client: ReplicateHome, outer: anyio.CancelScope) -> None:
        async with client.fan_out(["gemma-2b"] * 3, prompt="p"):
            await emulator.wait_for(lambda e: e.stats().creates == 3)
            left_at.append(anyio.current_time())
            if how == "exception":
                raise KeyError("mine")
            if how == "outer cancel":
                outer.cancel()
                await anyio.sleep_forever()

    async with ReplicateHome(emulator.base_url, poll_interval=10) as client:
        with anyio.CancelScope() as outer:
            if how == "exception":
                # The body's own exception comes out as itself, not in an ExceptionGroup.
                with pytest.raises(KeyError, match="mine"):
                    await leave(client, outer)
            else:
                await leave(client, outer)
        assert anyio.current_time() - left_at[0] < 1  # not the 10 s poll interval
        assert outer.cancelled_caught == (how == "outer cancel")
        assert emulator.stats().polls == 0
    assert client_tasks() == before


async def test_race_returns_the_first_success_and_cancels_the_rest(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=30), model=GEMMA)
    emulator.script("p", Scenario(duration=0.1, outcome="failed"), model=SD3)
    emulator.script("p", Scenario(duration=0.3), model=SDXL)
    async with ReplicateHome(emulator.base_url, poll_interval=0.05) as client:
        winner = await client.race(["gemma-2b", "sd-3", "sdxl"], prompt="p")
        assert winner.model == SDXL
        assert winner.status == "succeeded"
        slow = created_ids(emulator)[0]
        polls = emulator.polls(slow)
        await client.predict("playground-v2.5", prompt="another")
        assert emulator.polls(slow) == polls


async def test_race_raises_when_nothing_succeeds(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=0.1, outcome="failed", error="no"))
    async with ReplicateHome(emulator.base_url) as client:
        with pytest.raises(AllPredictionsFailed, match="no") as caught:
            await client.race(["gemma-2b", "sdxl"], prompt="p")
    assert [model for model, _ in caught.value.errors] == [GEMMA, SDXL]


async def test_compare_returns_one_result_per_model_in_order(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=0.1, outcome="failed", error="boom"), model=SDXL)
    emulator.script("p", Scenario(duration=0.1, images=2), model=SD3)
    async with ReplicateHome(emulator.base_url) as client:
        results = await client.compare(["sdxl", "gemma-2b", "sd-3"], prompt="p")
    assert [r.model for r in results] == [SDXL, GEMMA, SD3]
    assert [r.index for r in results] == [0, 1, 2]
    failed, text, image = results
    assert failed.status == "failed"
    assert not failed.ok
    assert isinstance(failed.error, PredictionFailed)
    assert text.ok
    assert text.text
    assert text.prediction is not None
    assert text.text == text.prediction.text
    assert text.polls == text.prediction.polls
    assert image.ok
    assert len(image.images) == 2
    assert image.text is None
    assert all(r.latency is not None and r.latency > 0 for r in results)


async def test_progress_events_report_every_poll(emulator: Emulator) -> None:
    async with ReplicateHome(emulator.base_url, poll_interval=0.02) as client:
        async with client.fan_out(["gemma-2b"], prompt="p", progress=True) as stream:
            events = [e async for e in stream]
    progress = [e for e in events if isinstance(e, Progress)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert [p.prediction.polls for p in progress] == list(range(finished.prediction.polls + 1))


async def test_bad_arguments_fail_before_any_request(emulator: Emulator) -> None:
    async with ReplicateHome(emulator.base_url) as client:
        with pytest.raises(ModelNotSupportedError):
            client.fan_out(["gemma-2b", "gpt-4"], prompt="p")
        for models in ([], "gemma-2b"):
            with pytest.raises(ValueError, match="models"):
                client.fan_out(models, prompt="p")
        with pytest.raises(ValueError, match="limit"):
            client.fan_out(["gemma-2b"], prompt="p", limit=0)
        with pytest.raises(ValueError, match="timeout"):
            await client.compare(["gemma-2b"], prompt="p", timeout=-1)
    assert emulator.stats().requests == 0


async def test_module_level_fan_out_owns_its_client(emulator: Emulator) -> None:
    async with replicate_home.fan_out(
        ["gemma-2b", "sd-3"], prompt="p", base_url=emulator.base_url
    ) as stream:
        ends = stream_ends([e async for e in stream])
    assert {type(e) for e in ends} == {Finished}


@pytest.mark.slow
async def test_two_hundred_predictions_at_once(emulator: Emulator) -> None:
    emulator.script("scale", Scenario(duration=2.0))
    async with ReplicateHome(emulator.base_url) as client:
        async with client.fan_out(["gemma-2b"] * 200, prompt="scale") as stream:
            ends = stream_ends([e async for e in stream])
    assert len(ends) == 200
    assert all(isinstance(e, Finished) for e in ends)
    assert sorted(e.index for e in ends) == list(range(200))
    assert emulator.stats().peak_in_flight > 100  # they really ran at once
