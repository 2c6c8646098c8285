"""ReplicateAPI against the emulator's /v1 over real loopback, on asyncio and trio."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest

import replicate_home
from replicate_home import (
    AuthenticationError,
    Finished,
    ImageResponse,
    PredictionTimeout,
    ReplicateAPI,
    ResponseStatusError,
    StatusChanged,
)
from replicate_home.emulator import Emulator, Fault, Scenario

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
TOKEN = "r8_test_token_do_not_leak"


def api(emulator: Emulator, **options: Any) -> ReplicateAPI:
    return ReplicateAPI(TOKEN, base_url=emulator.base_url, **options)


def requests_for(emulator: Emulator, prediction_id: str) -> list[str]:
    """Every request about one prediction (its create included), as "METHOD path"."""
    return [
        f"{r.method} {r.path}"
        for r in emulator.requests
        if r.prediction_id == prediction_id and r.path.startswith("/v1/")
    ]


async def status_of(emulator: Emulator, prediction_id: str) -> str:
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}) as http:
        response = await http.get(f"{emulator.base_url}/v1/predictions/{prediction_id}")
    return str(response.json()["status"])


def created(emulator: Emulator) -> list[str]:
    return [
        r.prediction_id
        for r in emulator.requests
        if r.method == "POST" and r.path.endswith("/predictions") and r.prediction_id
    ]


async def test_generate_streams_events_with_three_requests(emulator: Emulator) -> None:
    emulator.script("stream", Scenario(duration=0.8))
    chunks: list[str] = []
    in_flight_at_first_chunk = None
    async with api(emulator) as client:
        async for chunk in client.generate(LLAMA, prompt="stream"):
            assert isinstance(chunk, str)
            if not chunks:
                in_flight_at_first_chunk = emulator.stats().in_flight
            chunks.append(chunk)
    (prediction_id,) = created(emulator)
    assert in_flight_at_first_chunk == 1
    assert len(chunks) > 1
    mine = [r for r in emulator.requests if r.prediction_id == prediction_id]
    assert [(r.origin, r.method, r.path.split("/")[2]) for r in mine] == [
        ("main", "POST", "models"),
        ("stream", "GET", "streams"),  # the stream, from the second origin
        ("main", "GET", "predictions"),  # the final state, after `done`
    ]
    stats = emulator.stats()
    assert (stats.stream_requests, stats.stream_connections, stats.polls) == (1, 1, 1)
    # The token went to the API's origin only.
    assert all("authorization" not in r.headers for r in mine if r.origin == "stream")
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in mine if r.origin == "main")
    async with api(emulator) as client:
        final = await client.predict(LLAMA, prompt="stream")
    assert "".join(chunks) == final.text


async def test_predict_on_a_fast_model_needs_no_poll(emulator: Emulator) -> None:
    emulator.script("fast", Scenario(duration=0.2))
    async with api(emulator, wait=2) as client:
        result = await client.predict(LLAMA, prompt="fast")
    assert result.status == "succeeded"
    assert result.polls == 0
    assert requests_for(emulator, result.id) == [f"POST /v1/models/{LLAMA}/predictions"]
    (create,) = [r for r in emulator.requests if r.method == "POST"]
    assert create.headers["prefer"] == "wait=2"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["user-agent"] == f"replicate-home/{replicate_home.__version__}"
    assert create.headers["cancel-after"] == "150s"


async def test_predict_on_a_slower_model_learns_the_end_from_the_stream(
    emulator: Emulator,
) -> None:
    emulator.script("slow", Scenario(duration=1.5))
    async with api(emulator, wait=1, timeout=20) as client:
        result = await client.predict(LLAMA, prompt="slow")
    assert result.status == "succeeded"
    assert len(requests_for(emulator, result.id)) == 3  # create, stream, final state
    (create,) = [r for r in emulator.requests if r.method == "POST"]
    assert create.headers["cancel-after"] == "20s"


async def test_by_version_and_images(emulator: Emulator) -> None:
    emulator.script("cat", Scenario(duration=0.1, images=2, file_output="url"))
    emulator.script("data", Scenario(duration=0.1, file_output="data"))
    async with api(emulator) as client:
        (image,) = [i async for i in client.generate("sd-3", prompt="cat")]
        (inline,) = [
            i async for i in client.generate("black-forest-labs/flux-schnell", prompt="data")
        ]
    assert isinstance(image, ImageResponse)
    assert len(image.images) == 2
    assert all(url.startswith(emulator.base_url) for url in image.images)
    assert isinstance(inline, ImageResponse)
    assert inline.images[0].startswith("data:image/png;base64,")
    posts = [r.path for r in emulator.requests if r.method == "POST"]
    assert posts == ["/v1/predictions", "/v1/models/black-forest-labs/flux-schnell/predictions"]


async def test_quirky_answers_are_read(emulator: Emulator) -> None:
    emulator.script("quirks", Scenario(duration=0.3, quirks=True))
    async with api(emulator) as client:
        result = await client.predict(LLAMA, prompt="quirks")
        chunks = [c async for c in client.generate(LLAMA, prompt="quirks")]
    assert result.status == "succeeded"
    assert "".join(chunks) == result.text


async def test_a_cancelled_caller_returns_at_once_and_the_prediction_is_cancelled(
    emulator: Emulator,
) -> None:
    emulator.script("long", Scenario(duration=30, start_delay=0.01))
    async with api(emulator) as client:
        with anyio.CancelScope() as scope:
            async with aclosing(client.generate(LLAMA, prompt="long")) as chunks:
                async for _ in chunks:
                    cancelled_at = anyio.current_time()
                    scope.cancel()
        assert anyio.current_time() - cancelled_at < 0.5
    # Leaving the client waited for the cancel to be sent.
    (prediction_id,) = created(emulator)
    assert emulator.stats().cancels == 1
    assert await status_of(emulator, prediction_id) == "canceled"


async def test_a_timed_out_prediction_is_cancelled(emulator: Emulator) -> None:
    emulator.script("long", Scenario(duration=30))
    async with api(emulator, timeout=0.5, wait=None) as client:
        with pytest.raises(PredictionTimeout):
            await client.predict(LLAMA, prompt="long")
    (prediction_id,) = created(emulator)
    assert await status_of(emulator, prediction_id) == "canceled"


async def test_leaving_a_fan_out_early_cancels_every_prediction(emulator: Emulator) -> None:
    emulator.script("long", Scenario(duration=30))
    async with api(emulator) as client:
        async with client.fan_out([LLAMA, "sdxl", LLAMA], prompt="long") as events:
            seen = set()
            async for event in events:
                if isinstance(event, StatusChanged):
                    seen.add(event.index)
                if len(seen) == 3:
                    left_at = anyio.current_time()
                    break
        assert anyio.current_time() - left_at < 0.5
    assert emulator.stats().cancels == 3
    for prediction_id in created(emulator):
        assert await status_of(emulator, prediction_id) == "canceled"


async def test_race_losers_are_cancelled_and_the_winner_is_not(emulator: Emulator) -> None:
    emulator.script("p", Scenario(duration=30), model=LLAMA)
    emulator.script("p", Scenario(duration=0.2), model="stability-ai/sdxl")
    async with api(emulator) as client:
        winner = await client.race([LLAMA, "stability-ai/sdxl", LLAMA], prompt="p")
    assert winner.model == "stability-ai/sdxl"
    assert emulator.stats().cancels == 2
    statuses = {pid: await status_of(emulator, pid) for pid in created(emulator)}
    assert statuses.pop(winner.id) == "succeeded"
    assert set(statuses.values()) == {"canceled"}


async def test_a_create_in_flight_is_cancelled_once_it_answers(emulator: Emulator) -> None:
    emulator.script("held", Scenario(duration=30))
    async with api(emulator, wait=1) as client:
        with anyio.CancelScope() as scope:

            async def cancel_once_created() -> None:
                await emulator.wait_for(lambda e: e.stats().creates == 1)
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(cancel_once_created)
                await client.predict(LLAMA, prompt="held")  # held for Prefer: wait=1
        # The caller left while the create was still held; nothing has answered yet.
        assert emulator.stats().cancels == 0
    # Leaving the client waited for the create's answer, then for the cancel.
    assert emulator.stats().cancels == 1
    (prediction_id,) = created(emulator)
    assert await status_of(emulator, prediction_id) == "canceled"


async def test_a_finished_prediction_is_never_cancelled(emulator: Emulator) -> None:
    emulator.script("fail", Scenario(duration=0.1, outcome="failed"))
    async with api(emulator) as client:
        await client.predict(LLAMA, prompt="ok")
        with pytest.raises(replicate_home.PredictionFailed):
            await client.predict(LLAMA, prompt="fail")
        async with client.fan_out([LLAMA, LLAMA], prompt="ok") as events:
            assert len([e async for e in events if isinstance(e, Finished)]) == 2
    assert emulator.stats().cancels == 0


async def test_a_create_is_never_sent_twice(emulator: Emulator) -> None:
    emulator.script("down", Scenario(submit_faults=[Fault(503, '{"detail": "down"}')]))
    emulator.script("busy", Scenario(duration=0.1, submit_faults=[Fault(429, retry_after=0)]))
    async with api(emulator) as client:
        with pytest.raises(ResponseStatusError):
            await client.predict(LLAMA, prompt="down")
        assert await client.predict(LLAMA, prompt="busy")
    posts = [r.status_code for r in emulator.requests if r.method == "POST"]
    assert posts == [503, 429, 201]


@pytest.mark.slow
async def test_the_budget_keeps_a_fan_out_under_the_servers_limit() -> None:
    # The emulator enforces 2 creates a second (a burst of 2); the client paces the same.
    emulator = Emulator(Scenario(duration=0.2), rate_limits=(120, 1200))
    async with emulator.serve():
        async with api(emulator, creates_per_minute=120, requests_per_minute=1200) as client:
            results = await client.compare([LLAMA] * 4, prompt="p")
    assert [r.status for r in results] == ["succeeded"] * 4
    assert emulator.stats().throttled == 0
    assert not [r for r in emulator.requests if r.status_code == 429]


@pytest.mark.slow
async def test_without_the_budget_the_same_fan_out_draws_429s() -> None:
    # The control for the test above: the server's limit is real.
    emulator = Emulator(Scenario(duration=0.2), rate_limits=(120, 1200))
    async with emulator.serve():
        async with api(emulator) as client:  # the default budget: 600 creates a minute
            results = await client.compare([LLAMA] * 4, prompt="p")
    assert [r.status for r in results] == ["succeeded"] * 4  # retried after Retry-After
    assert emulator.stats().throttled > 0


async def test_a_refused_token_never_shows() -> None:
    emulator = Emulator(token="the-right-token")
    async with emulator.serve():
        async with api(emulator) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.predict(LLAMA, prompt="p")
    assert caught.value.status_code == 401
    for text in (str(caught.value), repr(caught.value), repr(client)):
        assert TOKEN not in text
    assert TOKEN not in repr(emulator.requests)


async def test_module_level_fan_out_on_the_api(emulator: Emulator) -> None:
    async with replicate_home.fan_out(
        [LLAMA, "sd-3"], prompt="p", service="api", api_token=TOKEN, base_url=emulator.base_url
    ) as events:
        ends = [e async for e in events if isinstance(e, Finished)]
    assert sorted(e.index for e in ends) == [0, 1]
    with pytest.raises(ValueError, match="service"):
        async with replicate_home.fan_out([LLAMA], prompt="p", service="nope"):  # type: ignore[arg-type]
            pass


async def test_line_breaks_over_the_stream(emulator: Emulator) -> None:
    # SSE splits lines on CR and LF only, so U+2028 and U+0085 are text and survive
    # exactly (httpx-sse >= 0.4.3); an event can't carry CR, so CR and CRLF arrive as LF.
    # Nothing is repeated or lost, and predict() keeps the exact final text.
    tokens = ["First\u2028line", " two\nlines\r\n", " \x85tail\r", "end", ""]
    emulator.script("breaks", Scenario(duration=0.3, output=tokens))
    async with api(emulator) as client:
        chunks = [c async for c in client.generate(LLAMA, prompt="breaks")]
        exact = await client.predict(LLAMA, prompt="breaks")
    assert "".join(chunks) == "First\u2028line two\nlines\n \x85tail\nend"
    assert exact.text == "".join(tokens)
