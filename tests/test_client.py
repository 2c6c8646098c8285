"""ReplicateHome against the emulator over real loopback sockets, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest

from replicate_home import (
    ClientNotOpenError,
    ConnectionFailed,
    ImageResponse,
    ModelNotSupportedError,
    Prediction,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ReplicateHome,
    ResponseStatusError,
    UnexpectedResponseFormat,
)
from replicate_home.emulator import Emulator, Fault, Scenario

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "Write a short story about a cat in a hat"}]


def client_for(emulator: Emulator, **kwargs: Any) -> ReplicateHome:
    return ReplicateHome(emulator.base_url, **kwargs)


@pytest.mark.slow
async def test_text_streams_while_the_prediction_runs(emulator: Emulator) -> None:
    emulator.script("stream", Scenario(duration=0.6))
    chunks: list[str] = []
    running_when_first_chunk_arrived = None
    async with client_for(emulator, poll_interval=0.02) as client:
        async for chunk in client.generate("gemma-2b", prompt="stream"):
            assert isinstance(chunk, str)
            if not chunks:
                running_when_first_chunk_arrived = emulator.stats().in_flight
            chunks.append(chunk)
        final = await client.predict("gemma-2b", prompt="stream")
    assert running_when_first_chunk_arrived == 1
    assert len(chunks) > 1
    assert "".join(chunks) == final.text  # deterministic for a prompt, exact concatenation


async def test_a_single_string_output_is_one_chunk(emulator: Emulator) -> None:
    emulator.script("whole", Scenario(duration=0.05, output="One whole answer."))
    async with client_for(emulator, poll_interval=0.2) as client:
        chunks = [chunk async for chunk in client.generate("gemma-2b", prompt="whole")]
    assert chunks == ["One whole answer."]


async def test_image_model_yields_one_image_response_with_every_url(emulator: Emulator) -> None:
    emulator.script("A photo of a cat in a hat", Scenario(duration=0.1, images=3))
    messages = [
        {"role": "user", "content": "not this one"},
        {"role": "user", "content": "A photo of a cat in a hat"},
    ]
    async with client_for(emulator) as client:
        results = [item async for item in client.generate("sd-3", messages)]
        (image,) = results
        assert isinstance(image, ImageResponse)
        assert image.alt == "A photo of a cat in a hat"  # image models take the last message
        assert len(image.images) == 3
        async with httpx.AsyncClient() as http:
            for url in image.images:
                response = await http.get(url)
                assert response.headers["content-type"] == "image/png"
                assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


async def test_predict_returns_the_prediction_and_reports_status_changes(
    emulator: Emulator,
) -> None:
    statuses: list[str] = []
    async with client_for(emulator) as client:
        result = await client.predict(
            "gemma-2b", USER, on_status=lambda p: statuses.append(p.status)
        )
    assert isinstance(result, Prediction)
    assert result.status == "succeeded"
    assert result.model == "google-deepmind/gemma-2b-it"
    assert result.version == ReplicateHome.model_versions[result.model]
    assert result.text
    assert result.polls == emulator.polls(result.id) >= 1
    assert result.elapsed > 0
    assert statuses[0] == "starting"
    assert statuses[-1] == "succeeded"
    assert len(statuses) == len(set(statuses))  # reported once per change


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/html; charset=utf-8"])
async def test_json_under_a_wrong_content_type_is_read(
    emulator: Emulator, content_type: str | None
) -> None:
    emulator.script("quirk", Scenario(duration=0.1, content_type=content_type))
    async with client_for(emulator) as client:
        result = await client.predict("gemma-2b", prompt="quirk")
    assert result.status == "succeeded"


async def test_create_async_generator_text_and_image(emulator: Emulator) -> None:
    text = [
        chunk
        async for chunk in ReplicateHome.create_async_generator(
            "gemma-2b", USER, base_url=emulator.base_url, stream=True, temperature=0.5
        )
    ]
    assert text
    assert all(isinstance(chunk, str) for chunk in text)
    images = [
        item
        async for item in ReplicateHome.create_async_generator(
            "stability-ai/stable-diffusion-3",
            USER,
            prompt="explicit prompt wins",
            base_url=emulator.base_url,
        )
    ]
    assert len(images) == 1
    assert isinstance(images[0], ImageResponse)
    assert images[0].alt == "explicit prompt wins"


async def test_create_async_generator_closes_its_http_client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[httpx.AsyncClient] = []
    original = ReplicateHome._new_http_client

    def spy(self: ReplicateHome) -> httpx.AsyncClient:
        made.append(original(self))
        return made[-1]

    monkeypatch.setattr(ReplicateHome, "_new_http_client", spy)
    generator = ReplicateHome.create_async_generator("gemma-2b", USER, base_url=emulator.base_url)
    async with aclosing(generator):
        first = await generator.__anext__()  # the spec's own example: take one chunk
        assert isinstance(first, str)
        assert not made[0].is_closed
    assert made[0].is_closed
    # The same when it runs to the end.
    async for _ in ReplicateHome.create_async_generator(
        "gemma-2b", USER, base_url=emulator.base_url
    ):
        pass
    assert made[1].is_closed


async def test_client_closes_the_http_client_it_owns_and_not_a_given_one(
    emulator: Emulator,
) -> None:
    client = client_for(emulator)
    async with client:
        owned = client._owned_http
        assert owned is not None
        await client.predict("gemma-2b", prompt="hi")
    assert owned.is_closed
    async with httpx.AsyncClient() as given:
        async with ReplicateHome(emulator.base_url, http_client=given) as client:
            await client.predict("gemma-2b", prompt="hi")
        assert not given.is_closed


async def test_calls_outside_async_with_are_refused(emulator: Emulator) -> None:
    client = client_for(emulator)
    with pytest.raises(ClientNotOpenError, match="async with"):
        await client.predict("gemma-2b", prompt="hi")
    with pytest.raises(ClientNotOpenError):
        client.generate("gemma-2b", prompt="hi")
    async with client:
        with pytest.raises(ClientNotOpenError, match="already open"):
            await client.__aenter__()
    assert emulator.stats().requests == 0


async def test_bad_input_fails_before_any_request(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(ModelNotSupportedError):
            client.generate("gpt-4", USER)
        with pytest.raises(ModelNotSupportedError):
            await client.predict("gpt-4", USER)
        with pytest.raises(ValueError, match="messages or prompt"):
            await client.predict("gemma-2b")
        with pytest.raises(ValueError, match="empty"):
            await client.predict("gemma-2b", [])
        with pytest.raises(ValueError, match="prompt is empty"):
            await client.predict("gemma-2b", prompt="  ")
    with pytest.raises(ModelNotSupportedError):
        await ReplicateHome.create_async_generator("nope", USER).__anext__()
    assert emulator.stats().requests == 0


async def test_failed_prediction(emulator: Emulator) -> None:
    emulator.script("fail", Scenario(duration=0.1, outcome="failed", error="NSFW content"))
    async with client_for(emulator) as client:
        with pytest.raises(PredictionFailed, match=r"^Prediction failed: NSFW content$") as caught:
            await client.predict("gemma-2b", prompt="fail")
    assert caught.value.error == "NSFW content"
    assert caught.value.prediction_id
    assert emulator.polls(caught.value.prediction_id) >= 1


async def test_canceled_prediction(emulator: Emulator) -> None:
    emulator.script("cancel", Scenario(duration=0.1, outcome="canceled"))
    async with client_for(emulator) as client:
        with pytest.raises(PredictionCanceled):
            async for _ in client.generate("sdxl", prompt="cancel"):
                pass


async def test_rate_limited_polls_are_retried_after_retry_after(emulator: Emulator) -> None:
    emulator.script(
        "busy",
        Scenario(
            duration=0.1,
            poll_faults=[
                Fault(429, '{"detail": "slow down"}', "application/json", retry_after=0.05),
                Fault(503),
            ],
        ),
    )
    async with client_for(emulator) as client:
        result = await client.predict("gemma-2b", prompt="busy")
    assert result.status == "succeeded"
    assert emulator.polls(result.id) >= 3


async def test_non_json_poll_body_is_an_unexpected_format(emulator: Emulator) -> None:
    html = "<html><body>" + "Bad gateway " * 100 + "</body></html>"
    emulator.script("html", Scenario(duration=5, poll_faults=[Fault(200, html, "text/html")]))
    async with client_for(emulator) as client:
        with pytest.raises(UnexpectedResponseFormat) as caught:
            await client.predict("gemma-2b", prompt="html")
    assert str(caught.value).startswith("Unexpected response format: '<html>")
    assert caught.value.text == html


async def test_server_errors_raise_with_status_and_excerpt(emulator: Emulator) -> None:
    emulator.script(
        "gone",
        Scenario(
            duration=5,
            poll_faults=[Fault(404, '{"detail": "Prediction not found"}', "application/json")],
        ),
    )
    emulator.script("boom", Scenario(submit_faults=[Fault(503, "upstream down")]))
    emulator.script("slow", Scenario(submit_faults=[Fault(429, "", retry_after=0)] * 20))
    async with client_for(emulator) as client:
        with pytest.raises(ResponseStatusError, match="Prediction not found") as caught:
            await client.predict("gemma-2b", prompt="gone")
        assert caught.value.status_code == 404
        with pytest.raises(ResponseStatusError, match="upstream down") as caught:
            await client.predict("gemma-2b", prompt="boom")
        assert caught.value.status_code == 503
        with pytest.raises(RateLimitError):
            await client.predict("gemma-2b", prompt="slow")
    creates = [r for r in emulator.requests if r.method == "POST"]
    assert len([r for r in creates if r.status_code == 503]) == 1  # never re-sent


async def test_unknown_prediction_id_is_a_404(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{emulator.base_url}/api/poll", params={"id": "nope"})
    assert response.status_code == 404


@pytest.mark.slow
async def test_connection_refused_is_connection_failed() -> None:
    async with ReplicateHome() as client:  # the fixture points it at a closed port
        with pytest.raises(ConnectionFailed, match="ConnectError") as caught:
            await client.predict("gemma-2b", prompt="hi")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_deadline_raises_prediction_timeout(emulator: Emulator) -> None:
    emulator.script("long", Scenario(duration=60))
    async with client_for(emulator, timeout=0.3, poll_interval=20) as client:
        started = anyio.current_time()
        with pytest.raises(PredictionTimeout, match=r"^Prediction timed out$"):
            await client.predict("gemma-2b", prompt="long")
        assert anyio.current_time() - started < 3  # the deadline, not the 20 s interval


async def test_cancelling_the_caller_stops_at_once_and_polls_no_more(
    emulator: Emulator, client_tasks: Callable[[], set[int]]
) -> None:
    emulator.script("long", Scenario(duration=60))
    tasks_before = client_tasks()
    async with client_for(emulator, poll_interval=30) as client:
        cancelled_at: list[float] = []
        with anyio.CancelScope() as outer:

            async def cancel_when_created() -> None:
                await emulator.wait_for(lambda e: e.stats().creates >= 1)
                cancelled_at.append(anyio.current_time())
                outer.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(cancel_when_created)
                await client.predict("gemma-2b", prompt="long")
        returned_at = anyio.current_time()
        assert outer.cancelled_caught
        assert returned_at - cancelled_at[0] < 1.0  # far below the 30 s poll interval
    assert emulator.stats().polls == 0
    assert client_tasks() == tasks_before


async def test_cancelling_a_generator_consumer_stops_polling(
    emulator: Emulator, client_tasks: Callable[[], set[int]]
) -> None:
    emulator.script("long", Scenario(duration=2, start_delay=0.01))
    tasks_before = client_tasks()
    async with client_for(emulator, poll_interval=0.01) as client:
        with anyio.CancelScope() as scope:
            async with aclosing(client.generate("gemma-2b", prompt="long")) as chunks:
                async for _ in chunks:
                    scope.cancel()  # cancelled while a chunk is in hand
        (create,) = [r for r in emulator.requests if r.method == "POST"]
        assert create.prediction_id is not None
        polls = emulator.polls(create.prediction_id)
        assert polls >= 1
        # Another prediction takes many poll intervals; the first is polled no more.
        await client.predict("gemma-2b", prompt="another")
        assert emulator.polls(create.prediction_id) == polls
    assert client_tasks() == tasks_before
