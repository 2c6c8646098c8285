"""The emulator's ``/v1`` API (Replicate's HTTP API) over real loopback, on asyncio and trio.

Plain httpx checks every route and behaviour; then the official ``replicate`` client
(1.0.7, unchanged) runs against the emulator: its sync API in a worker thread (the
emulator serves from the test's event loop), its async API under asyncio only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx
import pytest
import replicate

from replicate_home.emulator import Emulator, Fault, Scenario
from replicate_home.emulator import _simulation as simulation
from replicate_home.emulator._api_rules import (
    TokenBucket,
    decode_cursor,
    encode_cursor,
    format_event,
    parse_cancel_after,
    parse_prefer_wait,
)
from replicate_home.emulator._catalogue import MODELS
from replicate_home.emulator._png import gradient_png
from replicate_home.emulator._simulation import StreamEvent, generate_text

pytestmark = pytest.mark.anyio

TOKEN = "t"
LLAMA = "meta/meta-llama-3-8b-instruct"
SDXL = "stability-ai/sdxl"
GEMMA = "google-deepmind/gemma-2b-it"
ID_PATTERN = re.compile(r"^[a-z2-7]{26}$")
PROBLEM_KEYS = {"title", "detail", "status"}


class FakeClock:
    """A clock the test moves by hand: progression without sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def text_of(model: str, prompt: str) -> str:
    return "".join(generate_text(model, prompt))


@asynccontextmanager
async def served(
    emulator: Emulator, token: str | None = TOKEN
) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        emulator.serve() as emu,
        httpx.AsyncClient(base_url=emu.base_url, headers=headers, timeout=5) as client,
    ):
        yield emu, client


async def create(
    client: httpx.AsyncClient,
    prompt: str = "Tell me a story",
    model: str = LLAMA,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"input": {"prompt": prompt}, **fields}
    response = await client.post(f"/v1/models/{model}/predictions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


async def get(client: httpx.AsyncClient, prediction_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/predictions/{prediction_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    return body


def parse_sse(text: str) -> list[dict[str, str]]:
    """Server-sent events per the spec: fields per block, ``data`` lines joined by ``\\n``."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        if not block:
            continue
        event: dict[str, Any] = {"data": []}
        for line in re.split(r"\r\n|\r|\n", block):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                event["data"].append(value)
            else:
                event[name] = value
        event["data"] = "\n".join(event["data"])
        events.append(event)
    return events


class EventReader:
    """Reads one server-sent event at a time from a streamed httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, str]:
        lines: list[str] = []
        async for line in self._lines:
            if line == "":
                if lines:
                    return parse_sse("\n".join(lines))[0]
                continue
            lines.append(line)
        raise EOFError("the stream ended")

    async def rest(self) -> list[dict[str, str]]:
        events = []
        while True:
            try:
                events.append(await self.next())
            except EOFError:
                return events


# --------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5s", 5), ("5", 5), ("90", 90), ("1m30s", 90), ("2h", 7200), ("1.5m", 90), ("6000ms", 6)],
)
def test_cancel_after_durations(value: str, seconds: float) -> None:
    assert parse_cancel_after(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["4s", "4.9", "0", "", "abc", "5 s", "-10s", "1d", "s"])
def test_cancel_after_rejects_short_or_malformed(value: str) -> None:
    with pytest.raises(ValueError, match="Cancel-After"):
        parse_cancel_after(value)


def test_prefer_wait_grammar() -> None:
    assert parse_prefer_wait(None) is None
    assert parse_prefer_wait("wait") == 60
    assert parse_prefer_wait("wait=5") == 5
    assert parse_prefer_wait("respond-async, wait=10") == 10
    assert parse_prefer_wait("respond-async") is None
    for bad in ("wait=0", "wait=61", "wait=abc", "wait=1.5"):
        with pytest.raises(ValueError, match="wait"):
            parse_prefer_wait(bad)


def test_token_bucket_bursts_then_refills() -> None:
    bucket = TokenBucket(120)  # 2 a second, burst of 2
    assert [bucket.take(0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0  # refilled, but never beyond the burst
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.0) > 0


def test_cursors_and_event_format() -> None:
    assert decode_cursor(encode_cursor("n", 42)) == ("n", 42)
    for bad in ("???", encode_cursor("x", 1), "", "bjp4"):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(bad)
    wire = format_event(StreamEvent(3, "output", "one\r\ntwo\n"))
    assert wire == b"event: output\nid: 3\ndata: one\ndata: two\ndata: \n\n"
    assert parse_sse(wire.decode()) == [{"event": "output", "id": "3", "data": "one\ntwo\n"}]


def test_emulator_and_scenario_argument_validation() -> None:
    for token in ("", " t", 3):
        with pytest.raises(ValueError, match="token"):
            Emulator(token=token)  # type: ignore[arg-type]
    for limits in ((1,), (0, 5), (5, "x"), [1, 2]):
        with pytest.raises(ValueError, match="rate"):
            Emulator(rate_limits=limits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_size"):
        Emulator(page_size=0)
    with pytest.raises(ValueError, match="file_output"):
        Scenario(file_output="inline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quirks"):
        Scenario(quirks=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- auth and errors


async def test_every_route_wants_a_token() -> None:
    routes = [
        ("POST", f"/v1/models/{LLAMA}/predictions"),
        ("POST", "/v1/predictions"),
        ("GET", "/v1/predictions"),
        ("GET", "/v1/predictions/abc"),
        ("POST", "/v1/predictions/abc/cancel"),
        ("GET", f"/v1/models/{LLAMA}"),
        ("GET", f"/v1/models/{LLAMA}/versions"),
        ("GET", f"/v1/models/{LLAMA}/versions/abc"),
    ]
    missing = {
        "title": "Unauthenticated",
        "detail": "You did not pass an authentication token",
        "status": 401,
    }
    async with served(Emulator(token="s3cret"), token=None) as (emu, client):
        for method, path in routes:
            for headers in (
                {},
                {"Authorization": ""},
                {"Authorization": "Bearer"},
                {"Authorization": "Token"},
            ):
                response = await client.request(method, path, headers=headers)
                assert_problem(response, 401)
                assert response.json() == missing
                assert response.headers["www-authenticate"] == "Bearer"
            for wrong in ("Bearer nope", "Token nope", "Basic s3cret", "s3cret"):
                response = await client.request(method, path, headers={"Authorization": wrong})
                assert_problem(response, 401, "valid authentication token")
                assert "nope" not in response.text
                assert "s3cret" not in response.text
        # Both schemes the real API accepts, the scheme in any case.
        for good in ("Token s3cret", "token s3cret", "Bearer s3cret"):
            response = await client.get(f"/v1/models/{LLAMA}", headers={"Authorization": good})
            assert response.status_code == 200
        # The homepage routes want no token.
        homepage = await client.post(
            "/api/prediction",
            json={"model": GEMMA, "version": MODELS[GEMMA].version, "input": {"prompt": "x"}},
        )
        assert homepage.status_code == 201
        assert emu.stats().creates == 1

        record = emu.requests[-2]
        assert record.headers["authorization"] == "Bearer s3cret"  # kept for tests to check
        for shown in (repr(record), str(record), repr(record.headers)):
            assert "s3cret" not in shown
            assert "'authorization': 'Bearer ***'" in shown


async def test_any_token_is_accepted_without_a_configured_one() -> None:
    async with served(Emulator(), token="whatever-123") as (_, client):
        assert (await client.get("/v1/predictions")).status_code == 200


async def test_unknown_routes_and_predictions_are_404_problems() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), expire_after=10.0, clock=clock)
    async with served(emulator) as (emu, client):
        for method, path in [
            ("GET", "/v1/predictions/doesnotexist"),
            ("POST", "/v1/predictions/doesnotexist/cancel"),
        ]:
            assert_problem(await client.request(method, path), 404, "Prediction not found")
        assert emu.requests[-1].prediction_id == "doesnotexist"
        assert_problem(await client.get("/v1/nowhere"), 404, "/v1/nowhere")
        not_allowed = await client.delete("/v1/predictions")
        assert_problem(not_allowed, 405, "DELETE")
        assert set(not_allowed.headers["allow"].split(", ")) >= {"GET", "POST"}
        assert (await client.get("/nowhere")).status_code == 404  # not a problem outside /v1
        assert_problem(await client.get("/v1/models/-bad/name"), 404, "Model not found")
        assert emu.stats().polls == 1
        assert emu.stats().cancels == 1

        created = await create(client)
        clock.now += 10.9
        assert (await get(client, created["id"]))["status"] == "succeeded"
        clock.now += 0.1  # expired: 10 s after completion
        assert_problem(await client.get(f"/v1/predictions/{created['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, ["JSON object"]),
        (b"[1, 2]", 422, ["JSON object"]),
        ({}, 422, ["input"]),
        # The real API's words: "- input: Invalid type. Expected: object, given: string".
        ({"input": "a cat"}, 422, ["input: Invalid type. Expected: object, given: string"]),
        ({"input": {}}, 422, ["input: prompt is required"]),
        ({"input": {"prompt": 3}}, 422, ["input.prompt: Invalid type", "given: integer"]),
        ({"input": {"prompt": None}}, 422, ["input.prompt", "given: null"]),
        ({"input": {"prompt": "x"}, "stream": "yes"}, 422, ["stream"]),
        ({"input": {"prompt": "x"}, "webhook": 5}, 422, ["webhook"]),
        ({"input": {"prompt": "x"}, "webhook_events_filter": ["sometimes"]}, 422, ["webhook"]),
    ],
)
async def test_bad_creates_are_problems_naming_the_field(
    body: bytes | dict[str, Any], status: int, words: list[str]
) -> None:
    async with served(Emulator()) as (emu, client):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        for path in (f"/v1/models/{LLAMA}/predictions", "/v1/predictions"):
            if path == "/v1/predictions" and isinstance(body, dict):
                content = json.dumps({**body, "version": sha256_hex(SDXL)}).encode()
            assert_problem(await client.post(path, content=content), status, *words)
        assert emu.stats().creates == 0
        assert all(record.prediction_id is None for record in emu.requests)


# --------------------------------------------------------------------------- predictions


async def test_a_create_with_a_field_the_api_does_not_know_is_refused() -> None:
    async with served(Emulator(Scenario(duration=0.1))) as (_, client):
        body = {"input": {"prompt": "hi"}, "extra": 1}
        refused = await client.post(f"/v1/models/{LLAMA}/predictions", json=body)
        (field,) = assert_problem(refused, 422, "extra")["invalid_fields"]
        assert field["type"] == "additional_property_not_allowed"
        by_model = {"input": {"prompt": "hi"}, "version": "x"}  # the model route has none
        assert_problem(await client.post(f"/v1/models/{LLAMA}/predictions", json=by_model), 422)
        legacy = {"input": {"prompt": "hi"}, "webhook_completed": "https://example.com/h"}
        accepted = await client.post(f"/v1/models/{LLAMA}/predictions", json=legacy)
        assert accepted.status_code == 201


async def test_create_by_model_then_poll_a_text_prediction() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=10.0, start_delay=2.0), clock=clock)
    async with served(emulator) as (emu, client):
        created = await create(client, stream=True, webhook="https://example.com/hook")
        prediction_id = created["id"]
        assert ID_PATTERN.match(prediction_id)
        base = emu.base_url
        stream_url = created["urls"]["stream"]
        assert re.fullmatch(rf"{emu.stream_url}/v1/streams/[a-z2-7]{{52}}", stream_url)
        assert created == {
            "id": prediction_id,
            "model": LLAMA,
            "version": "hidden",  # an official model run by name, as the real API says
            "input": {"prompt": "Tell me a story"},
            "logs": "",
            "output": None,
            "error": None,
            "status": "starting",
            "created_at": created["created_at"],
            # No started_at/completed_at until they happen: the real API leaves them out.
            "metrics": {},
            "source": "api",
            "data_removed": False,
            "webhook": "https://example.com/hook",  # shown, as a webhook body shows it
            "urls": {
                "cancel": f"{base}/v1/predictions/{prediction_id}/cancel",
                "get": f"{base}/v1/predictions/{prediction_id}",
                "stream": stream_url,
                "web": f"{base}/p/{prediction_id}",
            },
        }
        full = list(generate_text(LLAMA, "Tell me a story"))
        clock.now += 6.0  # halfway through processing
        middle = await get(client, prediction_id)
        assert middle["status"] == "processing"
        assert middle["started_at"] is not None
        assert 0 < len(middle["output"]) < len(full)
        assert middle["output"] == full[: len(middle["output"])]
        clock.now += 4.0
        done = await get(client, prediction_id)
        assert (done["status"], done["output"], done["error"]) == ("succeeded", full, None)
        assert done["metrics"] == {"predict_time": 8.0, "total_time": 10.0}
        assert done["completed_at"] is not None
        assert emu.polls(prediction_id) == 2
        assert emu.stats().polls == 2


async def test_create_by_version_in_both_forms() -> None:
    emulator = Emulator(Scenario(duration=0.0))
    async with served(emulator) as (_, client):

        async def create_version(version: str) -> httpx.Response:
            body = {"version": version, "input": {"prompt": "a fox"}}
            return await client.post("/v1/predictions", json=body)

        homepage = await create_version(MODELS[GEMMA].version)  # a version it knows
        assert homepage.status_code == 201
        assert homepage.json()["model"] == GEMMA
        assert homepage.json()["version"] == MODELS[GEMMA].version

        any_model = await create_version(f"acme/widget:{sha256_hex('acme/widget')}")
        assert any_model.status_code == 201
        assert (any_model.json()["model"], any_model.json()["status"]) == (
            "acme/widget",
            "starting",
        )

        other = "other/model"
        assert_problem(await create_version(sha256_hex(other)), 422, "does not exist")
        assert (await client.get(f"/v1/models/{other}")).status_code == 200  # now it knows it
        assert (await create_version(sha256_hex(other))).json()["model"] == other
        # A bare id learnt from a create by owner/name:id works too.
        assert (await create_version(sha256_hex("acme/widget"))).status_code == 201

        assert_problem(await create_version(f"acme/widget:{'0' * 64}"), 422, "acme/widget")
        assert_problem(await create_version(f"{LLAMA}:{sha256_hex(SDXL)}"), 422, LLAMA)
        assert_problem(await create_version("not-a-version"), 422, "version")
        assert_problem(await create_version("bad name/x:abc"), 422, "owner/name")
        missing = await client.post("/v1/predictions", json={"input": {"prompt": "x"}})
        assert_problem(missing, 422, "version is required")


async def test_create_by_version_names_an_official_model_alone() -> None:
    emulator = Emulator(Scenario(duration=0.0), community_models=["acme/private-llm"])
    async with served(emulator) as (emu, client):

        async def create_version(version: str) -> httpx.Response:
            body = {"version": version, "input": {"prompt": "a fox"}}
            return await client.post("/v1/predictions", json=body)

        # Named alone, an official model reports no version, as on the real API; named
        # with a version, that version.
        for version, shown in ((LLAMA, "hidden"), (f"{LLAMA}:{sha256_hex(LLAMA)}", None)):
            response = await create_version(version)
            assert response.status_code == 201, response.text
            assert (response.json()["model"], response.json()["version"]) == (
                LLAMA,
                shown or sha256_hex(LLAMA),
            )
        # Community models run by version only, as on the real API.
        for community in ("lucataco/phi-3-mini-4k-instruct", "acme/private-llm"):
            assert_problem(await create_version(community), 422, "not an official model")
            by_version = await create_version(f"{community}:{sha256_hex(community)}")
            assert by_version.status_code == 201
        assert_problem(await create_version("bad name/x"), 422, "owner/name")
        assert emu.stats().creates == 4


async def test_account_is_the_tokens_account() -> None:
    async with served(Emulator(token="s3cret"), token="s3cret") as (_, client):
        response = await client.get("/v1/account")
        assert response.status_code == 200
        assert response.json() == {
            "type": "user",
            "username": "emulator",
            "name": "Replicate Home Emulator",
        }
        assert_problem(await client.get("/v1/account", headers={"Authorization": ""}), 401)


async def test_image_outputs_are_data_uris_by_default_on_v1() -> None:
    emulator = Emulator(Scenario(duration=0.0))
    emulator.script("linked", Scenario(duration=0.0, file_output="url"))
    async with served(emulator) as (emu, client):
        inline = await get(client, (await create(client, "a fox", model=SDXL))["id"])
        (uri,) = inline["output"]
        assert uri == "data:image/png;base64," + base64.b64encode(gradient_png("a fox", 0)).decode(
            "ascii"
        )
        linked = await get(client, (await create(client, "linked", model=SDXL))["id"])
        assert linked["output"] == [f"{emu.base_url}/_emulator/files/{linked['id']}/0.png"]
    with pytest.raises(ValueError, match="file_output"):
        Emulator(file_output="https")  # type: ignore[arg-type]


async def test_a_data_uri_is_made_once_per_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer that shows an image prediction (its polls, each listing page) shows
    the same data: URI; the emulator makes its PNG once, not at each answer (at scale, a
    PNG per listed prediction per page took most of the emulator's time)."""
    made: list[int] = []
    real = simulation._file_bytes

    def counting(pred: Any, index: int) -> bytes:
        made.append(index)
        return real(pred, index)

    monkeypatch.setattr(simulation, "_file_bytes", counting)
    emulator = Emulator(Scenario(duration=0.0, images=2))
    async with served(emulator) as (_, client):
        created = await create(client, "a fox", model=SDXL)
        first = await get(client, created["id"])
        again = await get(client, created["id"])
        listed = (await client.get("/v1/predictions")).json()["results"]
        assert first["output"] == again["output"] == listed[0]["output"]
        assert len(first["output"]) == 2
    assert made == [0, 1]


async def test_image_predictions_serve_their_files_or_data_uris() -> None:
    emulator = Emulator(Scenario(duration=0.0, images=2), file_output="url")
    emulator.script("inline", Scenario(duration=0.0, file_output="data"))
    async with served(emulator) as (emu, client):
        for model in (SDXL, "black-forest-labs/flux-schnell", "stability-ai/stable-diffusion-3"):
            created = await create(client, "a red fox", model=model)
            assert "stream" not in created["urls"]
            assert created["version"] == "hidden"  # official models, run by name
            done = await get(client, created["id"])
            assert done["output"] == [
                f"{emu.base_url}/_emulator/files/{created['id']}/{index}.png" for index in range(2)
            ]
            image = await client.get(done["output"][1])
            assert image.headers["content-type"] == "image/png"
            assert image.content == gradient_png("a red fox", 1)

        inline = await get(client, (await create(client, "inline", model=SDXL))["id"])
        (uri,) = inline["output"]
        prefix = "data:image/png;base64,"
        assert uri.startswith(prefix)
        assert base64.b64decode(uri[len(prefix) :]) == gradient_png("inline", 0)


async def test_scenarios_script_v1_predictions_too() -> None:
    emulator = Emulator(Scenario(duration=0.0))
    emulator.script(
        "flaky", Scenario(duration=0.0, submit_faults=[Fault(503, retry_after=2), Fault(429)])
    )
    emulator.script(
        "bumpy", Scenario(duration=5.0, poll_faults=[None, Fault(502, body="bad gateway")])
    )
    emulator.script("fail", Scenario(duration=0.0, outcome="failed", error="CUDA out of memory"))
    emulator.script("plain", Scenario(duration=0.0, content_type="text/plain"))
    emulator.script("fixed", Scenario(duration=0.0, output=["a", "b"]))
    emulator.script("fixed", Scenario(duration=0.0, output=["only", " sdxl"]), model=SDXL)
    async with served(emulator) as (emu, client):
        body = {"input": {"prompt": "flaky"}}
        path = f"/v1/models/{LLAMA}/predictions"
        answers = [await client.post(path, json=body) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [503, 429, 201]
        assert answers[0].headers["retry-after"] == "2"

        bumpy = await create(client, "bumpy")
        polls = [await client.get(f"/v1/predictions/{bumpy['id']}") for _ in range(3)]
        assert [poll.status_code for poll in polls] == [200, 502, 200]
        assert polls[1].text == "bad gateway"
        assert emu.polls(bumpy["id"]) == 3

        failed = await get(client, (await create(client, "fail"))["id"])
        assert (failed["status"], failed["error"]) == ("failed", "CUDA out of memory")
        plain = await client.get(f"/v1/predictions/{(await create(client, 'plain'))['id']}")
        assert plain.headers["content-type"] == "text/plain"
        assert (await get(client, (await create(client, "fixed"))["id"]))["output"] == ["a", "b"]
        sdxl = await get(client, (await create(client, "fixed", model=SDXL))["id"])
        assert sdxl["output"] == ["only", " sdxl"]
        stats = emu.stats()
        assert (stats.creates, stats.polls, stats.peak_in_flight) == (6, 7, 1)


async def test_quirks_keep_the_json_valid_but_unusual() -> None:
    emulator = Emulator(Scenario(duration=0.0))
    emulator.script("odd", Scenario(duration=0.0, quirks=True))
    async with served(emulator) as (_, client):
        response = await client.post(
            f"/v1/models/{LLAMA}/predictions", json={"input": {"prompt": "odd"}}
        )
        created = response.json()
        assert response.text.startswith('{"id":"' + created["id"] + '","id":')
        assert len(json.loads(response.text, object_pairs_hook=list)) == len(created) + 1
        assert created["logs"] is None
        assert created["x_emulator"]["nested"] == [1, {"deep": True}]
        assert created["source"] == "api"
        done = await get(client, created["id"])
        assert {"predict_time", "total_time", "output_token_count"} <= done["metrics"].keys()
        assert isinstance(done["logs"], str)
        normal = await create(client, "normal")
        assert normal["logs"] == ""
        assert "x_emulator" not in normal


# --------------------------------------------------------------------------- Prefer: wait


async def test_prefer_wait_answers_the_finished_prediction() -> None:
    async with served(Emulator(Scenario(duration=0.1))) as (emu, client):
        waited = await client.post(
            f"/v1/models/{LLAMA}/predictions",
            json={"input": {"prompt": "quick"}},
            headers={"Prefer": "wait=5"},
        )
        assert waited.status_code == 201
        assert waited.headers["preference-applied"] == "wait=5"
        assert waited.json()["status"] == "succeeded"
        assert "".join(waited.json()["output"]) == text_of(LLAMA, "quick")
        at_once = await create(client, "async", headers={"Prefer": "respond-async"})
        assert at_once["status"] == "starting"
        for bad in ("wait=0", "wait=61", "wait=soon"):
            response = await client.post(
                f"/v1/models/{LLAMA}/predictions",
                json={"input": {"prompt": "x"}},
                headers={"Prefer": bad},
            )
            assert_problem(response, 422, "wait")
        assert emu.requests[0].headers["prefer"] == "wait=5"


async def test_prefer_wait_gives_up_after_its_seconds() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=100.0, start_delay=10.0), clock=clock)
    answers: list[httpx.Response] = []
    async with served(emulator) as (emu, client), anyio.create_task_group() as tg:

        async def create_and_wait(prefer: str) -> None:
            answers.append(
                await client.post(
                    "/v1/predictions",
                    json={"version": MODELS[GEMMA].version, "input": {"prompt": "slow"}},
                    headers={"Prefer": prefer},
                )
            )

        with anyio.fail_after(5):
            tg.start_soon(create_and_wait, "wait")
            await emu.wait_for(lambda e: e.stats().creates == 1)
            assert emu.stats().requests == 0  # held: nothing answered yet
            clock.now += 60.0  # bare "wait" means 60 seconds
            await emu.wait_for(lambda e: e.stats().requests == 1)
            tg.start_soon(create_and_wait, "wait=2")
            await emu.wait_for(lambda e: e.stats().creates == 2)
            clock.now += 2.0
            await emu.wait_for(lambda e: e.stats().requests == 2)
    assert [answer.status_code for answer in answers] == [201, 201]
    # A wait that runs out answers `starting`, as the real API does, even once processing.
    assert answers[0].json()["status"] == "starting"
    assert answers[0].json()["output"] is None
    assert answers[1].json()["status"] == "starting"
    assert [record.time - 1000.0 for record in emu.requests] == [60.0, 62.0]


@pytest.mark.parametrize(
    ("quirks", "wait", "status"),
    [(True, 9, "processing"), (True, 5, "starting"), (False, 9, "starting")],
)
async def test_the_processing_quirk_of_a_held_create_needs_quirks_and_nearly_all_output(
    quirks: bool, wait: int, status: str
) -> None:
    clock = FakeClock()
    scenario = Scenario(duration=10.0, start_delay=0.0, output=["w"] * 10, quirks=quirks)
    emulator = Emulator(scenario, clock=clock)
    answers: list[httpx.Response] = []
    async with served(emulator) as (emu, client), anyio.create_task_group() as tg:

        async def create_and_wait() -> None:
            answers.append(
                await client.post(
                    f"/v1/models/{LLAMA}/predictions",
                    json={"input": {"prompt": "held"}},
                    headers={"Prefer": f"wait={wait}"},
                )
            )

        with anyio.fail_after(5):
            tg.start_soon(create_and_wait)
            await emu.wait_for(lambda e: e.stats().creates == 1)
            clock.now += wait
            await emu.wait_for(lambda e: e.stats().requests == 1)
    (answer,) = answers
    assert answer.status_code == 201
    body = json.loads(answer.content.decode())
    assert body["status"] == status
    # The quirk, as in a recorded real create: `processing` with the output (nearly) all there.
    assert body["output"] == (["w"] * 9 if status == "processing" else None)


# --------------------------------------------------------------------------- cancel


async def test_cancel_running_starting_and_finished_predictions() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=10.0, start_delay=2.0), clock=clock)
    async with served(emulator) as (emu, client):
        running = await create(client, "running")
        starting = await create(client, "starting")
        finished = await create(client, "finished")
        clock.now += 1.0
        early = (await client.post(starting["urls"]["cancel"])).json()
        assert (early["status"], early["output"]) == ("canceled", None)
        assert "started_at" not in early
        assert early["metrics"] == {"total_time": 1.0}  # from creation to its end
        clock.now += 5.0
        canceled = await client.post(f"/v1/predictions/{running['id']}/cancel")
        assert canceled.status_code == 200
        body = canceled.json()
        assert body["status"] == "canceled"
        assert body["completed_at"] is not None
        assert body["metrics"] == {"predict_time": 4.0, "total_time": 6.0}
        partial = body["output"]
        assert 0 < len(partial) < len(generate_text(LLAMA, "running"))
        assert emu.stats().in_flight == 1  # only "finished" still runs
        clock.now += 10.0
        assert (await get(client, running["id"]))["output"] == partial  # frozen at cancel
        again = (await client.post(f"/v1/predictions/{finished['id']}/cancel")).json()
        assert again == await get(client, finished["id"])
        assert again["status"] == "succeeded"
        assert emu.stats().cancels == 3
        assert [record.prediction_id for record in emu.requests if "cancel" in record.path] == [
            starting["id"],
            running["id"],
            finished["id"],
        ]


async def test_cancel_after_cancels_a_running_prediction_and_aborts_a_starting_one() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=60.0, start_delay=10.0), clock=clock)
    async with served(emulator) as (emu, client):
        aborted = await create(client, "late", headers={"Cancel-After": "5s"})
        canceled = await create(client, "running", headers={"Cancel-After": "0m15s"})
        natural = await create(client, "natural", headers={"Cancel-After": "2h"})
        plain_seconds = await create(client, "plain", headers={"Cancel-After": "30"})
        for bad in ("4s", "soon"):
            response = await client.post(
                f"/v1/models/{LLAMA}/predictions",
                json={"input": {"prompt": "x"}},
                headers={"Cancel-After": bad},
            )
            assert_problem(response, 422, "Cancel-After")
        assert emu.requests[0].headers["cancel-after"] == "5s"
        assert emu.stats().in_flight == 4

        clock.now += 4.9
        assert (await get(client, aborted["id"]))["status"] == "starting"
        clock.now += 0.1
        gone = await get(client, aborted["id"])
        assert (gone["status"], gone["output"]) == ("aborted", None)
        assert "started_at" not in gone
        assert gone["completed_at"] is not None
        assert gone["deadline"] == gone["completed_at"]  # Cancel-After's absolute time
        assert emu.stats().in_flight == 3

        clock.now += 10.0  # 15 s: the second deadline, 5 s into processing
        stopped = await get(client, canceled["id"])
        assert stopped["status"] == "canceled"
        assert stopped["metrics"] == {"predict_time": 5.0, "total_time": 15.0}
        assert stopped["created_at"] < stopped["deadline"] == stopped["completed_at"]
        assert stopped["started_at"] is not None
        assert len(stopped["output"]) > 0
        clock.now += 15.0
        assert (await get(client, plain_seconds["id"]))["status"] == "canceled"
        clock.now += 30.0
        assert (await get(client, natural["id"]))["status"] == "succeeded"
        assert emu.stats().in_flight == 0
        # Without Cancel-After, no deadline.
        assert "deadline" not in await get(client, (await create(client, "free"))["id"])


# --------------------------------------------------------------------------- listing


async def test_list_predictions_newest_first_with_cursors() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), page_size=2, clock=clock)
    async with served(emulator) as (_, client):
        web = await client.post(
            "/api/prediction",
            json={"model": GEMMA, "version": MODELS[GEMMA].version, "input": {"prompt": "w"}},
        )
        ids = [web.json()["id"]]
        for index in range(4):
            clock.now += 1.0
            ids.append((await create(client, f"p{index}"))["id"])
        newest = ids[::-1]

        first = (await client.get("/v1/predictions")).json()
        assert [item["id"] for item in first["results"]] == newest[:2]
        assert first["previous"] is None
        assert first["results"][0]["source"] == "api"
        assert "logs" not in first["results"][0]
        assert first["results"][0]["urls"]["get"].endswith(newest[0])
        second = (await client.get(first["next"])).json()
        assert [item["id"] for item in second["results"]] == newest[2:4]
        third = (await client.get(second["next"])).json()
        assert [item["id"] for item in third["results"]] == newest[4:]
        assert third["next"] is None
        assert third["results"][0]["source"] == "web"
        back = (await client.get(third["previous"])).json()
        assert [item["id"] for item in back["results"]] == newest[2:4]
        assert (await client.get(back["previous"])).json()["results"] == first["results"]
        assert_problem(await client.get("/v1/predictions", params={"cursor": "!!"}), 400)


# --------------------------------------------------------------------------- models


async def test_models_and_versions_describe_cog_schemas() -> None:
    async with served(Emulator(Scenario(duration=0.0))) as (_, client):
        await create(client, "x")
        model = (await client.get(f"/v1/models/{LLAMA}")).json()
        assert (model["owner"], model["name"], model["run_count"]) == ("meta", LLAMA[5:], 1)
        assert model["visibility"] == "public"
        latest = model["latest_version"]
        assert latest["id"] == sha256_hex(LLAMA)
        schemas = latest["openapi_schema"]["components"]["schemas"]
        assert schemas["Input"]["required"] == ["prompt"]
        assert schemas["Input"]["properties"]["prompt"]["type"] == "string"
        assert schemas["Output"] == {
            "type": "array",
            "items": {"type": "string"},
            "title": "Output",
            "x-cog-array-type": "iterator",
            "x-cog-array-display": "concatenate",
        }
        version = await client.get(f"/v1/models/{LLAMA}/versions/{latest['id']}")
        assert version.json() == latest
        versions = (await client.get(f"/v1/models/{LLAMA}/versions")).json()
        assert versions["results"] == [latest]
        assert_problem(await client.get(f"/v1/models/{LLAMA}/versions/{'0' * 64}"), 404)

        for image_model in (
            SDXL,
            "black-forest-labs/flux-schnell",
            "bytedance/sdxl-lightning-4step",
        ):
            image = (await client.get(f"/v1/models/{image_model}")).json()["latest_version"]
            output = image["openapi_schema"]["components"]["schemas"]["Output"]
            assert output["items"] == {"type": "string", "format": "uri"}
            assert "x-cog-array-type" not in output
        homepage = (await client.get(f"/v1/models/{GEMMA}")).json()
        assert homepage["latest_version"]["id"] == MODELS[GEMMA].version


# --------------------------------------------------------------------------- streams


async def test_stream_pushes_events_as_the_prediction_advances() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=10.0, start_delay=2.0), clock=clock)
    async with served(emulator) as (emu, client):
        created = await create(client, "live", stream=True)
        full = list(generate_text(LLAMA, "live"))
        async with client.stream(
            "GET", created["urls"]["stream"], headers={"Accept": "text/event-stream"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            reader = EventReader(response)
            await emu.wait_for(lambda e: e.stats().open_streams == 1)
            assert emu.stats().stream_connections == 1
            clock.now += 6.0  # halfway: the stream pushes what was produced so far
            produced = len((await get(client, created["id"]))["output"])
            assert 0 < produced < len(full)
            first = [await reader.next() for _ in range(produced)]
            assert [event["event"] for event in first] == ["output"] * produced
            assert [event["id"] for event in first] == [str(index) for index in range(produced)]
            assert [event["data"] for event in first] == full[:produced]
            clock.now += 4.0
            rest = await reader.rest()
        assert [event["data"] for event in rest[:-1]] == full[produced:]
        assert rest[-1] == {"event": "done", "id": str(len(full)), "data": "{}"}
        await emu.wait_for(lambda e: e.stats().open_streams == 0)


async def test_stream_done_reasons_and_replay_after_the_end() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), clock=clock)
    emulator.script("fail", Scenario(duration=1.0, outcome="failed", error="Boom\nbadly"))
    emulator.script("cancel", Scenario(duration=1.0, outcome="canceled"))
    emulator.script(
        "lines", Scenario(duration=1.0, output=["line one\nline two", "\n\n", "x\r\ny"])
    )
    async with served(emulator) as (_, client):
        created = {
            prompt: await create(client, prompt) for prompt in ("ok", "fail", "cancel", "lines")
        }
        clock.now += 5.0  # all over: connecting now replays the whole stream and ends

        async def replay(prompt: str, **headers: str) -> list[dict[str, str]]:
            response = await client.get(created[prompt]["urls"]["stream"], headers=headers)
            assert response.status_code == 200
            return parse_sse(response.text)

        ok = await replay("ok")
        assert "".join(event["data"] for event in ok[:-1]) == text_of(LLAMA, "ok")
        assert ok[-1]["data"] == "{}"

        failed = await replay("fail")
        assert [event["event"] for event in failed[-2:]] == ["error", "done"]
        assert json.loads(failed[-2]["data"]) == {"detail": "Boom\nbadly"}
        assert json.loads(failed[-1]["data"]) == {"reason": "error"}
        assert [event["id"] for event in failed] == [str(index) for index in range(len(failed))]

        canceled = await replay("cancel")
        assert json.loads(canceled[-1]["data"]) == {"reason": "canceled"}

        response = await client.get(created["lines"]["urls"]["stream"])
        assert "data: line one\ndata: line two\n" in response.text
        lines = parse_sse(response.text)
        assert [event["data"] for event in lines] == ["line one\nline two", "\n\n", "x\ny", "{}"]

        resumed = await replay("ok", **{"Last-Event-ID": "3"})
        assert resumed == ok[4:]
        assert await replay("ok", **{"Last-Event-ID": ok[-1]["id"]}) == []


async def test_cancel_and_cancel_after_end_open_streams() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=60.0, start_delay=10.0), clock=clock)
    async with served(emulator) as (_, client):
        running = await create(client, "running")
        deadline = await create(client, "deadline", headers={"Cancel-After": "5s"})
        clock.now += 20.0
        async with client.stream("GET", running["urls"]["stream"]) as response:
            reader = EventReader(response)
            assert (await reader.next())["event"] == "output"
            await client.post(running["urls"]["cancel"])
            rest = await reader.rest()
        assert json.loads(rest[-1]["data"]) == {"reason": "canceled"}
        aborted = parse_sse((await client.get(deadline["urls"]["stream"])).text)
        assert aborted == [{"event": "done", "id": "0", "data": '{"reason": "canceled"}'}]


async def test_stream_refuses_other_media_types() -> None:
    async with served(Emulator()) as (_, client):
        created = await create(client)
        for accept in ("application/json", "text/html, application/xml"):
            response = await client.get(created["urls"]["stream"], headers={"Accept": accept})
            assert_problem(response, 406, "text/event-stream")


async def test_streams_live_on_a_second_origin_with_unguessable_paths() -> None:
    emulator = Emulator(Scenario(duration=0.0), token="s3cret")
    async with served(emulator, token="s3cret") as (emu, client):
        created = [await create(client, f"story {n}") for n in range(2)]
        stream_urls = [item["urls"]["stream"] for item in created]
        assert emu.stream_url != emu.base_url
        assert len(set(stream_urls)) == 2
        for item, url in zip(created, stream_urls, strict=True):
            assert url.startswith(f"{emu.stream_url}/v1/streams/")
            assert item["id"] not in url  # the path says nothing about the prediction
        image = await create(client, "a red fox", model=SDXL)
        assert "stream" not in image["urls"]

        async with httpx.AsyncClient(timeout=5) as anonymous:
            # No token wanted; a token, even a wrong one, is ignored.
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token x"}):
                response = await anonymous.get(stream_urls[0], headers=headers)
                assert response.status_code == 200
                assert parse_sse(response.text)[-1]["event"] == "done"
            unknown = await anonymous.get(f"{emu.stream_url}/v1/streams/{'a' * 52}")
            assert_problem(unknown, 404, "Stream not found")
            assert_problem(await anonymous.get(f"{emu.stream_url}/v1/predictions"), 404)
            # The API's routes are not served on the stream origin, nor streams on the API's.
            path = stream_urls[0].removeprefix(emu.stream_url)
            assert_problem(await client.get(path), 404)

        on_stream = [r for r in emu.requests if r.origin == "stream"]
        assert len(on_stream) == 5
        assert emu.stats().stream_requests == 5
        assert emu.stats().stream_connections == 3
        assert [r.prediction_id for r in on_stream[:3]] == [created[0]["id"]] * 3
        assert on_stream[0].headers.get("authorization") is None
        assert all(r.origin == "main" for r in emu.requests if r.path.startswith("/v1/models"))
        assert "origin='stream'" in repr(on_stream[0])


async def test_streams_end_on_disconnect_and_on_shutdown(
    client_tasks: Callable[[], set[int]],
) -> None:
    emulator = Emulator(Scenario(duration=100.0, start_delay=0.0))
    before = client_tasks()
    async with httpx.AsyncClient(headers={"Authorization": "Bearer t"}, timeout=5) as client:
        async with emulator.serve() as emu:
            created = await create_with(client, emu.base_url)
            with anyio.fail_after(5):
                async with client.stream("GET", created["urls"]["stream"]) as response:
                    assert response.status_code == 200
                    await emu.wait_for(lambda e: e.stats().open_streams == 1)
                # The client hung up mid-stream: the server ends the stream.
                await emu.wait_for(lambda e: e.stats().open_streams == 0)

            response = await client.send(
                client.build_request("GET", created["urls"]["stream"]), stream=True
            )
            await emu.wait_for(lambda e: e.stats().open_streams == 1)
            started = time.monotonic()
        assert time.monotonic() - started < 1.0  # no hanging shutdown
        body = await response.aread()
        await response.aclose()
        assert b"event: done" not in body  # cut short, not finished
        assert emu.stats().open_streams == 0
        assert emu.stats().stream_connections == 2
    assert client_tasks() == before


async def create_with(client: httpx.AsyncClient, base_url: str) -> dict[str, Any]:
    response = await client.post(
        f"{base_url}/v1/models/{LLAMA}/predictions", json={"input": {"prompt": "long"}}
    )
    assert response.status_code == 201
    result: dict[str, Any] = response.json()
    return result


# --------------------------------------------------------------------------- rate limits


async def test_rate_limits_answer_429_with_retry_after_when_on() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=0.0), rate_limits=(60, 120), clock=clock)
    async with served(emulator) as (emu, client):
        await create(client)  # a burst of one create a second
        throttled = await client.post(
            f"/v1/models/{LLAMA}/predictions", json={"input": {"prompt": "x"}}
        )
        body = assert_problem(throttled, 429, "throttled")
        assert throttled.headers["retry-after"] == "1"
        assert body["retry_after"] == 1
        assert [(await client.get("/v1/predictions")).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        homepage = {"model": GEMMA, "version": MODELS[GEMMA].version, "input": {"prompt": "x"}}
        for _ in range(5):  # the homepage routes have no limits
            assert (await client.post("/api/prediction", json=homepage)).status_code == 201
        clock.now += 1.0
        await create(client)
        assert emu.stats().throttled == 2


async def test_rate_limits_are_off_by_default() -> None:
    async with served(Emulator(Scenario(duration=0.0))) as (emu, client):
        for _ in range(30):
            await create(client)
            assert (await client.get("/v1/predictions")).status_code == 200
        assert emu.stats().throttled == 0
        assert {record.status_code for record in emu.requests} == {200, 201}


# --------------------------------------------------------------------------- the official client


@contextmanager
def official(emu: Emulator) -> Iterator[replicate.Client]:
    client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
    client.poll_interval = 0.02
    try:
        yield client
    finally:
        client._client.close()


async def test_official_client_runs_by_model_and_by_version() -> None:
    emulator = Emulator(Scenario(duration=0.2), file_output="url")
    emulator.script("inline", Scenario(duration=0.1, file_output="data"))
    async with emulator.serve() as emu:
        base_url = emu.base_url

        def run_all() -> tuple[Any, Any, Any, Any]:
            with official(emu) as client:
                by_model = client.run(LLAMA, input={"prompt": "haiku"})
                version = client.models.get(LLAMA).latest_version
                assert version is not None
                by_version = client.run(f"{LLAMA}:{version.id}", input={"prompt": "haiku"})
                image = client.run(SDXL, input={"prompt": "a fox"})
                inline = client.run(SDXL, input={"prompt": "inline"})
                return by_model, list(by_version), image, [item.read() for item in inline]

        by_model, by_version, image, inline = await anyio.to_thread.run_sync(run_all)
    assert "".join(by_model) == text_of(LLAMA, "haiku")
    assert by_version == list(generate_text(LLAMA, "haiku"))  # streamed-style iterator
    creates = [record for record in emu.requests if record.method == "POST"]
    assert len(creates) == 4
    image_id = creates[2].prediction_id
    assert image == [f"{base_url}/_emulator/files/{image_id}/0.png"]  # http: stays a str
    assert inline == [gradient_png("inline", 0)]  # data URIs become FileOutput objects
    for record in creates:
        assert record.headers["authorization"] == f"Bearer {TOKEN}"
        assert record.headers["prefer"] == "wait"
        assert record.headers["user-agent"].startswith("replicate-python/")
    assert creates[1].path == "/v1/predictions"
    assert emu.stats().creates == 4


async def test_official_client_create_wait_stream_and_cancel() -> None:
    emulator = Emulator(Scenario(duration=0.2))
    emulator.script("forever", Scenario(duration=600.0))
    async with emulator.serve() as emu:

        def use_client() -> tuple[Any, ...]:
            with official(emu) as client:
                prediction = client.predictions.create(model=LLAMA, input={"prompt": "wait"})
                assert prediction.status == "starting"
                prediction.wait()
                events = list(client.stream(LLAMA, input={"prompt": "stream me"}))
                long = client.models.predictions.create(model=LLAMA, input={"prompt": "forever"})
                canceled = client.predictions.cancel(long.id)
                listed = client.predictions.list()
                return prediction, events, canceled, listed

        prediction, events, canceled, listed = await anyio.to_thread.run_sync(use_client)
    assert (prediction.status, "".join(prediction.output)) == ("succeeded", text_of(LLAMA, "wait"))
    assert prediction.metrics["predict_time"] > 0
    assert [event.event.value for event in events[-1:]] == ["done"]
    assert {event.event.value for event in events[:-1]} == {"output"}
    assert "".join(str(event) for event in events) == text_of(LLAMA, "stream me")
    assert canceled.status == "canceled"
    assert listed.results[0].id == canceled.id
    stats = emu.stats()
    assert (stats.cancels, stats.stream_connections, stats.creates) == (1, 1, 3)
    assert emu.polls(prediction.id) >= 1


async def test_official_async_client(anyio_backend: str) -> None:
    if anyio_backend == "trio":
        pytest.skip("the official client's async API sleeps with asyncio.sleep: asyncio only")
    async with Emulator(Scenario(duration=0.2)).serve() as emu:
        client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
        try:
            output = await client.async_run(LLAMA, input={"prompt": "async"})
            chunks = [
                str(event)
                async for event in await client.async_stream(LLAMA, input={"prompt": "async"})
            ]
        finally:
            await client._async_client.aclose()
    assert "".join(output) == text_of(LLAMA, "async")
    assert "".join(chunks) == text_of(LLAMA, "async")
    assert emu.stats().stream_connections == 1
