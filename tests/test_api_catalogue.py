"""``ReplicateAPI``'s read-only groups: models (get, list, readme, examples, versions),
collections, search, hardware and the account.

Against the emulator over loopback where it serves the operation; the operations it
does not serve yet are answered with the real shapes of Replicate's OpenAPI description
(tests/data/openapi) by a scripted transport.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from replicate_home import (
    Account,
    AuthenticationError,
    Collection,
    Hardware,
    Model,
    ModelVersion,
    Prediction,
    ReplicateAPI,
    ResponseStatusError,
    SearchResults,
    UnexpectedResponseFormat,
)
from replicate_home.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://api.test"
TOKEN = "r8_SECRET_token_value_123"
LLAMA = "meta/meta-llama-3-8b-instruct"
VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"

MODEL = {
    "url": "https://replicate.com/google/nano-banana",
    "owner": "google",
    "name": "nano-banana",
    "description": "Google's latest image editing model in Gemini 2.5",
    "visibility": "public",
    "github_url": None,
    "paper_url": None,
    "license_url": None,
    "run_count": 4304274,
    "cover_image_url": "https://tjzk.replicate.delivery/models/this.png",
    "default_example": None,
    "latest_version": {
        "id": "56b8f5f774804fda8ffe63f01d3e2900f97609bd7ae976f50e595854110de200",
        "created_at": "2025-09-12T16:36:33.8847790+00:00",
        "cog_version": "0.16.7",
        "openapi_schema": {},
    },
}

#: The search example of the OpenAPI description.
SEARCH = {
    "collections": [
        {
            "description": "Models for editing and manipulating images",
            "models": ["google/nano-banana", "stability-ai/stable-diffusion"],
            "name": "Image Editing",
            "slug": "image-editing",
        }
    ],
    "models": [
        {
            "metadata": {
                "generated_description": "Generate and edit images from text prompts.",
                "score": 1.3847375700706976,
                "tags": ["text-to-image", "image-to-image", "image-editing"],
            },
            "model": MODEL,
        },
        {"metadata": {}, "not-a-model": 1},
    ],
    "pages": [{"href": "/docs/guides/image-editing", "name": "Getting started with image editing"}],
    "query": "nano banana",
}

HARDWARE = [
    {"name": "CPU", "sku": "cpu"},
    {"name": "Nvidia T4 GPU", "sku": "gpu-t4"},
    {"name": "Nvidia A40 GPU", "sku": "gpu-a40-small"},
]

EXAMPLE = {
    "id": "ufawqhfynnddngldkgtslldrkq",
    "model": "google/nano-banana",
    "version": VERSION,
    "status": "succeeded",
    "input": {"prompt": "a cat"},
    "output": "https://replicate.delivery/pbxt/cat.png",
    "created_at": "2024-01-01T00:00:00Z",
    "urls": {"get": "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq"},
}


class Scripted:
    """Answers by path (and query), recording every request."""

    def __init__(self, routes: dict[str, list[httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        answers = self.routes.get(key) or self.routes.get(request.url.path)
        assert answers, f"unexpected {request.method} {key}"
        return answers.pop(0)

    def client(self) -> ReplicateAPI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return ReplicateAPI(TOKEN, base_url=BASE, http_client=http)


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


async def test_models_versions_and_account_on_the_emulator(emulator: Emulator) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        listed = [model async for model in api.models.list()]
        model = await api.models.get(listed[0].full_name)
        versions = [version async for version in api.models.versions.list(model)]
        version = await api.models.versions.get(model.full_name, versions[0])
        account = await api.account.get()
    assert listed
    assert all(isinstance(item, Model) for item in listed)
    assert model == listed[0]
    assert model.latest_version is not None
    assert versions == [model.latest_version]
    assert isinstance(version, ModelVersion)
    assert version.id == model.latest_version.id
    assert version.openapi_schema  # the input and output schema
    assert isinstance(account, Account)
    assert account.username


async def test_collections_search_and_hardware_read_the_described_shapes() -> None:
    collection = {
        "name": "Super resolution",
        "slug": "super-resolution",
        "description": "Upscaling models.",
        "full_description": "## Overview",
        "models": [MODEL],
    }
    page_two = f"{BASE}/v1/collections?cursor=abc"
    script = Scripted(
        {
            "/v1/collections": [
                ok({"next": page_two, "previous": None, "results": [collection]}),
            ],
            "/v1/collections?cursor=abc": [
                ok({"next": None, "previous": None, "results": [SEARCH["collections"][0]]})
            ],
            "/v1/collections/super-resolution": [ok(collection)],
            "/v1/search": [ok(SEARCH)],
            "/v1/hardware": [ok(HARDWARE)],
        }
    )
    async with script.client() as api:
        listed = [item async for item in api.collections.list()]
        one = await api.collections.get("super-resolution")
        found = await api.search("nano banana", limit=5)
        hardware = await api.hardware.list()
    assert [item.slug for item in listed] == ["super-resolution", "image-editing"]
    assert isinstance(one, Collection)
    assert [model.full_name for model in one.models] == ["google/nano-banana"]
    assert one.model_names == ("google/nano-banana",)
    assert isinstance(found, SearchResults)
    assert [hit.model.full_name for hit in found.models] == ["google/nano-banana"]
    assert found.models[0].score == pytest.approx(1.3847375700706976)
    assert found.models[0].tags == ("text-to-image", "image-to-image", "image-editing")
    assert found.collections[0].model_names == (
        "google/nano-banana",
        "stability-ai/stable-diffusion",
    )
    assert found.pages[0].href == "/docs/guides/image-editing"
    assert hardware == [
        Hardware("cpu", "CPU"),
        Hardware("gpu-t4", "Nvidia T4 GPU"),
        Hardware("gpu-a40-small", "Nvidia A40 GPU"),
    ]
    search = next(r for r in script.requests if r.url.path == "/v1/search")
    assert dict(search.url.params) == {"query": "nano banana", "limit": "5"}
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in script.requests)


async def test_readme_examples_and_model_listing_order() -> None:
    script = Scripted(
        {
            "/v1/models/google/nano-banana/readme": [
                httpx.Response(200, text="# Nano banana\n\nEdits images.")
            ],
            "/v1/models/google/nano-banana/examples": [
                ok({"next": None, "previous": None, "results": [EXAMPLE]})
            ],
            "/v1/models": [ok({"next": None, "previous": None, "results": [MODEL]})],
        }
    )
    async with script.client() as api:
        readme = await api.models.readme.get("google/nano-banana")
        examples = [item async for item in api.models.examples.list("google/nano-banana")]
        models = [
            item async for item in api.models.list(sort_by="model_created_at", sort_direction="asc")
        ]
    assert readme == "# Nano banana\n\nEdits images."
    assert [type(item) for item in examples] == [Prediction]
    assert examples[0].output == "https://replicate.delivery/pbxt/cat.png"
    assert models[0].run_count == 4304274
    listing = script.requests[-1]
    assert dict(listing.url.params) == {"sort_by": "model_created_at", "sort_direction": "asc"}


async def test_a_cursor_sent_back_ends_the_listing() -> None:
    again = {"next": f"{BASE}/v1/models?cursor=same", "previous": None, "results": [MODEL]}
    script = Scripted({"/v1/models": [ok(again), ok(again), ok(again)]})
    async with script.client() as api:
        models = [item async for item in api.models.list()]
    assert len(models) == 2  # the first page, the page of "same", then it stops
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("path", "body", "call"),
    [
        ("/v1/hardware", {"sku": "cpu"}, "hardware"),
        ("/v1/collections/x", {"name": "no slug"}, "collection"),
        ("/v1/account", {"type": "user"}, "account"),
        ("/v1/models/a/b", {"owner": "a", "name": "../b"}, "model"),
    ],
)
async def test_malformed_answers_are_typed_errors(path: str, body: Any, call: str) -> None:
    script = Scripted({path: [httpx.Response(200, content=json.dumps(body).encode())]})
    async with script.client() as api:
        calls = {
            "hardware": api.hardware.list,
            "collection": lambda: api.collections.get("x"),
            "account": api.account.get,
            "model": lambda: api.models.get("a/b"),
        }
        with pytest.raises(UnexpectedResponseFormat):
            await calls[call]()


async def test_a_missing_collection_is_a_typed_404_without_the_token() -> None:
    problem = {"detail": f"Not found (token {TOKEN})", "status": 404}
    script = Scripted({"/v1/collections/gone": [ok(problem, 404)]})
    async with script.client() as api:
        with pytest.raises(ResponseStatusError) as missing:
            await api.collections.get("gone")
    assert missing.value.status_code == 404
    assert TOKEN not in str(missing.value)
    assert TOKEN not in repr(missing.value.args)


async def test_bad_arguments_fail_before_any_request() -> None:
    script = Scripted({})
    async with script.client() as api:
        for bad in ("no-slash", "a/b/c", "../x", "a/..", 42):
            with pytest.raises(ValueError, match="model"):
                await api.models.get(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="slug"):
            await api.collections.get("Not A Slug/..")
        for query, limit in (("", 20), ("cats", 0), ("cats", 51), ("cats", True)):
            with pytest.raises(ValueError, match=r"query|limit"):
                await api.search(query, limit=limit)
        with pytest.raises(ValueError, match="version id"):
            await api.models.versions.get("a/b", "latest")
        with pytest.raises(ValueError, match="sort_by"):
            api.models.list(sort_by="name")  # type: ignore[arg-type]
    assert script.requests == []


async def test_groups_need_an_open_client() -> None:
    from replicate_home import ClientNotOpenError

    api = ReplicateAPI(TOKEN, base_url=BASE)
    with pytest.raises(ClientNotOpenError):
        await api.hardware.list()
    with pytest.raises(ClientNotOpenError):
        api.collections.list()


async def test_hardware_collections_search_readme_and_examples_on_the_emulator(
    emulator: Emulator,
) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        hardware = await api.hardware.list()
        collections = [item async for item in api.collections.list()]
        images = await api.collections.get("text-to-image")
        found = await api.search("upscal", limit=1)
        readme = await api.models.readme.get("stability-ai/sdxl")
        examples = [item async for item in api.models.examples.list(LLAMA)]
    assert hardware[:2] == [Hardware("cpu", "CPU"), Hardware("gpu-t4", "Nvidia T4 GPU")]
    assert "text-to-image" in {item.slug for item in collections}
    assert all(item.models == () for item in collections)  # a listing has no models
    assert images.models
    assert images.model_names == tuple(model.full_name for model in images.models)
    assert all(model.latest_version is not None for model in images.models)
    assert len(found.models) == 1
    assert "upscal" in (found.models[0].model.description or "") + found.models[0].model.name
    assert readme.startswith("# stability-ai/sdxl")
    assert [example.status for example in examples] == ["succeeded"]


async def test_model_management_under_the_emulators_rules(emulator: Emulator) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        account = await api.account.get()
        name = f"{account.username}/hot-dog"
        created = await api.models.create(name, hardware="cpu", description="Hot dogs")
        updated = await api.models.update(created, readme="# Hot dog\n\nDetects them.")
        readme = await api.models.readme.get(name)
        with pytest.raises(ResponseStatusError) as taken:
            await api.models.create(name, hardware="cpu")
        with pytest.raises(AuthenticationError) as not_ours:  # 403: not the token's
            await api.models.delete("stability-ai/sdxl")
        await api.models.delete(updated)
        with pytest.raises(ResponseStatusError) as gone:
            await api.models.get(name)
    assert (created.full_name, created.visibility, created.latest_version) == (
        name,
        "private",
        None,
    )
    assert readme == "# Hot dog\n\nDetects them."
    assert taken.value.status_code == 409
    assert not_ours.value.status_code == 403
    assert "only change models you own" in str(not_ours.value)
    assert gone.value.status_code == 404
