"""Prediction handles (create, get, cancel, wait, follow, list), community models by name
and the prediction's whole record: ReplicateAPI against the emulator over loopback."""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home import (
    Prediction,
    PredictionCanceled,
    PredictionProgress,
    PredictionTimeout,
    ReplicateAPI,
    ResponseStatusError,
    StatusChanged,
)
from replicate_home._models import parse_progress
from replicate_home._record import parse_timestamp
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
COMMUNITY = "lucataco/phi-3-mini-4k-instruct"
TOKEN = "r8_handles_token"


def api(emulator: Emulator, **options: Any) -> ReplicateAPI:
    return ReplicateAPI(TOKEN, base_url=emulator.base_url, **options)


def paths(emulator: Emulator, prediction_id: str | None = None) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in emulator.requests
        if r.path.startswith("/v1/") and (prediction_id is None or r.prediction_id == prediction_id)
    ]


async def test_a_handle_created_in_one_client_is_waited_on_and_cancelled_from_another(
    emulator: Emulator,
) -> None:
    emulator.script("short", Scenario(duration=0.3))
    emulator.script("long", Scenario(duration=30, start_delay=0.05))
    async with api(emulator) as first:
        short = await first.create(LLAMA, prompt="short")
        long = await first.create(LLAMA, prompt="long")
    assert short.status == long.status == "starting"
    (create, _) = [r for r in emulator.requests if r.method == "POST"]
    assert "cancel-after" not in create.headers  # the caller's: no deadline unless asked
    assert "prefer" not in create.headers
    async with api(emulator) as second:
        done = await second.wait(short.id)
        assert done.status == "succeeded"
        assert done.text
        assert done.input == {"prompt": "short"}
        canceled = await second.cancel(long.id)
        assert canceled.status == "canceled"
        assert (await second.get(long.id)).status == "canceled"
        with pytest.raises(PredictionCanceled):
            await second.wait(long)


async def test_a_cancelled_wait_or_follow_leaves_the_created_prediction_running(
    emulator: Emulator,
) -> None:
    emulator.script("long", Scenario(duration=30, start_delay=0.01))
    async with api(emulator) as client:
        created = await client.create(LLAMA, prompt="long", cancel_after=60)
        with anyio.move_on_after(0.3):
            await client.wait(created)
        with anyio.move_on_after(0.3):
            async with aclosing(client.follow(created.id)) as chunks:
                async for _chunk in chunks:
                    pass
        with pytest.raises(PredictionTimeout):
            await client.wait(created.id, timeout=0.2)
        assert (await client.get(created)).status == "processing"
    assert emulator.stats().cancels == 0
    (create,) = [r for r in emulator.requests if r.method == "POST"]
    assert create.headers["cancel-after"] == "60s"


async def test_wait_on_a_created_prediction_follows_its_stream_without_a_first_read(
    emulator: Emulator,
) -> None:
    emulator.script("stream", Scenario(duration=0.6))
    async with api(emulator) as client:
        created = await client.create(LLAMA, prompt="stream")
        async with aclosing(client.follow(created)) as stream:
            chunks = [chunk async for chunk in stream]
        final = await client.wait(created.id)
    assert "".join(str(chunk) for chunk in chunks) == final.text
    stream_path = created.urls["stream"].removeprefix(emulator.stream_url)
    assert paths(emulator, created.id)[:3] == [
        f"POST /v1/models/{LLAMA}/predictions",
        f"GET {stream_path}",  # on the stream origin
        f"GET /v1/predictions/{created.id}",
    ]


async def test_an_owned_prediction_is_still_cancelled_when_abandoned(emulator: Emulator) -> None:
    emulator.script("long", Scenario(duration=30, start_delay=0.01))
    async with api(emulator) as client:
        with anyio.move_on_after(0.3):
            await client.predict(LLAMA, prompt="long")
    assert emulator.stats().cancels == 1


async def test_the_whole_record_is_read(emulator: Emulator) -> None:
    emulator.script("record", Scenario(duration=0.2))
    async with api(emulator, timeout=30) as client:
        result = await client.predict(LLAMA, prompt="record")
        again = await client.get(result.id)
    for prediction in (result, again):
        assert prediction.input == {"prompt": "record"}
        assert prediction.logs
        assert "Prediction succeeded" in prediction.logs
        assert prediction.predict_time is not None
        assert prediction.predict_time > 0
        assert isinstance(prediction.created_at, datetime)
        assert prediction.created_at.tzinfo is not None
        assert prediction.started_at is not None
        assert prediction.completed_at is not None
        assert prediction.created_at <= prediction.started_at <= prediction.completed_at
        assert prediction.deadline is not None  # predict() sends a Cancel-After
        assert prediction.deadline - prediction.created_at == timedelta(seconds=30)
        assert prediction.data_removed is False
        assert set(prediction.urls) >= {"get", "cancel", "web"}


async def test_list_pages_through_every_prediction_and_filters_by_time() -> None:
    async with Emulator(Scenario(duration=0.0), page_size=2).serve() as emu:
        async with api(emu) as client:
            created = [await client.create(LLAMA, prompt=f"p{n}") for n in range(5)]
            listed = [prediction async for prediction in client.list()]
            assert [p.id for p in listed] == [p.id for p in reversed(created)]
            assert all(p.source == "api" for p in listed)
            middle = created[2].created_at
            assert middle is not None
            later = [p.id async for p in client.list(created_after=middle)]
            earlier = [p.id async for p in client.list(created_before=middle)]
            assert later == [p.id for p in reversed(created[2:])]
            assert earlier == [p.id for p in reversed(created[:2])]
            with pytest.raises(ValueError, match="timezone"):
                client.list(created_after=datetime(2025, 1, 1))


async def test_bad_handles_raise_before_any_request(emulator: Emulator) -> None:
    async with api(emulator) as client:
        for bad in ("", "../v1/x", "a/b", "x" * 500):
            with pytest.raises(ValueError, match="not a prediction id"):
                await client.get(bad)
        with pytest.raises(ValueError, match="webhook"):
            await client.create(LLAMA, prompt="x", webhook="ftp://example.com")
        with pytest.raises(ValueError, match="webhook_events_filter"):
            await client.create(
                LLAMA, prompt="x", webhook="https://example.com/h", webhook_events_filter=["x"]
            )
        with pytest.raises(ValueError, match="cancel_after"):
            await client.create(LLAMA, prompt="x", cancel_after=1)
        with pytest.raises(ResponseStatusError, match="not found"):
            await client.get("doesnotexist")
    assert [r.path for r in emulator.requests] == ["/v1/predictions/doesnotexist"]


# --------------------------------------------------------------------------- community models


async def test_community_models_share_one_lookup_and_official_models_need_none(
    emulator: Emulator,
) -> None:
    emulator.script("hi", Scenario(duration=0.1))
    results: list[Prediction] = []

    async def run(client: ReplicateAPI, model: str) -> None:
        results.append(await client.predict(model, prompt="hi"))

    async with api(emulator) as client:
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(run, client, COMMUNITY)
        await run(client, COMMUNITY)
        await run(client, LLAMA)
    async with api(emulator) as other:
        await run(other, COMMUNITY)
    assert all(result.status == "succeeded" for result in results)
    assert {result.model for result in results} == {COMMUNITY, LLAMA}
    lookups = [r for r in emulator.requests if r.path == f"/v1/models/{COMMUNITY}"]
    assert len(lookups) == 2  # one per client
    assert not [r for r in emulator.requests if r.path == f"/v1/models/{LLAMA}"]
    by_version = [r for r in emulator.requests if r.path == "/v1/predictions"]
    assert len(by_version) == 5


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ("", None),
        ("no progress here\n", None),
        (" 50%|█████     | 5/10 [00:01<00:01]\n", PredictionProgress(0.5, 5, 10)),
        (
            "  0%|          | 0/4\n 25%|██▌       | 1/4\n100%|██████████| 4/4 [00:02]\ndone\n",
            PredictionProgress(1.0, 4, 4),
        ),
        ("  5%|▌ | 1/20\r 10%|█ | 2/20\r", PredictionProgress(0.1, 2, 20)),
    ],
)
def test_progress_is_read_from_the_last_tqdm_line(
    logs: str, expected: PredictionProgress | None
) -> None:
    assert parse_progress(logs) == expected
    assert Prediction("p", "m", None, "processing", logs=logs).progress == expected


@given(st.text())
def test_progress_never_fails_on_any_logs(logs: str) -> None:
    progress = parse_progress(logs)
    assert progress is None or 0.0 <= progress.percentage <= 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=timezone.utc)),
        (
            "2024-02-21T12:54:18.5787610+00:00",
            datetime(2024, 2, 21, 12, 54, 18, 578761, tzinfo=timezone.utc),
        ),
        (
            "2024-01-01T01:00:00.5+01:00",
            datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc),
        ),
        ("2024-13-01T00:00:00Z", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_timestamps_are_read_as_aware_datetimes(text: object, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


async def test_a_fan_out_cell_re_attaches_to_a_running_prediction_by_id(
    emulator: Emulator,
) -> None:
    emulator.script("long", Scenario(duration=30, start_delay=0.01))
    async with api(emulator) as client:
        owned = await client.create(LLAMA, prompt="long")
        theirs = await client.create(LLAMA, prompt="long")
        calls = [
            client._api.call_for(owned.id, owned=True),
            client._api.call_for(theirs.id, owned=False),
        ]
        async with client._fan_out_calls(calls, limit=None, timeout=None) as events:
            async for event in events:
                if isinstance(event, StatusChanged) and event.index == 1:
                    break  # leaving the block abandons both cells
        with anyio.fail_after(5):
            await emulator.wait_for(lambda e: e.stats().cancels == 1)
        assert (await client.get(owned.id)).status == "canceled"
        assert (await client.get(theirs.id)).status == "processing"
    assert emulator.stats().creates == 2  # re-attaching creates nothing


@pytest.mark.slow
async def test_leaving_a_stream_early_leaves_no_generator_to_the_garbage_collector(
    emulator: Emulator,
) -> None:
    """Under trio an unfinished async generator collected later is a ResourceWarning
    (an error here): breaking out of ``generate``/``follow`` mid-stream must finish
    httpx's generators under the event stream (encode/httpx#3686)."""
    emulator.script("long", Scenario(duration=30, start_delay=0.01))
    async with api(emulator) as client:
        async with aclosing(client.generate(LLAMA, prompt="long")) as chunks:
            async for _chunk in chunks:
                break
        created = await client.create(LLAMA, prompt="long")
        async with aclosing(client.follow(created)) as chunks:
            async for _chunk in chunks:
                break
    with anyio.fail_after(5):  # the server notices both streams closed
        await emulator.wait_for(lambda e: e.stats().open_streams == 0)
