"""ReplicateAPI against scripted answers (in-process), and its pure parts.

The same client against the emulator over loopback is in test_api_client.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

import replicate_home
from replicate_home import (
    AuthenticationError,
    InvalidInputError,
    PredictionCanceled,
    PredictionFailed,
    RateLimitError,
    ReplicateAPI,
    ResponseStatusError,
)
from replicate_home._api import ApiService
from replicate_home._api_args import parse_model_ref
from replicate_home._budget import TokenBucket

pytestmark = pytest.mark.anyio

BASE = "http://api.test"
TOKEN = "r8_SECRET_token_value_123"
VERSION = "a" * 64
GEMMA = "google-deepmind/gemma-2b-it"


def prediction(status: str = "starting", output: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "p1",
        "model": "meta/llama",
        "version": VERSION,
        "status": status,
        "output": output,
        "error": None,
        "logs": None,
        "urls": {
            "get": f"{BASE}/v1/predictions/p1",
            "cancel": f"{BASE}/v1/predictions/p1/cancel",
            "stream": f"{BASE}/v1/predictions/p1/stream",
        },
        **extra,
    }


def sse(*events: tuple[str, str]) -> httpx.Response:
    body = "".join(
        f"event: {name}\nid: {n}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
        for n, (name, data) in enumerate(events)
    )
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def answer(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


Route = Callable[[httpx.Request], httpx.Response]


class Api:
    """A scripted API: answers by (method, path suffix), recording every request."""

    def __init__(self, routes: dict[tuple[str, str], list[httpx.Response | Route]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for (method, suffix), answers in self.routes.items():
            if request.method == method and request.url.path.endswith(suffix):
                assert answers, f"no answer left for {method} {request.url.path}"
                reply = answers.pop(0)
                return reply(request) if callable(reply) else reply
        raise AssertionError(f"unexpected {request.method} {request.url}")

    def client(self, **options: Any) -> ReplicateAPI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return ReplicateAPI(TOKEN, base_url=BASE, http_client=http, **options)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


async def generate(api: Api, model: str = "meta/llama", **options: Any) -> list[object]:
    async with api.client(**options) as client:
        return [chunk async for chunk in client.generate(model, prompt="Hi")]


async def test_generate_follows_the_event_stream_with_three_requests() -> None:
    api = Api(
        {
            ("POST", "/v1/models/meta/llama/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [sse(("output", "Hel"), ("output", "lo\nworld"), ("done", "{}"))],
            ("GET", "/v1/predictions/p1"): [answer(prediction("succeeded", ["Hel", "lo\nworld"]))],
        }
    )
    assert await generate(api) == ["Hel", "lo\nworld"]
    assert api.paths() == [
        "POST /v1/models/meta/llama/predictions",
        "GET /v1/predictions/p1/stream",
        "GET /v1/predictions/p1",
    ]
    create, stream, _ = api.requests
    assert "prefer" not in create.headers  # generate wants the stream URL at once
    assert stream.headers["accept"] == "text/event-stream"
    assert json.loads(create.content) == {"input": {"prompt": "Hi"}}


async def test_a_dropped_stream_falls_back_to_polling_without_repeating_chunks() -> None:
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [sse(("output", "Hel"))],  # ends before `done`
            ("GET", "/v1/predictions/p1"): [
                answer(prediction("processing", ["Hel", "lo"])),
                answer(prediction("succeeded", ["Hel", "lo", "!"])),
            ],
        }
    )
    assert await generate(api, poll_interval=0.001) == ["Hel", "lo", "!"]


@pytest.mark.parametrize("status", [500, 404])
async def test_a_stream_that_cannot_be_had_falls_back_to_polling(status: int) -> None:
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [answer({"detail": "nope"}, status)],
            ("GET", "/v1/predictions/p1"): [answer(prediction("succeeded", "whole"))],
        }
    )
    assert await generate(api) == ["whole"]


async def test_a_stream_on_another_host_is_followed_without_the_token() -> None:
    elsewhere = prediction()
    elsewhere["urls"]["stream"] = "https://stream.elsewhere.test/v1/streams/opaque"
    api = Api(
        {
            ("POST", "/predictions"): [answer(elsewhere, 201)],
            ("GET", "/v1/streams/opaque"): [sse(("output", "a"), ("done", "{}"))],
            ("GET", "/v1/predictions/p1"): [answer(prediction("succeeded", ["a"]))],
        }
    )
    assert await generate(api) == ["a"]
    create, stream, final = api.requests
    assert stream.url.host == "stream.elsewhere.test"
    assert "authorization" not in stream.headers
    assert TOKEN not in repr(stream.headers.raw)
    for request in (create, final):
        assert request.url.host == "api.test"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_stream_error_and_done_error_raise_prediction_failed() -> None:
    failed = prediction("failed", ["par"])
    failed["error"] = None  # the error is only in the stream
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [
                sse(("output", "par"), ("error", "CUDA OOM"), ("done", '{"reason": "error"}'))
            ],
            ("GET", "/v1/predictions/p1"): [answer(failed)],
        }
    )
    with pytest.raises(PredictionFailed, match="CUDA OOM"):
        await generate(api)


@pytest.mark.parametrize("status", ["canceled", "aborted"])
async def test_done_canceled_raises_prediction_canceled(status: str) -> None:
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [sse(("done", '{"reason": "canceled"}'))],
            ("GET", "/v1/predictions/p1"): [answer(prediction(status))],
        }
    )
    with pytest.raises(PredictionCanceled, match=status):
        await generate(api)


async def test_predict_waits_on_the_create_and_needs_no_poll() -> None:
    api = Api(
        {("POST", "/v1/predictions"): [answer(prediction("succeeded", ["4"]), 201)]},
    )
    async with api.client(wait=2, timeout=100) as client:
        result = await client.predict(f"meta/llama:{VERSION}", input={"question": "2+2"})
    assert result.text == "4"
    assert result.polls == 0
    (create,) = api.requests
    assert create.headers["prefer"] == "wait=2"
    assert create.headers["cancel-after"] == "100s"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["user-agent"].startswith("replicate-home/")
    assert json.loads(create.content) == {"version": VERSION, "input": {"question": "2+2"}}


async def test_prefer_wait_is_capped_by_the_deadline_and_cancel_after_has_a_floor() -> None:
    api = Api({("POST", "/v1/predictions"): [answer(prediction("succeeded", "x"), 201)]})
    async with api.client(wait=30, timeout=2.5) as client:
        await client.predict(VERSION, prompt="p")
    assert api.requests[0].headers["prefer"] == "wait=3"
    assert api.requests[0].headers["cancel-after"] == "5s"


async def test_wait_none_sends_no_prefer_header() -> None:
    api = Api({("POST", "/predictions"): [answer(prediction("succeeded", "x"), 201)]})
    async with api.client(wait=None) as client:
        await client.predict("meta/llama", prompt="p")
    assert "prefer" not in api.requests[0].headers


async def test_non_text_output_is_yielded_once_as_json_and_files_stay_in_the_output() -> None:
    api = Api(
        {
            ("POST", "/predictions"): [
                answer(prediction("succeeded", {"score": 0.9}), 201),
                answer(prediction("succeeded", "https://x.test/a.wav"), 201),
            ]
        }
    )
    async with api.client() as client:
        assert [c async for c in client.generate("a/b", prompt="p")] == ['{"score": 0.9}']
        audio = await client.predict("a/b", prompt="p")
    assert audio.output == "https://x.test/a.wav"


async def test_real_api_quirks_are_tolerated() -> None:
    body = (
        '{"id": "p1", "status": "starting", "status": "succeeded", "logs": null,'
        ' "output": ["a", "b"], "metrics": {"predict_time": 0.1}, "unknown": [1],'
        ' "urls": {"get": 3}, "model": null, "version": null, "error": null}'
    )
    api = Api({("POST", "/predictions"): [httpx.Response(201, content=body.encode())]})
    async with api.client() as client:
        result = await client.predict("a/b", prompt="p")
    assert result.status == "succeeded"
    assert result.text == "ab"
    assert result.model == "a/b"


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (401, AuthenticationError, "refused the token"),
        (403, AuthenticationError, "refused the token"),
        (422, InvalidInputError, "prompt is required"),
        (404, ResponseStatusError, "model meta/llama not found"),
        (500, ResponseStatusError, "HTTP 500"),
    ],
)
async def test_problem_json_errors(status: int, error: type[Exception], fragment: str) -> None:
    problem = {"title": "Oops", "detail": "prompt is required", "status": status}
    # A 404 on the model route makes the client look the model up (a community model
    # would run by version); an official model's 404 stands.
    official = {"owner": "meta", "name": "llama", "is_official": True, "latest_version": None}
    api = Api(
        {
            ("POST", "/predictions"): [answer(problem, status)],
            ("GET", "/v1/models/meta/llama"): [answer(official, 200)],
        }
    )
    with pytest.raises(error, match=fragment) as caught:
        await generate(api)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    # A create that may have reached the API is never resent.
    assert [r.method for r in api.requests].count("POST") == 1


async def test_422_is_also_a_value_error_with_the_detail() -> None:
    problem = {"title": "Invalid", "detail": "input.steps must be <= 50", "status": 422}
    api = Api({("POST", "/predictions"): [answer(problem, 422)]})
    with pytest.raises(ValueError, match="steps") as caught:
        await generate(api)
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.detail == "input.steps must be <= 50"


async def test_a_404_on_a_poll_names_the_prediction() -> None:
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201)],
            ("GET", "/stream"): [answer({}, 500)],
            ("GET", "/v1/predictions/p1"): [answer({"detail": "gone"}, 404)],
        }
    )
    with pytest.raises(ResponseStatusError, match="prediction p1 not found"):
        await generate(api)


async def test_a_429_pauses_the_whole_bucket_then_the_create_is_retried() -> None:
    api = Api(
        {
            ("POST", "/predictions"): [
                answer({"detail": "slow down"}, 429, **{"retry-after": "0.2"}),
                answer(prediction("succeeded", "ok"), 201),
            ]
        }
    )
    async with api.client() as client:
        started = anyio.current_time()
        result = await client.predict("a/b", prompt="p")
        assert anyio.current_time() - started >= 0.2
    assert result.text == "ok"


@pytest.mark.slow
async def test_rate_limit_error_after_retries_run_out() -> None:
    busy = [answer({"detail": "slow"}, 429, **{"retry-after": "0"}) for _ in range(20)]
    api = Api({("POST", "/predictions"): busy})
    with pytest.raises(RateLimitError):
        await generate(api)


def test_no_token_is_an_authentication_error_before_any_request() -> None:
    with pytest.raises(AuthenticationError, match="REPLICATE_API_TOKEN"):
        ReplicateAPI()
    with pytest.raises(AuthenticationError):
        ReplicateAPI("   ")


def test_token_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:5555/")
    client = ReplicateAPI()
    assert client.base_url == "http://127.0.0.1:5555"
    monkeypatch.delenv("REPLICATE_BASE_URL")
    assert ReplicateAPI().base_url == "https://api.replicate.com"


def test_the_token_is_in_no_repr() -> None:
    client = ReplicateAPI(TOKEN, base_url=BASE)
    service = ApiService(TOKEN, BASE)
    call = service.prepare("meta/llama", None, "p")
    spec = service.create_request(call, remaining=10, wait=None)
    for text in (repr(client), str(client), repr(service), repr(spec), repr(call)):
        assert TOKEN not in text


async def test_the_token_is_in_no_log_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction(), 201), answer({"detail": "no"}, 401)],
            ("GET", "/stream"): [sse(("output", "a"), ("done", "{}"))],
            ("GET", "/v1/predictions/p1"): [answer(prediction("succeeded", ["a"]))],
        }
    )
    async with api.client() as client:
        await client.predict("meta/llama", prompt="p")
        with pytest.raises(AuthenticationError):
            await client.predict("meta/llama", prompt="p")
    assert caplog.records  # the run was logged at DEBUG
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


@pytest.mark.parametrize(
    ("reference", "name", "version"),
    [
        ("meta/meta-llama-3-8b-instruct", "meta/meta-llama-3-8b-instruct", None),
        (f"meta/llama:{VERSION}", "meta/llama", VERSION),
        (VERSION, None, VERSION),
        (
            "gemma-2b",
            "google-deepmind/gemma-2b-it",
            "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626",
        ),
    ],
)
def test_model_references(reference: str, name: str | None, version: str | None) -> None:
    ref = parse_model_ref(reference)
    assert (ref.name, ref.version) == (name, version)


@pytest.mark.parametrize(
    "bad", ["", "llama", "meta/", "/llama", "meta/llama:short", "meta/llama/x", "a b/c", None, 3]
)
def test_malformed_model_references_fail_before_any_request(bad: object) -> None:
    with pytest.raises(ValueError, match="model"):
        parse_model_ref(bad)


def test_inputs_and_prompts() -> None:
    service = ApiService(TOKEN, BASE)
    call = service.prepare("a/b", [{"role": "user", "content": "Hi"}], None, {"steps": 4})
    assert dict(call.input) == {"steps": 4, "prompt": "Hi"}
    assert dict(service.prepare("a/b", None, "P", {"prompt": "x"}).input) == {"prompt": "P"}
    assert dict(service.prepare("a/b", None, None, {"image": "u"}).input) == {"image": "u"}
    with pytest.raises(ValueError, match="messages, prompt or input"):
        service.prepare("a/b", None, None, None)
    with pytest.raises(ValueError, match="JSON"):
        service.prepare("a/b", None, "p", {"x": object()})
    with pytest.raises(ValueError, match="mapping"):
        service.prepare("a/b", None, "p", ["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("wait", [0, -1, 61, float("nan"), "1", True])
def test_wait_is_validated(wait: object) -> None:
    with pytest.raises(ValueError, match="wait"):
        ReplicateAPI(TOKEN, wait=wait)  # type: ignore[arg-type]


def test_token_bucket_holds_one_second_less_its_headroom_and_refills_continuously() -> None:
    now = [0.0]
    bucket = TokenBucket(600, clock=lambda: now[0])  # 10 a second, less 0.2 s: 8 at once
    assert bucket.delay() == 0.0  # one token to start with, not a burst
    assert bucket.delay() == pytest.approx(0.1)
    now[0] += 5.0  # idle: full
    assert [bucket.delay() for _ in range(8)] == [0.0] * 8
    assert bucket.delay() == pytest.approx(0.1)
    now[0] += 0.25
    assert bucket.delay() == 0.0  # 2.5 tokens came back
    assert bucket.delay() == 0.0
    assert bucket.delay() == pytest.approx(0.05)
    bucket.pause(3)
    assert bucket.delay() == pytest.approx(3)
    now[0] += 3.05
    assert bucket.delay() == 0.0  # one token when a pause ends, then at the rate
    assert bucket.delay() == pytest.approx(0.05)
    slow = TokenBucket(30, clock=lambda: now[0])  # one every 2 s: a burst of 1, at 90%
    assert slow.delay() == 0.0
    assert slow.delay() == pytest.approx(2 / 0.9)


@pytest.mark.parametrize("rate", [0, -5, float("inf"), "10"])
def test_token_bucket_rejects_bad_rates(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate)  # type: ignore[arg-type]


async def test_a_stream_replays_from_the_start_so_nothing_is_yielded_twice() -> None:
    api = Api(
        {
            ("POST", "/predictions"): [answer(prediction("processing", ["Hel"]), 201)],
            ("GET", "/stream"): [sse(("output", "Hel"), ("output", "lo"), ("done", "{}"))],
            ("GET", "/v1/predictions/p1"): [answer(prediction("succeeded", ["Hel", "lo"]))],
        }
    )
    assert await generate(api) == ["Hel", "lo"]


@pytest.mark.parametrize(
    ("output", "images"),
    [
        ("https://x.test/out.png", ["https://x.test/out.png"]),
        (["https://x.test/a.webp", "data:image/png;base64,iVBOR"], None),
    ],
)
async def test_image_files_from_any_model_are_an_image_response(
    output: object, images: list[str] | None
) -> None:
    api = Api({("POST", "/predictions"): [answer(prediction("succeeded", output), 201)]})
    async with api.client() as client:
        (result,) = [r async for r in client.generate("someone/new-image-model", prompt="cat")]
    assert isinstance(result, replicate_home.ImageResponse)
    assert result.images == (images or output)
    assert result.alt == "cat"


def test_what_counts_as_image_files() -> None:
    from replicate_home._output import is_image_output

    assert is_image_output("https://x.test/a/b.JPG?sig=1")
    assert is_image_output(["data:image/webp;base64,AAAA"])
    for other in ("https://x.test/a.wav", "A sentence.", [], ["https://x.test/a.png", "text"], 3):
        assert not is_image_output(other)
