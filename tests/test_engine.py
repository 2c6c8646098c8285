"""The poll loop driven by scripted answers over an in-process transport.

Loopback behaviour is covered in test_client.py; here each answer is chosen exactly, to
pin down retries, error classes, deadlines and the content-type fallback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest

from replicate_home import (
    ConnectionFailed,
    FixedSchedule,
    ImageResponse,
    OutputRewritten,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ResponseStatusError,
    UnexpectedResponseFormat,
)
from replicate_home._engine import Engine
from replicate_home._home import HomeService
from replicate_home._run import run_to_end, stream_chunks
from replicate_home._schedule import RetryPolicy

pytestmark = pytest.mark.anyio

BASE = "http://service.test"
Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def prediction(status: str, output: Any = None, error: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": "p1", "status": status, "output": output, "error": error, **extra}


def ok(body: Any, content_type: str | None = "application/json", status: int = 200) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {} if content_type is None else {"content-type": content_type}
    return httpx.Response(status, content=raw, headers=headers)


class Script:
    """Answers creates and polls from two lists, recording every request."""

    def __init__(self, creates: Iterable[Answer], polls: Iterable[Answer]) -> None:
        self.creates = list(creates)
        self.polls = list(polls)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.creates if request.method == "POST" else self.polls
        assert queue, f"unexpected request {request.method} {request.url}"
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def count(self, method: str) -> int:
        return sum(1 for request in self.requests if request.method == method)


def engine_for(
    script: Script, *, timeout: float = 10, interval: float = 0.001, retries: int = 3
) -> tuple[Engine, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    engine = Engine(
        http,
        HomeService(BASE),
        timeout=timeout,
        schedule=FixedSchedule(interval),
        retry=RetryPolicy(max_retries=retries, initial=0.001, maximum=0.01),
    )
    return engine, http


def call(model: str = "gemma-2b", prompt: str = "Hi") -> Any:
    return HomeService(BASE).prepare(model, None, prompt)


async def run(script: Script, model: str = "gemma-2b", **kwargs: Any) -> list[object]:
    engine, http = engine_for(script, **kwargs)
    async with http, aclosing(stream_chunks(engine, call(model))) as chunks:
        return [chunk async for chunk in chunks]


async def test_create_sends_the_spec_request_and_polls_by_id() -> None:
    script = Script([ok(prediction("starting"))], [ok(prediction("succeeded", ["Hi", "!"]))])
    assert await run(script) == ["Hi", "!"]
    create, poll = script.requests
    assert create.url == f"{BASE}/api/prediction"
    assert json.loads(create.content) == {
        "model": "google-deepmind/gemma-2b-it",
        "version": "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626",
        "input": {"prompt": "Hi"},
    }
    assert create.headers["origin"] == "https://replicate.com"
    assert create.headers["referer"] == "https://replicate.com/"
    assert create.headers["content-type"] == "application/json"
    assert str(poll.url) == f"{BASE}/api/poll?id=p1"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/html; charset=utf-8", "application/octet-stream", "garbage/;;"],
)
async def test_json_under_any_content_type_is_read(content_type: str | None) -> None:
    script = Script(
        [ok(prediction("starting"), content_type)],
        [ok(prediction("succeeded", "done"), content_type)],
    )
    assert await run(script) == ["done"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"", "empty"),
        (b"[]", "array"),
        (json.dumps({"id": "p1"}).encode(), "'status'"),
        (json.dumps({"status": 5}).encode(), "'status'"),
    ],
)
async def test_bad_poll_bodies_raise_unexpected_response_format(body: bytes, reason: str) -> None:
    script = Script([ok(prediction("starting"))], [ok(body, "text/plain")])
    with pytest.raises(UnexpectedResponseFormat, match=reason) as caught:
        await run(script)
    assert str(caught.value).startswith("Unexpected response format: ")


async def test_a_create_answer_without_an_id_is_a_format_error() -> None:
    script = Script([ok({"status": "starting"})], [])
    with pytest.raises(UnexpectedResponseFormat, match="'id'"):
        await run(script)
    assert script.count("GET") == 0


async def test_statuses_unknown_and_processing_keep_polling_and_text_streams() -> None:
    script = Script(
        [ok(prediction("starting"))],
        [
            ok(prediction("queued")),
            ok(prediction("processing", ["Once"])),
            ok(prediction("processing", ["Once", " upon"])),
            ok(prediction("succeeded", ["Once", " upon", " a time"])),
        ],
    )
    assert await run(script) == ["Once", " upon", " a time"]
    assert script.count("GET") == 4


async def test_output_rewritten_while_streaming_is_reported() -> None:
    script = Script(
        [ok(prediction("starting"))],
        [ok(prediction("processing", ["Hello"])), ok(prediction("succeeded", ["Goodbye"]))],
    )
    with pytest.raises(OutputRewritten):
        await run(script)


async def test_non_text_output_is_yielded_once_as_json() -> None:
    script = Script([ok(prediction("starting"))], [ok(prediction("succeeded", {"score": 1}))])
    assert await run(script) == ['{"score": 1}']


async def test_image_prediction_yields_one_response_with_every_url() -> None:
    urls = ["https://x/1.png", "https://x/2.png"]
    script = Script([ok(prediction("starting"))], [ok(prediction("succeeded", urls))])
    (image,) = await run(script, "sd-3")
    assert image == ImageResponse(urls, "Hi")


async def test_failed_raises_with_the_service_error() -> None:
    script = Script(
        [ok(prediction("starting"))], [ok(prediction("failed", ["par"], error="CUDA OOM"))]
    )
    with pytest.raises(PredictionFailed, match=r"^Prediction failed: CUDA OOM$") as caught:
        await run(script)
    assert caught.value.error == "CUDA OOM"
    assert caught.value.prediction_id == "p1"
    assert caught.value.prediction is not None
    assert caught.value.prediction.output == ["par"]


@pytest.mark.parametrize("status", ["canceled", "aborted"])
async def test_canceled_raises(status: str) -> None:
    script = Script([ok(prediction("starting"))], [ok(prediction(status))])
    with pytest.raises(PredictionCanceled, match=status) as caught:
        await run(script)
    assert caught.value.status == status


async def test_no_request_after_a_terminal_status() -> None:
    script = Script([ok(prediction("succeeded", ["fast"]))], [])
    assert await run(script) == ["fast"]
    assert script.count("GET") == 0


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_transient_poll_errors_are_retried(status: int) -> None:
    script = Script(
        [ok(prediction("starting"))],
        [
            ok({"detail": "busy"}, status=status),
            ok(b"", None, status=status),
            ok(prediction("succeeded", "ok")),
        ],
    )
    assert await run(script) == ["ok"]
    assert script.count("GET") == 3


async def test_transient_connection_errors_while_polling_are_retried() -> None:
    script = Script(
        [ok(prediction("starting"))],
        [httpx.ReadError("reset"), httpx.RemoteProtocolError("eof"), ok(prediction("succeeded"))],
    )
    assert await run(script) == []
    assert script.count("GET") == 3


async def test_retries_run_out_with_the_last_error() -> None:
    busy = [ok({"detail": "slow down"}, status=429, content_type="application/json")] * 4
    script = Script([ok(prediction("starting"))], busy)
    with pytest.raises(RateLimitError) as caught:
        await run(script, retries=3)
    assert caught.value.status_code == 429
    assert script.count("GET") == 4


async def test_retry_after_is_honoured() -> None:
    times: list[float] = []

    def busy(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        return httpx.Response(503, headers={"retry-after": "0.2"})

    def done(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        return ok(prediction("succeeded", "ok"))

    script = Script([ok(prediction("starting"))], [busy, done])
    assert await run(script) == ["ok"]
    assert times[1] - times[0] >= 0.2


@pytest.mark.parametrize("status", [400, 401, 404, 500])
async def test_other_poll_errors_raise_at_once(status: int) -> None:
    body = "<html>" + "e" * 5000 + "</html>"
    script = Script([ok(prediction("starting"))], [ok(body.encode(), "text/html", status)])
    with pytest.raises(ResponseStatusError) as caught:
        await run(script)
    error = caught.value
    assert error.status_code == status
    assert not isinstance(error, RateLimitError)
    assert error.body == body
    assert len(str(error)) < 400
    assert script.count("GET") == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_create_that_may_have_reached_the_service_is_never_sent_twice(
    status: int,
) -> None:
    script = Script([ok({"detail": "x"}, status=status)], [])
    with pytest.raises(ResponseStatusError):
        await run(script)
    assert script.count("POST") == 1


async def test_a_create_after_read_error_is_not_resent() -> None:
    script = Script([httpx.ReadError("reset after sending")], [])
    with pytest.raises(ConnectionFailed) as caught:
        await run(script)
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert script.count("POST") == 1


async def test_a_create_is_retried_on_429_and_on_errors_before_sending() -> None:
    script = Script(
        [
            ok({"detail": "slow"}, status=429),
            httpx.ConnectError("refused"),
            ok(prediction("succeeded", "ok")),
        ],
        [],
    )
    assert await run(script) == ["ok"]
    assert script.count("POST") == 3


async def test_deadline_raises_prediction_timeout_promptly() -> None:
    script = Script([ok(prediction("starting"))], [ok(prediction("processing"))] * 100)
    started = anyio.current_time()
    with pytest.raises(PredictionTimeout, match=r"^Prediction timed out$") as caught:
        await run(script, timeout=0.2, interval=30)
    assert anyio.current_time() - started < 5  # not the 30 s poll interval
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.prediction_id == "p1"


async def test_deadline_while_retrying_chains_the_last_failure() -> None:
    script = Script(
        [ok(prediction("starting"))],
        [ok(b"", None, status=503)] + [ok(b"", status=429, content_type=None)] * 100,
    )
    engine, http = engine_for(script, timeout=0.3)
    engine._exchange.retry = RetryPolicy(max_retries=100, initial=0.05, maximum=0.05)
    async with http:
        with pytest.raises(PredictionTimeout) as caught:
            await run_to_end(engine, call())
    assert isinstance(caught.value.__cause__, ResponseStatusError)


async def test_predict_reports_status_changes_and_counts_polls() -> None:
    script = Script(
        [ok(prediction("starting"))],
        [
            ok(prediction("starting")),
            ok(prediction("processing", ["a"])),
            ok(prediction("processing", ["a", "b"])),
            ok(prediction("succeeded", ["a", "b"])),
        ],
    )
    engine, http = engine_for(script)
    seen: list[tuple[str, int]] = []
    async with http:
        result = await run_to_end(
            engine, call(), on_status=lambda p: seen.append((p.status, p.polls))
        )
    assert seen == [("starting", 0), ("processing", 2), ("succeeded", 4)]
    assert result.status == "succeeded"
    assert result.text == "ab"
    assert result.polls == 4
    assert result.elapsed > 0
    assert result.model == "google-deepmind/gemma-2b-it"
