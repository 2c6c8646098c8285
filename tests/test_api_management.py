"""Managing models and deployments through ``ReplicateAPI``: ``api.deployments``
(list, get, create, update, delete) and ``api.models`` (create, update, delete, delete a
version).

On the emulator over loopback where it serves the operation (deployments list, get and
create); the rest answered with the real shapes of Replicate's OpenAPI description by a
scripted transport until the emulator serves them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from replicate_home import (
    Deployment,
    DeploymentRelease,
    InvalidInputError,
    Model,
    ReplicateAPI,
    ResponseStatusError,
)
from replicate_home.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://api.test"
TOKEN = "r8_SECRET_token_value_123"
VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
NEW_VERSION = "e" * 64


def deployment(version: str = VERSION, **configuration: Any) -> dict[str, Any]:
    """A deployment object as the OpenAPI description's example has it."""
    return {
        "owner": "acme",
        "name": "my-app-image-generator",
        "current_release": {
            "number": 2,
            "model": "stability-ai/sdxl",
            "version": version,
            "created_at": "2024-02-15T16:32:57.018467Z",
            "created_by": {"type": "organization", "username": "acme", "name": "Acme Corp, Inc."},
            "configuration": {
                "hardware": "gpu-t4",
                "min_instances": 1,
                "max_instances": 5,
                **configuration,
            },
        },
    }


MODEL = {
    "url": "https://replicate.com/alice/hot-dog-detector",
    "owner": "alice",
    "name": "hot-dog-detector",
    "description": "Detect hot dogs in images",
    "visibility": "private",
    "github_url": None,
    "paper_url": None,
    "license_url": None,
    "run_count": 0,
    "cover_image_url": None,
    "default_example": None,
    "latest_version": None,
}


class Scripted:
    def __init__(self, routes: dict[tuple[str, str], httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.routes.get((request.method, request.url.path))
        assert reply is not None, f"unexpected {request.method} {request.url}"
        return reply

    def client(self) -> ReplicateAPI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return ReplicateAPI(TOKEN, base_url=BASE, http_client=http)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


async def test_create_get_list_and_run_a_deployment_on_the_emulator(emulator: Emulator) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url, poll_interval=0.01) as api:
        model = await api.models.get("meta/meta-llama-3-8b-instruct")
        assert model.latest_version is not None
        created = await api.deployments.create(
            "my-llama",
            model=f"{model.full_name}:{model.latest_version.id}",
            hardware="gpu-t4",
            min_instances=0,
            max_instances=2,
        )
        got = await api.deployments.get(created)
        listed = [item async for item in api.deployments.list()]
        prediction = await api.predict(got, prompt="Hi")  # what it returns runs as it is
        with pytest.raises(ResponseStatusError) as taken:
            await api.deployments.create(
                "my-llama", model=f"{model.full_name}:{model.latest_version.id}", hardware="cpu"
            )
    assert isinstance(created, Deployment)
    assert created.name.endswith("/my-llama")
    assert created.release is not None
    assert created.release.model == model.full_name
    assert created.release.version == model.latest_version.id
    assert (created.release.hardware, created.release.max_instances) == ("gpu-t4", 2)
    assert got == created
    assert got.release == created.release
    assert created in listed
    assert prediction.status == "succeeded"
    assert taken.value.status_code == 409


async def test_update_and_delete_a_deployment() -> None:
    path = "/v1/deployments/acme/my-app-image-generator"
    script = Scripted(
        {
            ("PATCH", path): httpx.Response(200, json=deployment(NEW_VERSION, max_instances=10)),
            ("DELETE", path): httpx.Response(204),
        }
    )
    async with script.client() as api:
        updated = await api.deployments.update(
            "acme/my-app-image-generator", version=NEW_VERSION, max_instances=10
        )
        await api.deployments.delete(updated)
    assert updated.release == DeploymentRelease(
        number=2,
        created_at=datetime(2024, 2, 15, 16, 32, 57, 18467, tzinfo=timezone.utc),
        model="stability-ai/sdxl",
        version=NEW_VERSION,
        created_by="acme",
        hardware="gpu-t4",
        min_instances=1,
        max_instances=10,
    )
    assert script.bodies() == [{"version": NEW_VERSION, "max_instances": 10}, None]
    assert [r.method for r in script.requests] == ["PATCH", "DELETE"]


async def test_create_update_and_delete_a_model_and_a_version() -> None:
    script = Scripted(
        {
            ("POST", "/v1/models"): httpx.Response(201, json=MODEL),
            ("PATCH", "/v1/models/alice/hot-dog-detector"): httpx.Response(
                200, json={**MODEL, "description": "Hot dogs, or not"}
            ),
            ("DELETE", f"/v1/models/alice/hot-dog-detector/versions/{VERSION}"): httpx.Response(
                202
            ),
            ("DELETE", "/v1/models/alice/hot-dog-detector"): httpx.Response(204),
        }
    )
    async with script.client() as api:
        created = await api.models.create(
            "alice/hot-dog-detector",
            hardware="cpu",
            description="Detect hot dogs in images",
            github_url="https://github.com/alice/hot-dog-detector",
        )
        updated = await api.models.update(created, description="Hot dogs, or not", readme="# Hi")
        await api.models.versions.delete(created, VERSION)
        await api.models.delete("alice/hot-dog-detector")
    assert isinstance(created, Model)
    assert created.latest_version is None
    assert updated.description == "Hot dogs, or not"
    assert script.bodies() == [
        {
            "owner": "alice",
            "name": "hot-dog-detector",
            "visibility": "private",
            "hardware": "cpu",
            "description": "Detect hot dogs in images",
            "github_url": "https://github.com/alice/hot-dog-detector",
        },
        {"description": "Hot dogs, or not", "readme": "# Hi"},
        None,
        None,
    ]


async def test_a_refused_change_is_a_typed_error() -> None:
    problem = {"title": "Invalid", "detail": "min_instances too high", "status": 422}
    refused = {"title": "Conflict", "detail": "model has versions", "status": 409}
    script = Scripted(
        {
            ("PATCH", "/v1/deployments/acme/app"): httpx.Response(422, json=problem),
            ("DELETE", "/v1/models/alice/busy"): httpx.Response(409, json=refused),
        }
    )
    async with script.client() as api:
        with pytest.raises(InvalidInputError, match="min_instances too high"):
            await api.deployments.update("acme/app", min_instances=5)
        with pytest.raises(ResponseStatusError, match="model has versions") as conflict:
            await api.models.delete("alice/busy")
    assert conflict.value.status_code == 409


async def test_bad_management_arguments_fail_before_any_request() -> None:
    script = Scripted({})
    async with script.client() as api:
        with pytest.raises(ValueError, match="owner/name:version"):
            await api.deployments.create("x", model="stability-ai/sdxl", hardware="cpu")
        with pytest.raises(ValueError, match="max_instances"):
            await api.deployments.create(
                "x", model=f"a/b:{VERSION}", hardware="cpu", max_instances=21
            )
        with pytest.raises(ValueError, match="more than"):
            await api.deployments.update("a/b", min_instances=3, max_instances=2)
        with pytest.raises(ValueError, match="at least one"):
            await api.deployments.update("a/b")
        with pytest.raises(ValueError, match="version id"):
            await api.deployments.update("a/b", version="latest")
        with pytest.raises(ValueError, match="visibility"):
            await api.models.create("a/b", hardware="cpu", visibility="secret")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="github_url"):
            await api.models.update("a/b", github_url="javascript:alert(1)")
        with pytest.raises(ValueError, match="at least one"):
            await api.models.update("a/b")
        with pytest.raises(ValueError, match="deployment"):
            await api.deployments.delete("../etc")
    assert script.requests == []


async def test_update_and_delete_a_deployment_under_the_emulators_rules(
    emulator: Emulator,
) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        model = await api.models.get("meta/meta-llama-3-8b-instruct")
        assert model.latest_version is not None
        reference = f"{model.full_name}:{model.latest_version.id}"
        created = await api.deployments.create("kept", model=reference, hardware="gpu-t4")
        online = await api.deployments.update(created, min_instances=1, max_instances=3)
        with pytest.raises(ResponseStatusError) as busy:
            await api.deployments.delete(online)  # the real rule: offline first
        with pytest.raises(InvalidInputError):
            await api.deployments.update(created, version="0" * 64)
        offline = await api.deployments.update(created, min_instances=0)
        await api.deployments.delete(offline)
        left = [deployment.name async for deployment in api.deployments.list()]
    assert created.release is not None
    assert online.release is not None
    assert offline.release is not None
    assert (online.release.number, online.release.min_instances) == (
        created.release.number + 1,
        1,
    )
    assert (offline.release.min_instances, offline.release.max_instances) == (0, 3)
    assert busy.value.status_code == 409
    assert created.name not in left
