"""ReplicateAPI follows a stream on a host of its own, as the real API serves them.

A recorded real create (tests/data/replicate_python_create_blocking.json, from
replicate-python's cassettes) is answered by a loopback "API" server whose stream URL
points at a second loopback origin, as ``api.replicate.com`` points at
``streaming-api.svc...replicate.net``. The stream host must never see the token; the
API's own origin must still get it for ``get`` and ``cancel``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from replicate_home import PredictionTimeout, ReplicateAPI
from replicate_home._api import ApiService
from replicate_home._exchange import STREAM_OPEN_TIMEOUT
from replicate_home._models import Prediction
from replicate_home.emulator._server import serving

pytestmark = pytest.mark.anyio

TOKEN = "r8_recorded_SECRET_token"
RECORDED = json.loads(
    (Path(__file__).parent / "data" / "replicate_python_create_blocking.json").read_text("utf-8")
)
REAL_API = "https://api.replicate.com"
REAL_STREAM_HOST = "https://streaming-api.svc.rno2.c.replicate.net"
MODEL = "meta/meta-llama-3-8b-instruct"
OUTPUT: list[str] = RECORDED["response"]["body"]["output"]
PREDICTION_ID: str = RECORDED["response"]["body"]["id"]

StreamBehaviour = Callable[[Request], Response]


@dataclass
class Origins:
    """Two loopback servers, the API and its stream host, and what each received."""

    api_url: str = ""
    stream_url: str = ""
    api_requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    stream_requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    cancelled: anyio.Event = field(default_factory=anyio.Event)
    stream_opened: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)

    def recorded(self, status: str | None = None, output: Any = ...) -> Response:
        """The recorded answer, its origins moved to the loopback servers."""
        body = dict(RECORDED["response"]["body"])
        if status is not None:
            body["status"] = status
        if output is not ...:
            body["output"] = output
        text = json.dumps(body).replace(REAL_API, self.api_url)
        text = text.replace(REAL_STREAM_HOST, self.stream_url)
        return Response(text, media_type="application/json")

    def api_paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.api_requests]


def _headers(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def sse_events(*events: tuple[str, str]) -> bytes:
    return "".join(
        f"event: {name}\nid: {n}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
        for n, (name, data) in enumerate(events)
    ).encode()


def full_stream(request: Request) -> Response:
    events = [("output", chunk) for chunk in OUTPUT] + [("done", "{}")]
    return Response(sse_events(*events), media_type="text/event-stream")


@asynccontextmanager
async def two_origins(stream: StreamBehaviour) -> AsyncIterator[Origins]:
    origins = Origins()

    async def create(request: Request) -> Response:
        origins.api_requests.append(("POST", request.url.path, _headers(request)))
        answer = origins.recorded()
        answer.status_code = 201
        return answer

    async def get(request: Request) -> Response:
        origins.api_requests.append(("GET", request.url.path, _headers(request)))
        return origins.recorded("canceled" if origins.cancelled.is_set() else "succeeded")

    async def cancel(request: Request) -> Response:
        origins.api_requests.append(("POST", request.url.path, _headers(request)))
        origins.cancelled.set()
        return origins.recorded("canceled")

    async def stream_route(request: Request) -> Response:
        origins.stream_requests.append(("GET", request.url.path, _headers(request)))
        origins.stream_opened.set()
        return stream(request)

    api = Starlette(
        routes=[
            Route(f"/v1/models/{MODEL}/predictions", create, methods=["POST"]),
            Route("/v1/predictions/{id}", get, methods=["GET"]),
            Route("/v1/predictions/{id}/cancel", cancel, methods=["POST"]),
        ]
    )
    streams = Starlette(routes=[Route("/v1/streams/{key}", stream_route, methods=["GET"])])
    async with serving(api) as api_url, serving(streams) as stream_url:
        origins.api_url, origins.stream_url = api_url, stream_url
        try:
            yield origins
        finally:
            origins.release.set()


def client(origins: Origins, **options: Any) -> ReplicateAPI:
    return ReplicateAPI(TOKEN, base_url=origins.api_url, **options)


def assert_no_credentials(origins: Origins) -> None:
    assert origins.stream_requests, "the stream was never opened"
    for _, _, headers in origins.stream_requests:
        assert "authorization" not in headers
        assert "cookie" not in headers
        assert TOKEN not in json.dumps(headers)


async def test_the_recorded_create_streams_from_its_own_host_without_the_token() -> None:
    async with two_origins(full_stream) as origins, client(origins) as api:
        chunks = [chunk async for chunk in api.generate(MODEL, prompt="haiku")]
    assert "".join(map(str, chunks)) == "".join(OUTPUT)
    assert [path for _, path, _ in origins.stream_requests] == [
        "/v1/streams/b4yonjrmynb65tnkucuqc4duawdekslfzexk5itczufef2u36b7a"
    ]
    assert_no_credentials(origins)
    assert origins.stream_requests[0][2]["accept"] == "text/event-stream"
    # The API's own origin: the create, then the final state after `done`, no poll before.
    assert origins.api_paths() == [
        f"POST /v1/models/{MODEL}/predictions",
        f"GET /v1/predictions/{PREDICTION_ID}",
    ]
    for _, _, headers in origins.api_requests:
        assert headers["authorization"] == f"Bearer {TOKEN}"


async def test_an_abandoned_stream_is_cancelled_on_the_api_with_the_token() -> None:
    def endless(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield sse_events(*[("output", chunk) for chunk in OUTPUT[:2]])
            await origins_ref[0].release.wait()

        return StreamingResponse(events(), media_type="text/event-stream")

    origins_ref: list[Origins] = []
    async with two_origins(endless) as origins:
        origins_ref.append(origins)
        async with client(origins) as api:

            async def consume() -> None:
                async for _chunk in api.generate(MODEL, prompt="haiku"):
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                with anyio.fail_after(5):
                    await origins.stream_opened.wait()
                tg.cancel_scope.cancel()  # the caller gives up while the stream is open
            with anyio.fail_after(5):
                await origins.cancelled.wait()
    assert_no_credentials(origins)
    method, path, headers = origins.api_requests[-1]
    assert (method, path) == ("POST", f"/v1/predictions/{PREDICTION_ID}/cancel")
    assert headers["authorization"] == f"Bearer {TOKEN}"


async def test_the_deadline_holds_while_following_a_stream_elsewhere() -> None:
    def silent(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b": nothing yet\n\n"
            await origins_ref[0].release.wait()

        return StreamingResponse(events(), media_type="text/event-stream")

    origins_ref: list[Origins] = []
    async with two_origins(silent) as origins:
        origins_ref.append(origins)
        async with client(origins, timeout=0.5, wait=None) as api:
            with pytest.raises(PredictionTimeout):
                await api.predict(MODEL, prompt="haiku")
            with anyio.fail_after(5):
                await origins.cancelled.wait()
    assert_no_credentials(origins)


@pytest.mark.parametrize("origin", ["silent", "https on a plain-http port"])
async def test_a_stream_origin_that_never_answers_is_left_for_polling(origin: str) -> None:
    # The stream's origin accepts the connection and never answers it (a silent socket,
    # or a TLS handshake a plain-HTTP server never completes). Opening the stream has
    # STREAM_OPEN_TIMEOUT; then the call polls, and the prediction ends well within a
    # deadline a stream left open would have run into.
    connected = anyio.Event()
    release = anyio.Event()

    async def hold(connection: anyio.abc.SocketStream) -> None:
        async with connection:
            connected.set()
            await release.wait()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, hold)
        try:
            async with two_origins(full_stream) as origins:
                if origin == "silent":
                    origins.stream_url = f"http://127.0.0.1:{port}"
                else:
                    origins.stream_url = origins.api_url.replace("http://", "https://")
                timeout = STREAM_OPEN_TIMEOUT + 3.0
                async with client(origins, timeout=timeout, wait=None) as api:
                    prediction = await api.predict(MODEL, prompt="haiku")
        finally:
            release.set()
            group.cancel_scope.cancel()
    assert prediction.status == "succeeded"
    assert prediction.text == "".join(OUTPUT)
    assert origins.api_paths()[-1] == f"GET /v1/predictions/{PREDICTION_ID}"
    if origin == "silent":
        assert connected.is_set()


@pytest.mark.parametrize("status", [401, 403, 404, 500])
async def test_a_stream_host_that_refuses_falls_back_to_polling(status: int) -> None:
    def refuse(request: Request) -> Response:
        return Response(json.dumps({"detail": "no"}), status, media_type="application/json")

    async with two_origins(refuse) as origins, client(origins, wait=None) as api:
        prediction = await api.predict(MODEL, prompt="haiku")
    assert prediction.text == "".join(OUTPUT)
    assert_no_credentials(origins)
    assert origins.api_paths()[-1] == f"GET /v1/predictions/{PREDICTION_ID}"


async def test_a_stream_host_that_drops_falls_back_to_polling() -> None:
    def drop(request: Request) -> Response:
        return Response(
            sse_events(*[("output", chunk) for chunk in OUTPUT[:3]]), media_type="text/event-stream"
        )

    async with two_origins(drop) as origins, client(origins) as api:
        chunks = [chunk async for chunk in api.generate(MODEL, prompt="haiku")]
    assert "".join(map(str, chunks)) == "".join(OUTPUT)
    assert origins.api_paths()[-1] == f"GET /v1/predictions/{PREDICTION_ID}"


async def test_a_redirect_from_the_stream_host_is_not_followed() -> None:
    def redirect(request: Request) -> Response:
        return RedirectResponse(f"{origins_ref[0].api_url}/v1/predictions/{PREDICTION_ID}", 307)

    origins_ref: list[Origins] = []
    async with two_origins(redirect) as origins:
        origins_ref.append(origins)
        http = httpx.AsyncClient(follow_redirects=True)
        async with http, client(origins, http_client=http, wait=None) as api:
            prediction = await api.predict(MODEL, prompt="haiku")
    assert prediction.text == "".join(OUTPUT)
    assert len(origins.stream_requests) == 1
    # One GET only: the poll after the refused stream, not the redirect's target.
    assert origins.api_paths().count(f"GET /v1/predictions/{PREDICTION_ID}") == 1


async def test_credentials_a_supplied_http_client_adds_never_reach_the_stream_host() -> None:
    async with two_origins(full_stream) as origins:
        http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {TOKEN}"},
            cookies={"session": "secret"},
            auth=httpx.BasicAuth("user", "password"),
        )
        async with http, client(origins, http_client=http) as api:
            chunks = [chunk async for chunk in api.generate(MODEL, prompt="haiku")]
    assert "".join(map(str, chunks)) == "".join(OUTPUT)
    assert_no_credentials(origins)


def _prediction(stream: str) -> Prediction:
    return Prediction(
        id="p1", model=MODEL, version=None, status="starting", urls={"stream": stream}
    )


@pytest.mark.parametrize(
    ("base", "stream", "anonymous"),
    [
        ("https://api.test", "https://api.test/v1/predictions/p1/stream", False),
        ("https://api.test", "https://API.test:443/v1/predictions/p1/stream", False),
        ("https://api.test", "https://streams.test/v1/streams/abc", True),
        ("https://api.test", "https://api.test:8443/v1/streams/abc", True),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001/v1/streams/abc", True),
    ],
)
def test_only_the_apis_own_origin_gets_the_token(base: str, stream: str, anonymous: bool) -> None:
    spec = ApiService(TOKEN, base).stream_request(_prediction(stream))
    assert spec is not None
    assert spec.anonymous is anonymous
    assert ("authorization" in spec.headers) is not anonymous
    assert spec.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    "stream",
    [
        "http://streams.test/v1/streams/abc",  # plain http from an https API
        "ftp://streams.test/v1/streams/abc",
        "https://user:pass@streams.test/v1/streams/abc",
        "https:///v1/streams/abc",
        "https://streams.test:99999/v1/streams/abc",
        "/v1/streams/abc",
    ],
)
def test_unacceptable_stream_urls_are_polled_instead(stream: str) -> None:
    assert ApiService(TOKEN, "https://api.test").stream_request(_prediction(stream)) is None


_SCHEMES = st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript", ""])
_HOSTS = st.sampled_from(["api.test", "API.test", "streams.test", "api.test.evil", "127.0.0.1", ""])
_PORTS = st.sampled_from(["", ":443", ":80", ":8443", ":0", ":99999", ":x"])
_USERINFO = st.sampled_from(["", "user@", "user:pass@", "api.test@"])


@given(
    scheme=_SCHEMES,
    userinfo=_USERINFO,
    host=_HOSTS,
    port=_PORTS,
    path=st.text(max_size=30),
    junk=st.one_of(st.none(), st.text(max_size=60)),
)
def test_the_token_only_ever_goes_to_the_apis_own_origin(
    scheme: str, userinfo: str, host: str, port: str, path: str, junk: str | None
) -> None:
    url = junk if junk is not None else f"{scheme}://{userinfo}{host}{port}/{path}"
    spec = ApiService(TOKEN, "https://api.test").stream_request(_prediction(url))
    if spec is None:
        return
    sent = httpx.URL(spec.url)  # as it would be sent
    assert sent.scheme == "https"  # never downgraded from the API's https
    assert not sent.userinfo
    if "authorization" in spec.headers:
        assert not spec.anonymous
        assert (sent.host, sent.port or 443) == ("api.test", 443)
    else:
        assert spec.anonymous
        assert TOKEN not in repr(dict(spec.headers))
