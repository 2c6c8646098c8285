"""``api.trainings``: create, get, cancel, list, and a training followed as a prediction
is (``wait``, ``follow``, ``run``) by the same engine entry, with the same ownership rules.

Answered with the real shapes of Replicate's OpenAPI description (the training object of
``trainings.get``) by a scripted transport until the emulator serves trainings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from replicate_home import (
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    ReplicateAPI,
    ResponseStatusError,
    Training,
)
from replicate_home.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://api.test"
TOKEN = "r8_SECRET_token_value_123"
BASE_VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
NEW_VERSION = "f" * 64
MODEL = f"stability-ai/sdxl:{BASE_VERSION}"


def training(status: str, **extra: Any) -> dict[str, Any]:
    """A training object as ``trainings.get`` answers it (its ``urls`` on another host:
    the client must not follow them)."""
    body: dict[str, Any] = {
        "id": "zz4ibbonubfz7carwiefibzgga",
        "model": "stability-ai/sdxl",
        "version": BASE_VERSION,
        "status": status,
        "input": {"input_images": "https://example.com/my-input-images.zip"},
        "logs": f"log while {status}",
        "error": None,
        "output": None,
        "source": "api",
        "created_at": "2023-09-08T16:32:57.018467Z",
        "urls": {
            "web": "https://replicate.com/p/zz4ibbonubfz7carwiefibzgga",
            "get": "https://elsewhere.test/v1/trainings/zz4ibbonubfz7carwiefibzgga",
            "cancel": "https://elsewhere.test/v1/trainings/zz4ibbonubfz7carwiefibzgga/cancel",
        },
    }
    if status == "succeeded":
        body["output"] = {
            "version": f"alice/my-sdxl:{NEW_VERSION}",
            "weights": "https://replicate.delivery/w.tar",
        }
        body["metrics"] = {"predict_time": 502.7}
    if status == "failed":
        body["error"] = "CUDA out of memory"
    body.update(extra)
    return body


Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Service:
    """Answers by (method, path); the last answer of a route repeats."""

    def __init__(self, routes: dict[tuple[str, str], list[Reply]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        assert answers, f"unexpected {request.method} {request.url}"
        reply = answers.pop(0) if len(answers) > 1 else answers[0]
        return reply(request) if callable(reply) else reply

    def client(self, **options: Any) -> ReplicateAPI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return ReplicateAPI(TOKEN, base_url=BASE, http_client=http, poll_interval=0.01, **options)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.host}{r.url.path}" for r in self.requests]


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


CREATE = ("POST", f"/v1/models/stability-ai/sdxl/versions/{BASE_VERSION}/trainings")
GET = ("GET", "/v1/trainings/zz4ibbonubfz7carwiefibzgga")
CANCEL = ("POST", "/v1/trainings/zz4ibbonubfz7carwiefibzgga/cancel")


async def test_create_then_wait_reads_the_training_at_the_clients_own_url() -> None:
    service = Service(
        {
            CREATE: [ok(training("starting"), 201)],
            GET: [ok(training("processing")), ok(training("succeeded"))],
        }
    )
    async with service.client() as api:
        created = await api.trainings.create(
            MODEL,
            destination="alice/my-sdxl",
            input={"input_images": "https://example.com/my-input-images.zip"},
            webhook="https://example.com/hook",
            webhook_events_filter=["completed"],
        )
        done = await api.trainings.wait(created)
    assert isinstance(created, Training)
    assert created.status == "starting"
    assert done.status == "succeeded"
    assert done.new_version == NEW_VERSION
    assert done.new_model == f"alice/my-sdxl:{NEW_VERSION}"
    assert done.weights == "https://replicate.delivery/w.tar"
    assert done.metrics == {"predict_time": 502.7}
    assert done.polls == 2
    assert done.urls["get"] == f"{BASE}/v1/trainings/zz4ibbonubfz7carwiefibzgga"
    assert done.urls["web"] == "https://replicate.com/p/zz4ibbonubfz7carwiefibzgga"
    assert all(r.url.host == "api.test" for r in service.requests)  # never elsewhere.test
    create = service.requests[0]
    assert json.loads(create.content) == {
        "destination": "alice/my-sdxl",
        "input": {"input_images": "https://example.com/my-input-images.zip"},
        "webhook": "https://example.com/hook",
        "webhook_events_filter": ["completed"],
    }
    assert "prefer" not in create.headers
    assert "cancel-after" not in create.headers


async def test_run_owns_its_training_and_cancels_it_when_abandoned() -> None:
    service = Service(
        {
            CREATE: [ok(training("starting"), 201)],
            GET: [ok(training("processing"))],
            CANCEL: [ok(training("canceled"))],
        }
    )
    async with service.client() as api:
        with pytest.raises(PredictionTimeout):
            await api.trainings.run(MODEL, destination="alice/my-sdxl", input={}, timeout=0.2)
    # The client's task group has sent the cancel by the time it closed.
    assert service.paths()[-1] == f"POST api.test{CANCEL[1]}"


async def test_wait_and_follow_leave_the_callers_training_running() -> None:
    service = Service({GET: [ok(training("processing"))]})
    async with service.client() as api:
        with pytest.raises(PredictionTimeout):
            await api.trainings.wait("zz4ibbonubfz7carwiefibzgga", timeout=0.1)
        states = api.trainings.follow("zz4ibbonubfz7carwiefibzgga")
        first = await anext(states)
        await states.aclose()
    assert first.status == "processing"
    assert first.logs == "log while processing"
    assert all(r.method == "GET" for r in service.requests)  # no cancel, ever


async def test_follow_yields_each_state_to_the_end() -> None:
    service = Service(
        {GET: [ok(training("starting")), ok(training("processing")), ok(training("succeeded"))]}
    )
    async with service.client() as api:
        statuses = [state.status async for state in api.trainings.follow(training_id())]
    assert statuses == ["starting", "processing", "succeeded"]


def training_id() -> str:
    return "zz4ibbonubfz7carwiefibzgga"


async def test_a_failed_or_canceled_training_raises_with_the_training() -> None:
    service = Service({GET: [ok(training("processing")), ok(training("failed"))]})
    async with service.client() as api:
        with pytest.raises(PredictionFailed) as failed:
            await api.trainings.wait(training_id())
    assert isinstance(failed.value.prediction, Training)
    assert failed.value.error == "CUDA out of memory"

    service = Service({GET: [ok(training("canceled"))]})
    async with service.client() as api:
        with pytest.raises(PredictionCanceled) as canceled:
            await api.trainings.wait(training_id())
    assert isinstance(canceled.value.prediction, Training)


async def test_a_finished_training_is_waited_for_with_no_request() -> None:
    service = Service({})
    done = Training(training_id(), "stability-ai/sdxl", BASE_VERSION, "succeeded")
    async with service.client() as api:
        assert await api.trainings.wait(done) == done
    assert service.requests == []


async def test_get_cancel_and_list() -> None:
    second = training("succeeded", id="second")
    service = Service(
        {
            GET: [ok(training("processing"))],
            CANCEL: [ok(training("canceled"))],
            ("GET", "/v1/trainings"): [
                ok({"next": f"{BASE}/v1/trainings?cursor=p2", "results": [training("canceled")]}),
                ok({"next": None, "results": [second, "junk"]}),
            ],
        }
    )
    async with service.client() as api:
        got = await api.trainings.get(training_id())
        canceled = await api.trainings.cancel(got)
        listed = [item.id async for item in api.trainings.list()]
    assert got.status == "processing"
    assert canceled.status == "canceled"
    assert listed == [training_id(), "second"]
    assert service.requests[-1].url.params["cursor"] == "p2"


async def test_bad_arguments_fail_before_any_request() -> None:
    service = Service({})
    async with service.client() as api:
        with pytest.raises(ValueError, match="owner/name:version"):
            await api.trainings.create("stability-ai/sdxl", destination="a/b", input={})
        with pytest.raises(ValueError, match="destination"):
            await api.trainings.create(MODEL, destination="no-owner", input={})
        with pytest.raises(ValueError, match="input"):
            await api.trainings.create(MODEL, destination="a/b", input=[1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="training id"):
            await api.trainings.get("../../predictions")
        with pytest.raises(ValueError, match="webhook"):
            await api.trainings.create(MODEL, destination="a/b", input={}, webhook="ftp://x")
    assert service.requests == []


async def test_an_unknown_training_is_a_404_naming_it() -> None:
    problem = {"title": "Not found", "detail": "Not found.", "status": 404}
    service = Service({GET: [httpx.Response(404, json=problem)]})
    async with service.client() as api:
        with pytest.raises(ResponseStatusError, match=f"training {training_id()} not found"):
            await api.trainings.get(training_id())


async def test_a_training_on_the_emulator_makes_a_version_that_runs(emulator: Emulator) -> None:
    llama = "meta/meta-llama-3-8b-instruct"
    async with ReplicateAPI("t", base_url=emulator.base_url, poll_interval=0.01) as api:
        account = await api.account.get()
        destination = f"{account.username}/tuned-llama"
        await api.models.create(destination, hardware="gpu-t4")
        base = await api.models.get(llama)
        assert base.latest_version is not None
        model = f"{llama}:{base.latest_version.id}"
        created = await api.trainings.create(
            model, destination=destination, input={"train_data": "https://x.test/d.jsonl"}
        )
        statuses = [state.status async for state in api.trainings.follow(created)]
        done = await api.trainings.get(created)
        listed = [training.id async for training in api.trainings.list()]
        assert done.new_version is not None
        assert done.new_model == f"{destination}:{done.new_version}"
        prediction = await api.predict(done.new_model, prompt="Hi")
        versions = [version.id async for version in api.models.versions.list(destination)]
        ran = await api.trainings.run(model, destination=destination, input={})
        with pytest.raises(PredictionTimeout):  # abandoned: cancelled on the emulator
            await api.trainings.run(model, destination=destination, input={}, timeout=0.05)
        with pytest.raises(ResponseStatusError) as missing:
            await api.trainings.create(model, destination=f"{account.username}/none", input={})
    assert created.status == "starting"
    assert statuses[-1] == "succeeded"
    assert done.model == llama
    assert created.id in listed
    assert prediction.status == "succeeded"
    assert done.new_version in versions
    assert ran.status == "succeeded"
    assert ran.new_version not in (None, done.new_version)
    abandoned = [t async for t in _listing(emulator, api_token="t")]
    assert "canceled" in {t.status for t in abandoned}
    assert missing.value.status_code == 404


async def _listing(emulator: Emulator, api_token: str) -> AsyncIterator[Training]:
    """The emulator's trainings, read by a client of their own (after the other closed,
    so the abandoned training's cancel has been sent)."""
    async with ReplicateAPI(api_token, base_url=emulator.base_url) as api:
        async for training in api.trainings.list():
            yield training
