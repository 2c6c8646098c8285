"""The emulator's catalogue routes over loopback, on both backends: hardware, collections,
search (``GET /v1/search`` and ``QUERY /v1/models``), model management under the real
rules (create, update, delete), README and examples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

TOKEN = "r8_catalogue"


@asynccontextmanager
async def served(emulator: Emulator | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        (emulator or Emulator(Scenario(duration=0.2))).serve() as emu,
        httpx.AsyncClient(
            base_url=f"{emu.base_url}/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        ) as client,
    ):
        yield client


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_hardware_is_a_plain_list_of_skus() -> None:
    async with served() as client:
        answer = await client.get("/hardware")
    assert answer.status_code == 200
    assert answer.json()[:2] == [
        {"sku": "cpu", "name": "CPU"},
        {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    ]


async def test_collections_hold_the_emulators_models_by_kind() -> None:
    emulator = Emulator(models={"acme/upscaler-2": "upscale"})
    async with served(emulator) as client:
        listed = (await client.get("/collections")).json()
        assert listed["next"] is None
        slugs = [item["slug"] for item in listed["results"]]
        assert {"text-to-image", "language-models", "super-resolution"} <= set(slugs)
        assert listed["results"][0].keys() == {"name", "slug", "description"}
        upscalers = (await client.get("/collections/super-resolution")).json()
        assert [m["owner"] + "/" + m["name"] for m in upscalers["models"]] == [
            "replicate/upscaler",
            "acme/upscaler-2",
        ]
        assert upscalers["full_description"].startswith("## Overview")
        images = (await client.get("/collections/text-to-image")).json()
        assert "stability-ai/sdxl" in {f"{m['owner']}/{m['name']}" for m in images["models"]}
        problem_of(await client.get("/collections/no-such-collection"), 404)


async def test_search_finds_models_collections_and_pages_by_words() -> None:
    async with served() as client:
        answer = await client.get("/search", params={"query": "upscal", "limit": 1})
        assert answer.status_code == 200
        found = answer.json()
        assert found["query"] == "upscal"
        (model,) = found["models"]
        assert (model["model"]["owner"], model["model"]["name"]) == ("replicate", "upscaler")
        assert model["metadata"]["score"] > 0
        assert "super-resolution" in model["metadata"]["tags"]
        assert [c["slug"] for c in found["collections"]] == ["super-resolution"]
        assert found["collections"][0]["models"] == ["replicate/upscaler"]
        assert [p["href"] for p in found["pages"]] == ["/docs/guides/upscale-images"]
        nothing = (await client.get("/search", params={"query": "zzzz"})).json()
        assert (nothing["models"], nothing["collections"], nothing["pages"]) == ([], [], [])
        missing = await client.get("/search")
        assert (missing.status_code, missing.json()) == (
            400,
            {"detail": 'Query parameter "query" is required'},
        )
        assert (await client.get("/search", params={"query": "a", "limit": 51})).status_code == 400


async def test_the_official_clients_search_is_a_query_request_on_models() -> None:
    async with served() as client:
        answer = await client.request(
            "QUERY", "/models", content="whisper", headers={"Content-Type": "text/plain"}
        )
        assert answer.status_code == 200
        page = answer.json()
        assert [f"{m['owner']}/{m['name']}" for m in page["results"]] == ["openai/whisper"]
        problem_of(await client.request("QUERY", "/models", content=""), 400)


async def test_model_management_follows_the_real_rules() -> None:
    body = {"owner": "emulator", "name": "hot-dog", "visibility": "private", "hardware": "cpu"}
    async with served() as client:
        created = await client.post("/models", json={**body, "description": "Hot dogs"})
        assert created.status_code == 201
        model = created.json()
        assert (model["owner"], model["name"], model["latest_version"]) == (
            "emulator",
            "hot-dog",
            None,
        )
        assert model["description"] == "Hot dogs"
        problem_of(await client.post("/models", json=body), 409)  # the name is taken
        problem_of(await client.post("/models", json={**body, "owner": "someone"}), 403)
        problem_of(await client.post("/models", json={**body, "hardware": "gpu-x"}), 422)
        problem_of(await client.post("/models", json={**body, "name": "Bad Name"}), 422)
        problem_of(await client.post("/models", json={"owner": "emulator"}), 422)
        # Nobody's models but the account's change; unknown account models are 404.
        problem_of(await client.patch("/models/stability-ai/sdxl", json={}), 403)
        problem_of(await client.delete("/models/stability-ai/sdxl"), 403)
        problem_of(await client.get("/models/emulator/never-made"), 404)
        updated = await client.patch(
            "/models/emulator/hot-dog",
            json={"readme": "# Hot dog\n\nDetects them.", "github_url": "https://x.test/h"},
        )
        assert updated.status_code == 200
        assert updated.json()["github_url"] == "https://x.test/h"
        readme = await client.get("/models/emulator/hot-dog/readme")
        assert (readme.status_code, readme.text) == (200, "# Hot dog\n\nDetects them.")
        assert readme.headers["content-type"].startswith("text/plain")
        problem_of(await client.patch("/models/emulator/hot-dog", json={"name": "x"}), 422)
        assert (await client.get("/models/emulator/hot-dog/versions")).json()["results"] == []
        deleted = await client.delete("/models/emulator/hot-dog")
        assert (deleted.status_code, deleted.content) == (204, b"")
        problem_of(await client.get("/models/emulator/hot-dog"), 404)
        public = {**body, "name": "shown", "visibility": "public"}
        assert (await client.post("/models", json=public)).status_code == 201
        problem_of(await client.delete("/models/emulator/shown"), 409)  # public


async def test_readme_and_examples_of_catalogue_models() -> None:
    async with served() as client:
        readme = await client.get("/models/stability-ai/sdxl/readme")
        assert readme.status_code == 200
        assert readme.text.startswith("# stability-ai/sdxl")
        examples = (await client.get("/models/meta/meta-llama-3-8b-instruct/examples")).json()
        (example,) = examples["results"]
        assert example["status"] == "succeeded"
        assert example["output"]
        assert "stream" not in example["urls"]
        files = (await client.get("/models/replicate/upscaler/examples")).json()
        assert files == {"next": None, "previous": None, "results": []}


async def test_models_list_sorts_and_checks_its_parameters() -> None:
    async with served() as client:
        ascending = await client.get("/models", params={"sort_direction": "asc"})
        descending = await client.get("/models", params={"sort_by": "model_created_at"})
        assert ascending.status_code == descending.status_code == 200
        assert len(ascending.json()["results"]) == len(descending.json()["results"])
        problem_of(await client.get("/models", params={"sort_by": "name"}), 400)
        problem_of(await client.get("/models", params={"sort_direction": "up"}), 400)


async def test_file_metadata_must_be_a_json_object() -> None:
    async with served() as client:
        refused = await client.post(
            "/files",
            files={"content": ("a.bin", b"bytes", "application/octet-stream")},
            data={"metadata": "[1, 2]"},
        )
        problem_of(refused, 422)
        kept = await client.post(
            "/files",
            files={"content": ("a.bin", b"bytes", "application/octet-stream")},
            data={"metadata": '{"run": 1}'},
        )
        assert (kept.status_code, kept.json()["metadata"]) == (201, {"run": 1})
