"""Tests of the loopback emulator itself, over real HTTP with plain httpx, on asyncio and trio."""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home.emulator import Emulator, EmulatorStats, Fault, RequestRecord, Scenario
from replicate_home.emulator._catalogue import MODELS
from replicate_home.emulator._png import digest_png, encode_png, gradient_png
from replicate_home.emulator._server import serve_forever
from replicate_home.emulator._simulation import Prediction, generate_text, make_prediction_id
from replicate_home.emulator._store import PredictionStore
from replicate_home.emulator._trainings import TrainingTarget

pytestmark = pytest.mark.anyio

TEXT_MODEL = "google-deepmind/gemma-2b-it"
IMAGE_MODEL = "stability-ai/stable-diffusion-3"
ID_PATTERN = re.compile(r"^[a-z2-7]{26}$")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FakeClock:
    """A clock the test moves by hand: progression without sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(model: str = TEXT_MODEL, prompt: str = "Tell me a story", **input: Any) -> dict[str, Any]:
    return {"model": model, "version": MODELS[model].version, "input": {"prompt": prompt, **input}}


@asynccontextmanager
async def served(emulator: Emulator) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    async with (
        emulator.serve() as emu,
        httpx.AsyncClient(base_url=emu.base_url, timeout=5) as client,
    ):
        yield emu, client


async def create(client: httpx.AsyncClient, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/api/prediction", json=body(**kwargs))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


async def poll(client: httpx.AsyncClient, prediction_id: str) -> dict[str, Any]:
    response = await client.get("/api/poll", params={"id": prediction_id})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def parse_iso(value: str) -> datetime:
    assert value.endswith("Z")
    return datetime.fromisoformat(value[:-1] + "+00:00")


async def assert_refused(url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/_emulator/stats")


# --------------------------------------------------------------------------- pure parts


def test_generated_text_is_deterministic_chunked_words() -> None:
    chunks = generate_text(TEXT_MODEL, "Tell me a story")
    assert chunks == generate_text(TEXT_MODEL, "Tell me a story")
    assert chunks != generate_text(TEXT_MODEL, "Another prompt")
    assert 20 <= len(chunks) <= 40
    assert not chunks[0].startswith(" ")
    assert all(chunk.startswith(" ") and chunk.strip() for chunk in chunks[1:])
    text = "".join(chunks)
    assert text[0].isupper()
    assert text.endswith(".")


def test_prediction_ids_look_like_replicate_ids() -> None:
    assert ID_PATTERN.match(make_prediction_id(bytes(range(16))))
    assert make_prediction_id(b"\x01" * 16) == make_prediction_id(b"\x01" * 16)
    with pytest.raises(ValueError, match="16 bytes"):
        make_prediction_id(b"short")


def read_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, width, height, idat = 8, 0, 0, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", payload[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        offset += 12 + length
    assert kind == b"IEND"
    return width, height, zlib.decompress(idat)


def test_png_encoder_produces_valid_deterministic_images() -> None:
    width, height, raw = read_png(encode_png(2, 1, b"\xff\x00\x00\x00\xff\x00"))
    assert (width, height, raw) == (2, 1, b"\x00\xff\x00\x00\x00\xff\x00")
    image = gradient_png("a cat", 0)
    assert image == gradient_png("a cat", 0)
    assert image != gradient_png("a cat", 1)
    width, height, raw = read_png(image)
    assert (width, height, len(raw)) == (64, 64, 64 * (1 + 64 * 3))
    with pytest.raises(ValueError, match="bytes of RGB"):
        encode_png(2, 2, b"")


@given(digest=st.binary(min_size=6, max_size=6), size=st.integers(1, 40))
def test_gradient_pixels_follow_their_formula(digest: bytes, size: int) -> None:
    """The gradient is drawn a diagonal at a time (fast); every pixel is still the blend
    of the digest's two colours by ``x + y`` that the images were always made with."""
    width, height, raw = read_png(digest_png(digest, size))
    assert (width, height) == (size, size)
    span = max(1, 2 * (size - 1))
    expected = bytearray()
    for y in range(size):
        expected.append(0)  # the scanline's filter type
        for x in range(size):
            for a, b in zip(digest[0:3], digest[3:6], strict=True):
                expected.append((a * (span - x - y) + b * (x + y)) // span)
    assert raw == bytes(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": -1}, "duration must not be negative"),
        ({"duration": float("nan")}, "duration must be finite"),
        ({"duration": 1, "start_delay": 2}, "must not exceed"),
        ({"start_delay": -0.1}, "start_delay must not be negative"),
        ({"outcome": "exploded"}, "outcome must be one of"),
        ({"images": -1}, "images must be a non-negative int"),
        ({"output": ["ok", 3]}, "output items must be str"),
        ({"content_type": "a\nb"}, "line breaks"),
        ({"submit_faults": ["503"]}, "submit_faults items must be Fault"),
        ({"poll_faults": [None, 502]}, "poll_faults items must be Fault or None"),
    ],
)
def test_scenario_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "between 100 and 599"),
        ({"status": 600}, "between 100 and 599"),
        ({"status": 100}, "informational"),
        ({"status": 204, "body": "x"}, "must be empty"),
        ({"retry_after": -1}, "must not be negative"),
        ({"retry_after": "1\r\nX: y"}, "line breaks"),
        ({"content_type": "caf\u00e9\u2603"}, "Latin-1"),
    ],
)
def test_fault_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)


def test_scenarios_are_frozen_and_hashable() -> None:
    scenario = Scenario(output=["a", "b"], poll_faults=[None, Fault()])
    assert scenario.output == ("a", "b")
    assert hash(scenario) == hash(Scenario(output=("a", "b"), poll_faults=(None, Fault())))
    assert Scenario(duration=2).effective_start_delay == pytest.approx(0.2)


def test_emulator_argument_validation_and_base_url_outside_serving() -> None:
    with pytest.raises(ValueError, match="max_predictions"):
        Emulator(max_predictions=0)
    with pytest.raises(ValueError, match="expire_after"):
        Emulator(expire_after=-1)
    with pytest.raises(ValueError, match="history"):
        Emulator(history=-1)
    with pytest.raises(RuntimeError, match="not serving"):
        _ = Emulator().base_url


# --------------------------------------------------------------------------- over HTTP


async def test_text_prediction_progresses_with_growing_output() -> None:
    clock = FakeClock()
    scenario = Scenario(duration=10.0, start_delay=2.0)
    async with served(Emulator(scenario, clock=clock)) as (emu, client):
        created = await create(client, extra=1)
        assert ID_PATTERN.match(created["id"])
        assert created["status"] == "starting"
        assert created["output"] is None
        assert created["input"] == {"prompt": "Tell me a story", "extra": 1}
        assert created["started_at"] is None
        assert created["metrics"] == {}
        assert (created["model"], created["version"]) == (TEXT_MODEL, MODELS[TEXT_MODEL].version)
        full = list(generate_text(TEXT_MODEL, "Tell me a story"))

        clock.now += 1.0
        assert (await poll(client, created["id"]))["status"] == "starting"

        clock.now += 1.0  # start_delay reached
        early = await poll(client, created["id"])
        assert early["status"] == "processing"
        assert early["output"] == []
        assert early["started_at"] is not None

        clock.now += 4.0  # halfway through processing
        middle = await poll(client, created["id"])
        assert middle["status"] == "processing"
        assert 0 < len(middle["output"]) < len(full)
        assert middle["output"] == full[: len(middle["output"])]

        clock.now += 4.0
        done = await poll(client, created["id"])
        assert done["status"] == "succeeded"
        assert done["output"] == full
        assert done["error"] is None
        assert done["metrics"] == {"predict_time": 8.0}
        assert "Prediction succeeded" in done["logs"]
        created_at = parse_iso(done["created_at"])
        started = (parse_iso(done["started_at"]) - created_at).total_seconds()
        completed = (parse_iso(done["completed_at"]) - created_at).total_seconds()
        assert started == pytest.approx(2.0, abs=1e-5)
        assert completed == pytest.approx(10.0, abs=1e-5)
        assert emu.polls(created["id"]) == 4
        assert emu.polls("unknown") == 0


async def test_same_prompt_gives_same_text_and_fresh_ids() -> None:
    async with served(Emulator(Scenario(duration=0))) as (_, client):
        first = await create(client)
        second = await create(client)
        assert first["id"] != second["id"]
        done_first = await poll(client, first["id"])
        done_second = await poll(client, second["id"])
        assert done_first["status"] == done_second["status"] == "succeeded"
        assert done_first["output"] == done_second["output"]
        assert "".join(done_first["output"]) == "".join(
            generate_text(TEXT_MODEL, first["input"]["prompt"])
        )


async def test_image_prediction_serves_png_files() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=4.0, images=2), clock=clock)
    async with served(emulator) as (emu, client):
        created = await create(client, model=IMAGE_MODEL, prompt="a red fox")
        clock.now += 2.0
        processing = await poll(client, created["id"])
        assert processing["status"] == "processing"
        assert processing["output"] is None
        file_url = f"{emu.base_url}/_emulator/files/{created['id']}/0.png"
        assert (await client.get(file_url)).status_code == 404  # not produced yet

        clock.now += 2.0
        done = await poll(client, created["id"])
        assert done["status"] == "succeeded"
        assert done["output"] == [
            f"{emu.base_url}/_emulator/files/{created['id']}/{index}.png" for index in range(2)
        ]
        images = []
        for url in done["output"]:
            response = await client.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            images.append(response.content)
        assert images == [gradient_png("a red fox", 0), gradient_png("a red fox", 1)]
        assert read_png(images[0])[:2] == (64, 64)
        assert (await client.get(f"/_emulator/files/{created['id']}/2.png")).status_code == 404
        assert (await client.get("/_emulator/files/nope/0.png")).status_code == 404
        assert emu.requests[-1].prediction_id == "nope"


async def test_failed_canceled_and_output_overrides() -> None:
    clock = FakeClock()
    emulator = Emulator(clock=clock)
    emulator.script("fail", Scenario(duration=1.0, outcome="failed", error="CUDA out of memory"))
    emulator.script("cancel", Scenario(duration=1.0, outcome="canceled"))
    emulator.script("single", Scenario(duration=10.0, start_delay=0.0, output="Hello world!"))
    emulator.script("chunks", Scenario(duration=0.0, output=["a", "b", "c"]))
    emulator.script("url", Scenario(duration=0.0, output="https://example.invalid/x.png"))
    async with served(emulator) as (_, client):
        failed = await create(client, prompt="fail")
        canceled = await create(client, prompt="cancel")
        single = await create(client, prompt="single")
        chunks = await create(client, prompt="chunks")
        url = await create(client, model=IMAGE_MODEL, prompt="url")
        full = len(generate_text(TEXT_MODEL, "fail"))

        clock.now += 5.0
        single_half = await poll(client, single["id"])
        assert single_half["output"] == "Hello "

        clock.now += 5.0
        failed_done = await poll(client, failed["id"])
        assert failed_done["status"] == "failed"
        assert failed_done["error"] == "CUDA out of memory"
        assert 0 < len(failed_done["output"]) < full
        canceled_done = await poll(client, canceled["id"])
        assert canceled_done["status"] == "canceled"
        assert canceled_done["error"] is None
        assert canceled_done["completed_at"] is not None
        assert (await poll(client, single["id"]))["output"] == "Hello world!"
        assert (await poll(client, chunks["id"]))["output"] == ["a", "b", "c"]
        assert (await poll(client, url["id"]))["output"] == "https://example.invalid/x.png"


async def test_create_validation() -> None:
    emulator = Emulator()
    async with served(emulator) as (emu, client):
        cases: list[tuple[bytes | dict[str, Any], int, str]] = [
            (b"{not json", 400, "JSON object"),
            (b"[1, 2]", 400, "JSON object"),
            ({**body(), "model": "owner/unknown"}, 422, "model"),
            ({**body(), "version": "0" * 64}, 422, "version"),
            ({"model": TEXT_MODEL, "input": {"prompt": "x"}}, 422, "version"),
            ({**body(), "input": "prompt"}, 422, "input"),
            ({**body(), "input": {}}, 422, "input.prompt"),
            ({**body(), "input": {"prompt": ""}}, 422, "input.prompt"),
            ({**body(), "input": {"prompt": 3}}, 422, "input.prompt"),
        ]
        for payload, status, word in cases:
            content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            response = await client.post("/api/prediction", content=content)
            assert response.status_code == status, payload
            assert word in response.json()["detail"]
        assert (await client.get("/api/prediction")).status_code == 405
        stats = emu.stats()
        assert (stats.creates, stats.requests) == (0, len(cases) + 1)
        assert all(record.prediction_id is None for record in emu.requests)


async def test_poll_errors() -> None:
    async with served(Emulator()) as (emu, client):
        missing = await client.get("/api/poll")
        assert missing.status_code == 400
        assert "id" in missing.json()["detail"]
        unknown = await client.get("/api/poll", params={"id": "doesnotexist"})
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": "Prediction not found"}
        assert emu.stats().polls == 2
        assert emu.requests[-1].prediction_id == "doesnotexist"


async def test_submit_faults_answer_in_turn_then_create() -> None:
    emulator = Emulator()
    faults = [
        Fault(503, retry_after=2),
        Fault(429, body="slow down", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        Fault(500, body=b"\x00\x01", content_type=None, retry_after=0.5),
    ]
    emulator.script("flaky", Scenario(submit_faults=faults))
    async with served(emulator) as (emu, client):
        assert (await create(client, prompt="other"))["status"] == "starting"
        answers = [await client.post("/api/prediction", json=body(prompt="flaky")) for _ in faults]
        assert [answer.status_code for answer in answers] == [503, 429, 500]
        assert [answer.headers.get("retry-after") for answer in answers] == [
            "2",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "0.5",
        ]
        assert answers[0].headers["content-type"] == "text/plain; charset=utf-8"
        assert answers[1].text == "slow down"
        assert "content-type" not in answers[2].headers
        assert answers[2].content == b"\x00\x01"
        assert (await create(client, prompt="flaky"))["status"] == "starting"
        assert emu.stats().creates == 2
        assert [record.status_code for record in emu.requests] == [201, 503, 429, 500, 201]
        assert [record.prediction_id is None for record in emu.requests] == [
            False,
            True,
            True,
            True,
            False,
        ]

        emulator.script("flaky", Scenario(submit_faults=[Fault(502)]))  # re-scripting restarts
        assert (await client.post("/api/prediction", json=body(prompt="flaky"))).status_code == 502


async def test_poll_faults_by_poll_number() -> None:
    emulator = Emulator()
    emulator.script(
        "bumpy",
        Scenario(
            poll_faults=[
                None,
                Fault(502),
                None,
                Fault(200, body="<html>", content_type="text/html"),
            ]
        ),
    )
    async with served(emulator) as (emu, client):
        created = await create(client, prompt="bumpy")
        answers = [await client.get("/api/poll", params={"id": created["id"]}) for _ in range(5)]
        assert [answer.status_code for answer in answers] == [200, 502, 200, 200, 200]
        assert answers[3].text == "<html>"
        assert answers[3].headers["content-type"] == "text/html"
        assert answers[4].json()["id"] == created["id"]
        assert emu.polls(created["id"]) == 5
        assert emu.stats().polls == 5


async def test_poll_content_type_quirks() -> None:
    emulator = Emulator()
    emulator.script("plain", Scenario(content_type="text/plain"))
    emulator.script("none", Scenario(content_type=None))
    async with served(emulator) as (_, client):
        for prompt, expected in [
            ("plain", "text/plain"),
            ("none", None),
            ("x", "application/json"),
        ]:
            created = await create(client, prompt=prompt)
            answer = await client.get("/api/poll", params={"id": created["id"]})
            assert answer.headers.get("content-type") == expected
            assert json.loads(answer.content)["id"] == created["id"]


async def test_finished_predictions_expire() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), expire_after=10.0, clock=clock)
    async with served(emulator) as (_, client):
        created = await create(client)
        clock.now += 10.9
        assert (await poll(client, created["id"]))["status"] == "succeeded"
        clock.now += 0.1
        assert (await client.get("/api/poll", params={"id": created["id"]})).status_code == 404


async def test_at_most_max_predictions_are_kept() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), max_predictions=2, clock=clock)
    async with served(emulator) as (_, client):
        first = await create(client)
        clock.now += 0.5
        second = await create(client)
        clock.now += 5.0  # both finished; the next create drops the earliest finished
        third = await create(client)
        assert (await client.get("/api/poll", params={"id": first["id"]})).status_code == 404
        assert (await poll(client, second["id"]))["status"] == "succeeded"
        assert (await poll(client, third["id"]))["status"] == "starting"


async def test_stats_in_flight_and_stats_route() -> None:
    clock = FakeClock()
    async with served(Emulator(Scenario(duration=5.0), clock=clock)) as (emu, client):
        for _ in range(3):
            await create(client)
        clock.now += 2.0
        await create(client)
        assert emu.stats() == EmulatorStats(
            creates=4, polls=0, requests=4, in_flight=4, peak_in_flight=4
        )
        clock.now += 4.0
        assert emu.stats().in_flight == 1
        clock.now += 2.0
        answer = await client.get("/_emulator/stats")
        assert answer.json() == asdict(
            EmulatorStats(creates=4, polls=0, requests=4, in_flight=0, peak_in_flight=4)
        )
        assert emu.stats().requests == 5


async def test_request_records_keep_recent_history() -> None:
    clock = FakeClock()
    async with served(Emulator(history=3, clock=clock)) as (emu, client):
        created = await create(client, prompt="recorded")
        clock.now += 1.0
        await client.get("/api/poll", params={"id": created["id"]}, headers={"X-Trace": "abc"})
        await client.get("/_emulator/stats")
        await client.get("/nowhere")
        records = emu.requests
        assert len(records) == 3
        assert emu.stats().requests == 4
        poll_record, stats_record, missing_record = records
        assert isinstance(poll_record, RequestRecord)
        assert (poll_record.method, poll_record.path) == ("GET", "/api/poll")
        assert poll_record.query == f"id={created['id']}"
        assert poll_record.headers["x-trace"] == "abc"
        assert all(name == name.lower() for name in poll_record.headers)
        assert poll_record.prediction_id == created["id"]
        assert poll_record.time == clock.now
        assert (stats_record.path, stats_record.status_code) == ("/_emulator/stats", 200)
        assert (missing_record.path, missing_record.status_code) == ("/nowhere", 404)


async def test_wait_for_wakes_up_after_requests() -> None:
    emulator = Emulator(Scenario(duration=0.0))
    async with served(emulator) as (emu, client), anyio.create_task_group() as tg:
        reached = anyio.Event()

        async def waiter() -> None:
            await emu.wait_for(lambda e: e.stats().creates >= 2)
            reached.set()

        tg.start_soon(waiter)
        with anyio.fail_after(5):
            await create(client)
            assert not reached.is_set()
            created = await create(client)
            await reached.wait()
            await emu.wait_for(lambda e: e.stats().creates == 2)  # already true: returns
            assert (await poll(client, created["id"]))["status"] == "succeeded"  # real clock


async def test_serve_forever_reports_url_and_stops_on_cancel() -> None:
    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, Emulator(), "127.0.0.1", 0, on_ready)
        with anyio.fail_after(5):
            await ready.wait()
        async with httpx.AsyncClient() as client:
            answer = await client.get(urls[0] + "/_emulator/stats")
        assert answer.json()["requests"] == 0
        tg.cancel_scope.cancel()
    await assert_refused(urls[0])


async def test_shutdown_with_open_keep_alive_connection_is_prompt() -> None:
    emulator = Emulator()
    async with httpx.AsyncClient(timeout=5) as client:
        async with emulator.serve() as emu:
            url = emu.base_url
            await client.get(url + "/_emulator/stats")  # leaves a keep-alive connection open
            started = time.monotonic()
        assert time.monotonic() - started < 2.0  # hypercorn's keep-alive timeout is 5 s
        with pytest.raises(httpx.TransportError):
            await client.get(url + "/_emulator/stats")
    await assert_refused(url)


async def test_body_exception_propagates_and_server_stops() -> None:
    emulator = Emulator()
    with pytest.raises(ValueError, match="boom"):  # noqa: PT012
        async with emulator.serve() as emu:
            url = emu.base_url
            raise ValueError("boom")
    await assert_refused(url)
    with pytest.raises(RuntimeError, match="not serving"):
        _ = emulator.base_url


async def test_cancelled_body_stops_server_and_emulator_can_serve_again() -> None:
    emulator = Emulator()
    with anyio.CancelScope() as scope:
        async with emulator.serve() as emu:
            url = emu.base_url
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    await assert_refused(url)
    async with emulator.serve() as emu:
        with pytest.raises(RuntimeError, match="already serving"):
            async with emulator.serve():
                pass
        async with httpx.AsyncClient(base_url=emu.base_url) as client:
            assert (await client.get("/_emulator/stats")).status_code == 200


@pytest.mark.parametrize("bad", [None, "fast", 3])
def test_script_rejects_what_is_not_a_scenario(bad: object) -> None:
    emulator = Emulator()
    with pytest.raises(ValueError, match="Scenario"):
        emulator.script("p", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="str"):
        emulator.script(3, Scenario())  # type: ignore[arg-type]


def _listed(index: int, wall_created: float, **fields: Any) -> Prediction:
    """A text prediction to store, created at ``wall_created`` (Unix time)."""
    return Prediction(
        id=f"p{index}",
        model="m/m",
        version="v",
        kind="text",
        input={},
        prompt="",
        scenario=Scenario(duration=10_000.0),
        created=0.0,
        wall_created=wall_created,
        **fields,
    )


def _reference_page(
    newest_first: list[Any], size: int, cursor: tuple[str, int] | None
) -> tuple[list[Any], bool, bool]:
    """A listing's page as the emulator first computed it: from every prediction kept."""
    if cursor is None:
        page = newest_first[:size]
    elif cursor[0] == "n":
        page = [pred for pred in newest_first if pred.number < cursor[1]][:size]
    else:
        page = [pred for pred in newest_first if pred.number > cursor[1]][-size:]
    if not page:
        return page, False, False
    older = any(pred.number < page[-1].number for pred in newest_first)
    newer = any(pred.number > page[0].number for pred in newest_first)
    return page, older, newer


@given(
    created=st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.booleans()), max_size=40),
    in_order=st.booleans(),
    size=st.integers(1, 6),
    window=st.tuples(st.none() | st.integers(0, 30), st.none() | st.integers(0, 30)),
    web_only=st.booleans(),
    cursor=st.none() | st.tuples(st.sampled_from("np"), st.integers(0, 45)),
)
def test_a_listing_page_is_found_without_walking_every_prediction(
    created: list[tuple[int, bool, bool]],
    in_order: bool,
    size: int,
    window: tuple[int | None, int | None],
    web_only: bool,
    cursor: tuple[str, int] | None,
) -> None:
    """The store's page walk (from the newest, ending at the window's start while creation
    times are in order) answers what filtering every prediction answered."""
    if in_order:
        created = sorted(created)
    store = PredictionStore(expire_after=3600.0, max_predictions=1000)
    for index, (second, web, training) in enumerate(created):
        store.add(
            _listed(
                index,
                1_700_000_000.0 + second,
                source="web" if web else "api",
                training=TrainingTarget("a/b", "v", "w") if training else None,
            ),
            0.0,
        )
    after, before = (None if bound is None else 1_700_000_000.0 + bound for bound in window)

    def keep(pred: Any) -> bool:  # the window's start is before_window's
        return (
            pred.training is None
            and (not web_only or pred.source == "web")
            and (before is None or pred.wall_created < before)
        )

    newest_first = [
        pred
        for pred in store.newest_first()
        if keep(pred) and (after is None or pred.wall_created >= after)
    ]
    expected = _reference_page(newest_first, size, cursor)
    found = store.page(
        size,
        keep,
        older_than=cursor[1] if cursor and cursor[0] == "n" else None,
        newer_than=cursor[1] if cursor and cursor[0] == "p" else None,
        before_window=None if after is None else (lambda pred: pred.wall_created < after),
    )
    assert found == expected


def test_a_listing_page_costs_its_window_not_every_prediction_kept() -> None:
    """A sweep of the recent predictions reads the ones in its window and stops: with
    5,000 kept, the first page of the last 150 created looks at those 150 and one more,
    and the next page at the predictions from the newest to its own end."""
    store = PredictionStore(expire_after=3600.0, max_predictions=10_000)
    for index in range(5000):
        store.add(_listed(index, 1_700_000_000.0 + index), 0.0)
    start = 1_700_000_000.0 + 4850
    looked: list[int] = []

    def keep(pred: Any) -> bool:
        looked.append(pred.number)
        return bool(pred.wall_created >= start)

    def before_window(pred: Any) -> bool:
        return bool(pred.wall_created < start)

    page, older, newer = store.page(100, keep, before_window=before_window)
    assert (len(page), older, newer) == (100, True, False)
    assert len(looked) == 101  # the page and one more, to know there is a next page
    looked.clear()
    page, older, newer = store.page(
        100, keep, older_than=page[-1].number, before_window=before_window
    )
    assert (len(page), older, newer) == (50, False, True)
    assert len(looked) == 150  # the newest 150: the first page's (skipped) and this one's
