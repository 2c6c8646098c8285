"""The official JavaScript client (``replicate`` 1.4.0 from npm), unchanged, against the
emulator: text by name, a stream from the stream origin, a file input uploaded through
``/v1/files`` and one sent as a ``data:`` URI to a model with no prompt (its PNG output
proves the bytes arrived), a community model by version, handles, pagination and the
Files API.

The client lives in ``tests/interop/js`` (``package.json`` and ``package-lock.json`` pin
it); ``.ci/run`` installs it with ``npm ci``. Where Node.js or the installed client is
missing the test is skipped, unless ``REPLICATE_HOME_INTEROP=require`` (CI sets it), so a
machine without Node.js can still run the suite while CI can never skip it silently.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import anyio
import httpx
import pytest

from replicate_home.emulator import Emulator, png_text
from replicate_home.emulator._simulation import generate_text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).parent / "interop" / "js"
IMAGE = b"\x89PNG\r\n\x1a\n not really a picture, but any bytes must arrive intact"


def _node() -> str:
    node = shutil.which("node")
    installed = (HERE / "node_modules" / "replicate" / "package.json").is_file()
    if node is None or not installed:
        why = "Node.js is not installed" if node is None else "run `npm ci` in tests/interop/js"
        if os.environ.get("REPLICATE_HOME_INTEROP") == "require":
            pytest.fail(f"the JavaScript interop check must run here: {why}")
        pytest.skip(why)
    return node


async def test_the_official_javascript_client_runs_unchanged(
    emulator: Emulator, tmp_path: Path
) -> None:
    node = _node()
    image = tmp_path / "input.png"
    image.write_bytes(IMAGE)
    environment = {
        **os.environ,
        "REPLICATE_API_TOKEN": "r8_interop",
        "REPLICATE_BASE_URL": emulator.base_url + "/v1",
        "INTEROP_IMAGE": str(image),
    }
    with anyio.fail_after(60):
        done = await anyio.run_process([node, "check.mjs"], cwd=HERE, env=environment, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = json.loads(done.stdout)

    # Both ways of sending the file reach the model intact: the PNG's proof chunks.
    for key, scale in (("upload", "2"), ("data_uri", "3")):
        proof = png_text(base64.b64decode(report[key]))
        assert proof["input-sha256"] == hashlib.sha256(IMAGE).hexdigest(), key
        assert proof["input-length"] == str(len(IMAGE)), key
        assert proof["scale"] == scale, key
    uploads = [r for r in emulator.requests if r.method == "POST" and r.path == "/v1/files"]
    assert len(uploads) == 2  # the run's input and files.create; the data: URI sent none

    # What the client read (by run() and by stream()) is what the emulator produced.
    async with httpx.AsyncClient(
        base_url=emulator.base_url, headers={"Authorization": "Bearer r8_interop"}
    ) as http:
        listed = (await http.get("/v1/predictions")).json()["results"]
        outputs = {}
        for item in listed:
            prediction = (await http.get(f"/v1/predictions/{item['id']}")).json()
            prompt = prediction["input"].get("prompt")
            if isinstance(prompt, str) and isinstance(prediction["output"], list):
                outputs[prompt] = "".join(map(str, prediction["output"]))
    assert report["text"] == outputs["interop text"] != ""
    assert report["stream"] == outputs["interop stream"] != ""
    assert report["community"] == outputs["interop community"] != ""
    streams = [r for r in emulator.requests if r.origin == "stream"]
    assert streams
    assert all("authorization" not in r.headers for r in streams)

    assert report["waited"]["status"] == report["got"] == "succeeded"
    assert report["canceled"] == "canceled"
    # Listed before the trained model ran (the script's last prediction).
    assert report["listed"] == len(listed) - 1 >= 7
    assert report["file"] == {"same": True, "size": len(IMAGE)}
    # Trainings, collections, search, hardware and model/deployment management.
    assert report["hardware"][:2] == ["cpu", "gpu-t4"]
    assert "super-resolution" in report["collections"]
    assert report["upscalers"] == ["replicate/upscaler"]
    assert report["search"] == ["openai/whisper"]
    training = report["training"]
    assert (training["status"], training["listed"]) == ("succeeded", True)
    assert training["version"].startswith("emulator/interop-tuned:")
    assert report["tuned"] == "".join(generate_text("emulator/interop-tuned", "interop tuned"))
    assert report["training_canceled"] == "canceled"
    assert report["deployment"] == {"release": 2, "max": 4, "deleted": True}
