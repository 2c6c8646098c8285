"""Deployments: ReplicateAPI runs them through every method, the emulator serves them."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import httpx
import pytest

from replicate_home import Deployment, ReplicateAPI, ReplicateHome, ResponseStatusError
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_deployments_token"


def deployed() -> Emulator:
    return Emulator(Scenario(duration=0.2), deployments={"acme/chat": LLAMA, "acme/pictures": FLUX})


def api(emulator: Emulator, **options: Any) -> ReplicateAPI:
    return ReplicateAPI(TOKEN, base_url=emulator.base_url, **options)


async def test_a_deployment_runs_through_predict_generate_and_create() -> None:
    async with deployed().serve() as emu, api(emu) as client:
        chat = Deployment("acme/chat")
        result = await client.predict(chat, prompt="hi")
        async with aclosing(client.generate(chat, prompt="hi")) as stream:
            chunks = [chunk async for chunk in stream]
        created = await client.create(chat, prompt="later")
        waited = await client.wait(created)
    assert result.status == "succeeded"
    assert result.model == LLAMA
    assert result.deployment == "acme/chat"
    assert "".join(str(chunk) for chunk in chunks) == result.text
    assert waited.deployment == "acme/chat"
    posts = {r.path for r in emu.requests if r.method == "POST"}
    assert posts == {"/v1/deployments/acme/chat/predictions"}
    assert not [r for r in emu.requests if r.path.startswith("/v1/models/")]


async def test_deployments_and_models_mix_in_a_fan_out() -> None:
    async with deployed().serve() as emu, api(emu) as client:
        results = await client.compare(
            [LLAMA, Deployment("acme/chat"), Deployment("acme/pictures")], prompt="mixed"
        )
    assert [r.model for r in results] == [
        LLAMA,
        "deployment:acme/chat",
        "deployment:acme/pictures",
    ]
    assert all(r.ok for r in results)
    assert results[0].text == results[1].text  # the same model underneath
    assert len(results[2].images) == 1
    assert sorted(r.path for r in emu.requests if r.method == "POST") == [
        "/v1/deployments/acme/chat/predictions",
        "/v1/deployments/acme/pictures/predictions",
        f"/v1/models/{LLAMA}/predictions",
    ]


async def test_an_unknown_deployment_is_not_found_without_a_model_look_up() -> None:
    async with deployed().serve() as emu, api(emu) as client:
        with pytest.raises(ResponseStatusError, match="404"):
            await client.predict(Deployment("acme/missing"), prompt="hi")
    assert [r.path for r in emu.requests] == ["/v1/deployments/acme/missing/predictions"]


def test_deployment_names_are_checked() -> None:
    assert str(Deployment("acme/chat")) == "deployment:acme/chat"
    assert Deployment("acme/chat").owner == "acme"
    for bad in ("chat", "acme/", "/chat", "a/b/c", "acme/chat:abc"):
        with pytest.raises(ValueError, match="owner/name"):
            Deployment(bad)


async def test_the_homepage_service_refuses_deployments(emulator: Emulator) -> None:
    async with ReplicateHome(emulator.base_url) as client:
        with pytest.raises(ValueError, match="ReplicateAPI"):
            await client.predict(Deployment("acme/chat"), prompt="hi")  # type: ignore[arg-type]


async def test_the_emulator_creates_lists_and_describes_deployments() -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with (
        deployed().serve() as emu,
        httpx.AsyncClient(base_url=emu.base_url, headers=headers) as http,
    ):
        version = (await http.get(f"/v1/models/{LLAMA}")).json()["latest_version"]["id"]
        body = {
            "name": "my-app",
            "model": LLAMA,
            "version": version,
            "hardware": "gpu-a40-large",
            "min_instances": 0,
            "max_instances": 2,
        }
        created = await http.post("/v1/deployments", json=body)
        assert created.status_code == 200
        assert created.json()["owner"] == "emulator"
        release = created.json()["current_release"]
        assert (release["model"], release["version"], release["number"]) == (LLAMA, version, 1)
        assert release["configuration"]["max_instances"] == 2
        assert (await http.post("/v1/deployments", json=body)).status_code == 409
        bad = {**body, "name": "other", "version": "0" * 64}
        assert (await http.post("/v1/deployments", json=bad)).status_code == 422
        listed = (await http.get("/v1/deployments")).json()["results"]
        assert [f"{d['owner']}/{d['name']}" for d in listed] == [
            "emulator/my-app",
            "acme/pictures",
            "acme/chat",
        ]
        one = await http.get("/v1/deployments/emulator/my-app")
        assert one.json() == created.json()
        assert (await http.get("/v1/deployments/emulator/nope")).status_code == 404
        run = await http.post(
            "/v1/deployments/emulator/my-app/predictions", json={"input": {"prompt": "x"}}
        )
        assert run.status_code == 201
        assert run.json()["deployment"] == "emulator/my-app"
        assert run.json()["model"] == LLAMA


def test_emulator_deployments_are_checked() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        Emulator(deployments={"chat": LLAMA})
    with pytest.raises(ValueError, match="owner/name"):
        Emulator(deployments={"acme/chat": "llama"})
