"""Bounded under every server: hostile servers on loopback, each in a process of its own
(``tests/hostile_server.py``), against the clients on both backends.

Linear-time streaming, a size limit on every response (peak memory measured), absurd
``Retry-After`` headers, ids that would change the path, echoed credentials, no cancel
after ``done``, and no warning left to the garbage collector.
"""

from __future__ import annotations

import gc
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, aclosing, suppress
from pathlib import Path
from typing import Any

import pytest
from conftest import HostileServer

from replicate_home import (
    ConnectionFailed,
    PredictionFailed,
    PredictionTimeout,
    ReplicateAPI,
    ReplicateHomeError,
    ResponseStatusError,
    ResponseTooLarge,
    UnexpectedResponseFormat,
)
from replicate_home._bounded import DEFAULT_MAX_RESPONSE_BYTES
from replicate_home._service import RequestSpec
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

Start = Callable[[str], AbstractContextManager[HostileServer]]
TOKEN = "r8_hostile_secret_token_0123456789"
TEXT_MODEL = "meta/meta-llama-3-8b-instruct"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def huge(hostile_server: Start) -> Iterator[HostileServer]:
    with hostile_server("huge") as server:
        yield server


def _client(server: HostileServer, **options: Any) -> ReplicateAPI:
    options.setdefault("wait", None)
    options.setdefault("timeout", 20)
    return ReplicateAPI(TOKEN, base_url=server.url, **options)


# -- linear streaming ------------------------------------------------------------------


async def _cpu(server: HostileServer, how: str, count: int) -> float:
    async with _client(server, timeout=120) as client:
        began = time.process_time()
        if how == "generate":
            chunks = [
                chunk async for chunk in client.generate(TEXT_MODEL, prompt=f"events={count}")
            ]
            assert len(chunks) == count
            assert "".join(map(str, chunks)) == "".join(f" w{i}" for i in range(count))
        else:
            prediction = await client.predict(TEXT_MODEL, prompt=f"events={count}")
            assert len(prediction.output) == count
        return time.process_time() - began


async def test_a_long_stream_is_read_whole(hostile_server: Start) -> None:
    with hostile_server("stream") as server:
        await _cpu(server, "generate", 2000)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_generate_reads_16000_events_about_as_fast_as_predict(hostile_server: Start) -> None:
    """Loosely, as a ratio in the same test: generate() yields every chunk, predict()
    keeps the last state; with a per-event cost that grew with the text before it
    (as it did), generate() took minutes here."""
    with hostile_server("stream") as server:
        generate, predict = [], []
        for _ in range(2):
            generate.append(await _cpu(server, "generate", 16000))
            predict.append(await _cpu(server, "predict", 16000))
    assert min(generate) < 1.5 * min(predict), (generate, predict)


# -- bounded memory --------------------------------------------------------------------


def _peak_kib() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+)", status)
    assert match is not None
    return int(match.group(1))


def _reset_peak() -> int:
    """Reset this process's peak RSS to its current RSS (Linux); that RSS, in KiB."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _peak_kib()


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak RSS is measured on Linux"
)


@needs_proc
@pytest.mark.parametrize("kind", ["sized", "chunked", "close", "gzip", "sse-line", "sse-event"])
@pytest.mark.slow
async def test_an_oversized_answer_ends_in_the_limit_error_in_bounded_memory(
    huge: HostileServer, kind: str
) -> None:
    """120 MB bodies, endless bodies (chunked, close-delimited), a gzip bomb (160 MB
    from a few hundred KB), an endless event-stream line and an endless event: each
    stops at the limit, with the client's peak memory growing far less than the body."""
    before = _reset_peak()
    async with _client(huge) as client:
        with pytest.raises(ResponseTooLarge) as caught:
            await client.predict(TEXT_MODEL, prompt=kind)
    grown = (_peak_kib() - before) / 1024
    assert grown < 100, f"peak RSS grew {grown:.0f} MiB"
    error = caught.value
    assert error.limit == DEFAULT_MAX_RESPONSE_BYTES
    assert "max_response_bytes" in str(error)
    assert huge.url in error.url


async def test_the_limit_is_the_client_option(huge: HostileServer) -> None:
    async with _client(huge, max_response_bytes=64 * 1024) as client:
        with pytest.raises(ResponseTooLarge, match="65536 bytes") as caught:
            await client.predict(TEXT_MODEL, prompt="sized")
    assert caught.value.limit == 64 * 1024
    with pytest.raises(ValueError, match="max_response_bytes"):
        ReplicateAPI(TOKEN, max_response_bytes=10)


@needs_proc
async def test_a_huge_error_body_is_cut_for_the_message(huge: HostileServer) -> None:
    before = _reset_peak()
    async with _client(huge) as client:
        with pytest.raises(ResponseStatusError) as caught:
            await client.predict(TEXT_MODEL, prompt="error")
    assert (_peak_kib() - before) / 1024 < 100
    error = caught.value
    assert error.status_code == 500
    assert len(error.body) < 100_000
    assert error.body.endswith("bytes]")


async def test_answers_within_the_limit_are_read_as_before(emulator: Emulator) -> None:
    """Gzip and plain answers of the emulator, read through the bounded reader."""
    async with ReplicateAPI(TOKEN, base_url=emulator.base_url, wait=None) as client:
        prediction = await client.predict(TEXT_MODEL, prompt="Hi")
        chunks = [chunk async for chunk in client.generate(TEXT_MODEL, prompt="Hi")]
    assert prediction.status == "succeeded"
    assert "".join(map(str, chunks)) == prediction.text


# -- no answer disables a client -------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.slow
async def test_an_absurd_retry_after_on_a_poll_leaves_the_client_usable(
    hostile_server: Start,
) -> None:
    with hostile_server("retry-after") as server:
        async with _client(server, timeout=1.0, poll_interval=0.01) as client:
            with pytest.raises(PredictionTimeout):
                await client.predict(TEXT_MODEL, prompt="poll")
            began = time.monotonic()
            after = await client.predict(TEXT_MODEL, prompt="ok")
            assert time.monotonic() - began < 1.0
        log = server.log()
    assert after.status == "succeeded"
    cancels = [entry["path"] for entry in log if entry["path"].endswith("/cancel")]
    assert cancels == ["/v1/predictions/poll-1/cancel"]  # the abandoned one, only


@pytest.mark.timeout(20)
@pytest.mark.slow
async def test_an_absurd_retry_after_on_a_create_leaves_the_client_usable(
    hostile_server: Start,
) -> None:
    with hostile_server("retry-after") as server:
        async with _client(server, timeout=1.0, poll_interval=0.01) as client:
            with pytest.raises(PredictionTimeout):
                await client.predict(TEXT_MODEL, prompt="create")
            began = time.monotonic()
            after = await client.predict(TEXT_MODEL, prompt="create")
            assert time.monotonic() - began < 1.0
    assert after.status == "succeeded"


# -- only typed errors, only intended paths --------------------------------------------


@pytest.mark.parametrize("bad_id", [".", "..", "a/b", "%2e%2e", "..%2Fcancel", "a\x00b"])
@pytest.mark.slow
async def test_an_id_that_is_not_a_path_segment_is_a_format_error(
    hostile_server: Start, bad_id: str
) -> None:
    with hostile_server("ids") as server:
        async with _client(server) as client:
            with pytest.raises(UnexpectedResponseFormat, match="plain path segment"):
                await client.predict(TEXT_MODEL, prompt=bad_id)
        log = server.log()
    assert [(entry["method"], entry["path"]) for entry in log] == [
        ("POST", "/v1/models/meta/meta-llama-3-8b-instruct/predictions")
    ]


async def test_an_answer_url_that_cannot_be_sent_is_a_typed_error() -> None:
    """A same-origin ``urls.get`` with a control character: the call ends typed (or
    polls the prediction's own URL instead), never with a raw httpx error."""
    import httpx

    base = "http://service.test"
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        if request.method == "GET":
            return httpx.Response(200, json={"id": "p1", "status": "succeeded", "output": "x"})
        body = {"id": "p1", "status": "starting", "urls": {"get": f"{base}/v1/predictions/p1\x01x"}}
        return httpx.Response(201, json=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    async with http, ReplicateAPI(TOKEN, base_url=base, http_client=http, wait=None) as client:
        with suppress(ReplicateHomeError):
            await client.predict("black-forest-labs/flux-schnell", prompt="x")
        engine = client._open_engine()
        with pytest.raises(UnexpectedResponseFormat, match="can't send"):
            engine._exchange.build(RequestSpec("GET", f"{base}/v1/predictions/p1\x01x"))
    assert all("\x01" not in url for url in sent)


# -- the token is never shown ----------------------------------------------------------


def _shown(error: BaseException) -> str:
    """Everything an error shows: its message, repr, attributes (and their reprs)."""
    parts = [str(error), repr(error)]
    for value in vars(error).values():
        parts += [str(value), repr(value)]
    return "\n".join(parts)


@pytest.mark.parametrize("kind", ["401", "403", "404", "422", "500", "failed", "escaped", "poll"])
@pytest.mark.slow
async def test_an_echoing_server_never_gets_the_token_shown(
    hostile_server: Start, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with hostile_server("echo") as server:
        async with _client(server, timeout=5) as client:
            with pytest.raises(ReplicateHomeError) as caught:
                await client.predict(TEXT_MODEL, prompt=kind)
        assert any(TOKEN in str(entry["headers"]) for entry in server.log())  # it was sent
    if kind in ("failed", "escaped"):
        assert isinstance(caught.value, PredictionFailed)
        assert "[redacted]" in str(caught.value)
    assert TOKEN not in _shown(caught.value)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


# -- no cancel after a terminal state --------------------------------------------------


@pytest.mark.parametrize("poll", ["500", "reset"])
@pytest.mark.slow
async def test_no_cancel_after_the_stream_said_done(hostile_server: Start, poll: str) -> None:
    with hostile_server("done") as server:
        async with _client(server, timeout=1.0) as client:
            with pytest.raises((ResponseStatusError, ConnectionFailed, PredictionTimeout)):
                await client.predict(TEXT_MODEL, prompt=poll)
        log = server.log()
    assert any(entry["path"].endswith("/stream") for entry in log)
    assert not [entry for entry in log if entry["path"].endswith("/cancel")]


# -- no warnings -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["aclose", "cancel"])
@pytest.mark.slow
async def test_a_stream_cut_short_leaves_nothing_to_the_garbage_collector(how: str) -> None:
    import anyio

    async with Emulator(Scenario(duration=30)).serve() as emulator:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, wait=None) as client:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if how == "aclose":
                    async with aclosing(client.generate(TEXT_MODEL, prompt="Hi")) as chunks:
                        async for _chunk in chunks:
                            break
                else:
                    with anyio.move_on_after(0.5):
                        async for _chunk in client.generate(TEXT_MODEL, prompt="Hi"):
                            pass
                gc.collect()
                await anyio.lowlevel.checkpoint()
                gc.collect()
    assert not [warning for warning in caught if issubclass(warning.category, ResourceWarning)]
