"""The emulator's trainings and deployment management over loopback, on both backends,
on a clock the test moves by hand (no sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from replicate_home.emulator import Emulator, Scenario
from replicate_home.emulator._catalogue import version_for
from replicate_home.emulator._simulation import generate_text

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
BASE = version_for(LLAMA)
TRAIN = f"/models/{LLAMA}/versions/{BASE}/trainings"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def served(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        emulator.serve() as emu,
        httpx.AsyncClient(
            base_url=f"{emu.base_url}/v1", headers={"Authorization": "Bearer t"}, timeout=5
        ) as client,
    ):
        yield client


async def make_model(client: httpx.AsyncClient, name: str, visibility: str = "private") -> None:
    body = {"owner": "emulator", "name": name, "visibility": visibility, "hardware": "cpu"}
    assert (await client.post("/models", json=body)).status_code == 201


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_a_training_makes_a_version_of_its_destination_that_then_runs() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=10.0, start_delay=2.0), clock=clock)
    async with served(emulator) as client:
        await make_model(client, "tuned")
        answer = await client.post(
            TRAIN, json={"destination": "emulator/tuned", "input": {"train_data": "x"}}
        )
        assert answer.status_code == 201
        created = answer.json()
        assert (created["status"], created["model"], created["version"]) == (
            "starting",
            LLAMA,
            BASE,
        )
        assert created["urls"]["get"].endswith(f"/v1/predictions/{created['id']}")
        assert "started_at" not in created
        assert created["output"] is None
        training_id = created["id"]
        clock.now += 3.0
        running = (await client.get(f"/trainings/{training_id}")).json()
        assert (running["status"], running["output"]) == ("processing", None)
        assert running["urls"]["get"].endswith(f"/v1/trainings/{training_id}")
        assert "stream" not in running["urls"]
        # No version until the training has succeeded.
        model = (await client.get("/models/emulator/tuned")).json()
        assert model["latest_version"] is None
        clock.now += 7.0
        done = (await client.get(f"/trainings/{training_id}")).json()
        assert done["status"] == "succeeded"
        destination, version = done["output"]["version"].split(":")
        assert destination == "emulator/tuned"
        assert done["metrics"]["predict_time"] == 8.0
        weights = await client.get(done["output"]["weights"])
        assert (weights.status_code, len(weights.content)) == (200, 4096)
        # Trainings are predictions too (the JS client's wait() polls them there), but
        # only GET /v1/trainings lists them.
        as_prediction = (await client.get(f"/predictions/{training_id}")).json()
        assert as_prediction["output"] == done["output"]
        assert (await client.get("/predictions")).json()["results"] == []
        listed = (await client.get("/trainings")).json()["results"]
        assert [t["id"] for t in listed] == [training_id]
        model = (await client.get("/models/emulator/tuned")).json()
        assert model["latest_version"]["id"] == version
        run = await client.post(
            "/predictions",
            json={"version": f"emulator/tuned:{version}", "input": {"prompt": "hi"}},
        )
        assert run.status_code == 201
        clock.now += 10.0
        output = (await client.get(f"/predictions/{run.json()['id']}")).json()["output"]
        assert "".join(output) == "".join(generate_text("emulator/tuned", "hi"))
        by_id = await client.post(
            "/predictions", json={"version": version, "input": {"prompt": "x"}}
        )
        assert by_id.status_code == 201
        # The rules: a model with versions can't be deleted; delete the version first.
        problem_of(await client.delete("/models/emulator/tuned"), 409)
        gone = await client.delete(f"/models/emulator/tuned/versions/{version}")
        assert (gone.status_code, gone.content) == (202, b"")
        problem_of(await client.get(f"/models/emulator/tuned/versions/{version}"), 404)
        assert (await client.delete("/models/emulator/tuned")).status_code == 204


async def test_a_canceled_training_makes_no_version_and_bad_trainings_are_refused() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=10.0), clock=clock)
    async with served(emulator) as client:
        await make_model(client, "tuned")
        missing = await client.post(TRAIN, json={"destination": "emulator/nope", "input": {}})
        assert problem_of(missing, 404)["detail"] == (
            "The specified training destination does not exist"
        )
        problem_of(await client.post(TRAIN, json={"input": {}}), 422)
        problem_of(await client.post(TRAIN, json={"destination": "emulator/tuned"}), 422)
        problem_of(
            await client.post(
                f"/models/{LLAMA}/versions/{'0' * 64}/trainings",
                json={"destination": "emulator/tuned", "input": {}},
            ),
            404,
        )
        created = (
            await client.post(TRAIN, json={"destination": "emulator/tuned", "input": {}})
        ).json()
        clock.now += 1.0
        canceled = (await client.post(f"/trainings/{created['id']}/cancel")).json()
        assert canceled["status"] == "canceled"
        clock.now += 20.0
        assert (await client.get("/models/emulator/tuned/versions")).json()["results"] == []
        problem_of(await client.get("/trainings/nope"), 404)


async def test_a_training_sends_its_webhooks_with_training_objects(
    anyio_backend: str,
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from replicate_home.emulator import serve_asgi

    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    emulator = Emulator(Scenario(duration=0.2))
    async with serve_asgi(receiver) as hook_url, served(emulator) as client:
        await make_model(client, "hooked")
        await client.post(
            TRAIN,
            json={
                "destination": "emulator/hooked",
                "input": {},
                "webhook": f"{hook_url}/hook",
                "webhook_events_filter": ["completed"],
            },
        )

        def delivered(emu: Emulator) -> bool:
            return any(d.event == "completed" for d in emu.webhook_deliveries)

        with anyio.fail_after(10):
            await emulator.wait_for(delivered)
    (final,) = received
    assert final["status"] == "succeeded"
    assert final["output"]["version"].startswith("emulator/hooked:")
    assert final["urls"]["get"].endswith(f"/v1/trainings/{final['id']}")


async def test_deployments_are_updated_in_releases_and_deleted_by_the_rules() -> None:
    clock = FakeClock()
    emulator = Emulator(Scenario(duration=1.0), clock=clock)
    async with served(emulator) as client:
        version = version_for("stability-ai/sdxl")
        body = {
            "name": "app",
            "model": "stability-ai/sdxl",
            "version": version,
            "hardware": "gpu-t4",
            "min_instances": 1,
            "max_instances": 3,
        }
        assert (await client.post("/deployments", json=body)).status_code == 200
        problem_of(
            await client.post("/deployments", json={**body, "name": "b", "hardware": "x"}), 422
        )
        problem_of(
            await client.post("/deployments", json={**body, "name": "c", "max_instances": 21}),
            422,
        )
        same = (await client.patch("/deployments/emulator/app", json={})).json()
        assert same["current_release"]["number"] == 1  # nothing changed: no new release
        updated = await client.patch(
            "/deployments/emulator/app", json={"max_instances": 10, "hardware": "gpu-a40-large"}
        )
        assert updated.status_code == 200
        release = updated.json()["current_release"]
        assert release["number"] == 2
        assert release["configuration"] == {
            "hardware": "gpu-a40-large",
            "min_instances": 1,
            "max_instances": 10,
        }
        problem_of(await client.patch("/deployments/emulator/app", json={"min_instances": 11}), 422)
        problem_of(await client.patch("/deployments/emulator/app", json={"version": "0" * 64}), 422)
        problem_of(await client.delete("/deployments/emulator/app"), 409)  # online
        await client.patch("/deployments/emulator/app", json={"min_instances": 0})
        run = await client.post(
            "/deployments/emulator/app/predictions", json={"input": {"prompt": "cat"}}
        )
        assert run.status_code == 201
        problem_of(await client.delete("/deployments/emulator/app"), 409)  # just used
        clock.now += 15 * 60
        deleted = await client.delete("/deployments/emulator/app")
        assert (deleted.status_code, deleted.content) == (204, b"")
        problem_of(await client.get("/deployments/emulator/app"), 404)
        problem_of(await client.delete("/deployments/emulator/app"), 404)
