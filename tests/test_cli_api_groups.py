"""The command line's official-API groups: ``models search/show``, ``collections``,
``hardware``, ``trainings ...``, ``deployments ...`` and ``compare --collection`` /
``--search``.

On an emulator in another process where it serves the operation; the rest through each
command's ``run_*`` on a client whose transport answers with the real shapes of
Replicate's OpenAPI description, until the emulator serves them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from replicate_home import ReplicateAPI
from replicate_home.cli import main
from replicate_home.cli._catalogue import run_catalogue
from replicate_home.cli._columns import choose_columns, needed_inputs
from replicate_home.cli._deployments import run_deployments
from replicate_home.cli._parser import build_parser
from replicate_home.cli._trainings import run_trainings

Spawn = Callable[..., AbstractContextManager[str]]
SECRET = "r8_cli_api_groups_secret"
LLAMA = "meta/meta-llama-3-8b-instruct"
BASE = "http://api.test"
VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"


def schema(*inputs: str) -> dict[str, Any]:
    return {"components": {"schemas": {"Input": {"properties": {i: {} for i in inputs}}}}}


def model(name: str, *inputs: str, described: bool = True) -> dict[str, Any]:
    owner, short = name.split("/")
    version = {"id": "b" * 64, "openapi_schema": schema(*inputs) if described else {}}
    return {"owner": owner, "name": short, "run_count": 7, "latest_version": version}


class Writer:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


class Scripted:
    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.routes.get((request.method, request.url.path))
        assert reply is not None, f"unexpected {request.method} {request.url}"
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json=reply)

    def client(self) -> ReplicateAPI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return ReplicateAPI(SECRET, base_url=BASE, http_client=http, poll_interval=0.01)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.fixture
def api_emulator(emulator_in_subprocess: Spawn, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with emulator_in_subprocess("--duration", "0.2") as url:
        monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
        monkeypatch.setenv("REPLICATE_BASE_URL", url)
        yield url


def test_models_show_and_deployments_on_the_emulator(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "show", LLAMA]) == 0
    shown = capsys.readouterr().out
    assert f"model:       {LLAMA}" in shown
    assert "inputs:      prompt" in shown
    assert main(["models", "show", LLAMA, "--json"]) == 0
    version = json.loads(capsys.readouterr().out)["latest_version"]["id"]
    created = ["deployments", "create", "chat", "--model", f"{LLAMA}:{version}"]
    assert main([*created, "--hardware", "gpu-t4", "--max-instances", "2"]) == 0
    assert "instances:  0-2" in capsys.readouterr().out
    assert main(["deployments", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["DEPLOYMENT", "MODEL", "HARDWARE", "INSTANCES", "RELEASE"]
    assert table[1].split()[1:] == [LLAMA, "gpu-t4", "0-2", "1"]
    name = table[1].split()[0]
    assert main(["deployments", "show", name, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["release"]["version"] == version
    assert main(["generate", "-d", name, "Hi"]) == 0  # it runs
    assert capsys.readouterr().out.strip()
    assert main(["deployments", "create", "x", "--model", LLAMA, "--hardware", "cpu"]) == 1
    assert "owner/name:version" in capsys.readouterr().err


def test_catalogue_commands_and_compare_columns_on_the_emulator(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hardware"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "SKU             NAME",
        "cpu             CPU",
    ]
    assert main(["collections"]) == 0
    slugs = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert {"text-to-image", "language-models", "super-resolution"} <= set(slugs)
    assert main(["collections", "super-resolution", "--json"]) == 0
    upscalers = json.loads(capsys.readouterr().out)["model_names"]
    assert upscalers
    assert main(["models", "search", "upscal", "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == upscalers[0]
    top = ["compare", "--collection", "language-models", "--top", "2", "Hi", "--json"]
    assert main(top) == 0
    out, err = capsys.readouterr()
    chosen = [result["model"] for result in json.loads(out)]
    assert len(chosen) == 2
    assert f"take prompt: {', '.join(chosen)}" in err  # listed before anything was sent
    # Upscalers take an image, not a prompt: none fits, nothing is sent.
    assert main(["compare", "--collection", "super-resolution", "Hi"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "no model of the collection super-resolution" in err


def test_trainings_and_deployment_changes_on_the_emulator(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=api_emulator, headers=headers, timeout=10) as http:
        body = {"owner": "emulator", "name": "tuned", "visibility": "private", "hardware": "cpu"}
        http.post("/v1/models", json=body).raise_for_status()
        version = http.get(f"/v1/models/{LLAMA}").json()["latest_version"]["id"]
    train = ["trainings", "create", f"{LLAMA}:{version}", "--destination", "emulator/tuned"]
    assert main([*train, "-i", "train_data=https://x.test/d.jsonl", "--wait", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["status"] == "succeeded"
    assert trained["output"]["version"].startswith("emulator/tuned:")
    assert main(["trainings", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == [
        trained["id"],
        LLAMA,
        "succeeded",
    ]
    assert main(["trainings", "get", "nope"]) == 1
    assert "training nope not found" in capsys.readouterr().err
    deploy = ["deployments", "create", "tuned", "--model", f"{LLAMA}:{version}"]
    assert main([*deploy, "--hardware", "cpu"]) == 0
    assert main(["deployments", "update", "emulator/tuned", "--max-instances", "4"]) == 0
    assert "instances:  0-4" in capsys.readouterr().out
    assert main(["deployments", "delete", "emulator/tuned"]) == 0
    assert capsys.readouterr().out.endswith("deleted\n")


def test_api_groups_need_the_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    for argv in (["hardware"], ["collections"], ["trainings", "list"], ["models", "search", "x"]):
        assert main(argv) == 2
        assert "official API" in capsys.readouterr().err
    assert main(["models"]) == 0  # the library's own catalog, as before: no network
    assert "gemma-2b" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["compare", "--top", "2", "hello", "-m", LLAMA])
    assert usage.value.code == 2
    assert "--top goes with" in capsys.readouterr().err


HARDWARE = [{"sku": "cpu", "name": "CPU"}, {"sku": "gpu-t4", "name": "Nvidia T4 GPU"}]


@pytest.mark.anyio
async def test_hardware_collections_and_search() -> None:
    script = Scripted(
        {
            ("GET", "/v1/hardware"): httpx.Response(
                200,
                json=[{"name": "CPU", "sku": "cpu"}, {"name": "Nvidia T4 GPU", "sku": "gpu-t4"}],
            ),
            ("GET", "/v1/collections"): {
                "next": None,
                "results": [
                    {"name": "Text to image", "slug": "text-to-image", "description": "Pics"}
                ],
            },
            ("GET", "/v1/collections/text-to-image"): {
                "name": "Text to image",
                "slug": "text-to-image",
                "description": "Pics",
                "models": [model("a/paint", "prompt")],
            },
            ("GET", "/v1/search"): {
                "query": "paint",
                "models": [{"model": model("a/paint", "prompt"), "metadata": {"score": 0.5}}],
                "collections": [{"name": "T2I", "slug": "text-to-image", "description": ""}],
                "pages": [],
            },
        }
    )
    outputs = []
    async with script.client() as client:
        for argv in (
            ["hardware"],
            ["collections"],
            ["collections", "text-to-image"],
            ["models", "search", "paint"],
            ["hardware", "--json"],
        ):
            out = Writer()
            assert await run_catalogue(client, parse(*argv), out) == 0
            outputs.append(out.text)
    hardware, collections, collection, search, as_json = outputs
    assert hardware.splitlines() == ["SKU     NAME", "cpu     CPU", "gpu-t4  Nvidia T4 GPU"]
    assert collections.splitlines()[1].split() == ["text-to-image", "Text", "to", "image", "Pics"]
    assert "a/paint" in collection
    assert search.splitlines()[1].split()[:3] == ["a/paint", "0.500", "7"]
    assert "collections: text-to-image" in search
    assert json.loads(as_json) == [
        {"sku": "cpu", "name": "CPU"},
        {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    ]


def training(status: str) -> dict[str, Any]:
    output = {"version": "c" * 64, "weights": "https://x.test/w"} if status == "succeeded" else None
    return {"id": "t1", "model": "a/base", "version": VERSION, "status": status, "output": output}


@pytest.mark.anyio
async def test_trainings_actions() -> None:
    script = Scripted(
        {
            ("POST", f"/v1/models/a/base/versions/{VERSION}/trainings"): httpx.Response(
                201, json=training("starting")
            ),
            ("GET", "/v1/trainings/t1"): training("succeeded"),
            ("POST", "/v1/trainings/t1/cancel"): training("canceled"),
            ("GET", "/v1/trainings"): {"next": None, "results": [training("succeeded")]},
        }
    )
    texts = []
    async with script.client() as client:
        for argv in (
            [
                "trainings",
                "create",
                f"a/base:{VERSION}",
                "--destination",
                "me/mine",
                "-i",
                "steps=3",
            ],
            ["trainings", "create", f"a/base:{VERSION}", "--destination", "me/mine", "--wait"],
            ["trainings", "list"],
            ["trainings", "cancel", "t1", "--json"],
        ):
            out = Writer()
            assert await run_trainings(client, parse(*argv), out) == 0
            texts.append(out.text)
    created, waited, listed, canceled = texts
    assert "status:      starting" in created
    assert f"new version: {'c' * 64}" in waited
    assert listed.splitlines()[1].split() == ["t1", "a/base", "succeeded", "c" * 64]
    assert json.loads(canceled)["status"] == "canceled"
    assert json.loads(script.requests[0].content) == {
        "destination": "me/mine",
        "input": {"steps": 3},
    }


@pytest.mark.anyio
async def test_deployments_update_and_delete() -> None:
    release = {"number": 3, "model": "a/base", "version": "d" * 64}
    release["configuration"] = {"hardware": "cpu", "min_instances": 0, "max_instances": 4}
    script = Scripted(
        {
            ("PATCH", "/v1/deployments/me/app"): {
                "owner": "me",
                "name": "app",
                "current_release": release,
            },
            ("DELETE", "/v1/deployments/me/app"): httpx.Response(204),
        }
    )
    async with script.client() as client:
        updated, deleted = Writer(), Writer()
        argv = ["deployments", "update", "me/app", "--version", "d" * 64, "--max-instances", "4"]
        assert await run_deployments(client, parse(*argv), updated) == 0
        assert await run_deployments(client, parse("deployments", "delete", "me/app"), deleted) == 0
    assert "release:    3" in updated.text
    assert deleted.text == "deleted\n"
    assert json.loads(script.requests[0].content) == {"version": "d" * 64, "max_instances": 4}


@pytest.mark.anyio
async def test_compare_columns_are_the_models_that_take_the_prompt_sets_inputs(
    tmp_path: Path,
) -> None:
    script = Scripted(
        {
            ("GET", "/v1/collections/text-to-image"): {
                "name": "T2I",
                "slug": "text-to-image",
                "description": "",
                "models": [
                    model("a/paint", "prompt", "width"),
                    model("b/upscale", "image"),
                    model("c/unknown", described=False),
                    model("d/draw", "prompt", "width", "seed"),
                ],
            },
            ("GET", "/v1/models/c/unknown"): model("c/unknown", "prompt", "width"),
        }
    )
    prompts = tmp_path / "set.jsonl"
    prompts.write_text('{"prompt": "a cat", "width": 512}\n')
    args = parse("compare", "--collection", "text-to-image", "--prompts", str(prompts))
    needed = needed_inputs(args)
    async with script.client() as client:
        chosen, seen = await choose_columns(
            client, collection="text-to-image", search=None, top=2, needed=needed
        )
        none, _ = await choose_columns(
            client, collection="text-to-image", search=None, top=None, needed={"audio"}
        )
    assert needed == {"prompt", "width"}
    assert [m.full_name for m in chosen] == ["a/paint", "c/unknown"]  # read once to know
    assert seen == 4
    assert none == []
