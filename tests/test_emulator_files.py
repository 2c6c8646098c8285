"""The emulator's Files API (``/v1/files``): multipart create, get, list, delete, signed
download; and the official client 1.0.7 running the emulator's upscaler with a file
input (uploaded through it, or sent as a ``data:`` URI) and reading the output
``FileOutput``, unchanged: the output names the SHA-256 of the input it received."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest
import replicate

from replicate_home.emulator import Emulator, Scenario, png_text

pytestmark = pytest.mark.anyio

TOKEN = "r8_files"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def test_create_get_list_delete(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=AUTH) as http:
        created = await http.post(
            "/v1/files",
            files={"content": ("cat.png", PNG, "image/png")},
            data={"metadata": '{"ref": 7}'},
        )
        assert created.status_code == 201
        file = created.json()
        assert file["name"] == "cat.png"
        assert file["content_type"] == "image/png"
        assert file["size"] == len(PNG)
        assert file["metadata"] == {"ref": 7}
        assert len(file["checksums"]["sha256"]) == 64
        assert file["urls"]["get"] == f"{emulator.base_url}/v1/files/{file['id']}"
        got = await http.get(f"/v1/files/{file['id']}")
        assert got.json() == file
        second = (
            await http.post("/v1/files", files={"content": ("b.bin", b"\x00", "application/x")})
        ).json()
        listed = (await http.get("/v1/files")).json()
        assert [f["id"] for f in listed["results"]] == [second["id"], file["id"]]
        assert listed["next"] is None
        deleted = await http.delete(f"/v1/files/{file['id']}")
        assert deleted.status_code == 204
        assert (await http.get(f"/v1/files/{file['id']}")).status_code == 404
        assert (await http.delete(f"/v1/files/{file['id']}")).status_code == 404
        # A body that is not a multipart upload is refused; so is a request without token.
        assert (await http.post("/v1/files", json={"content": "x"})).status_code == 400
    async with httpx.AsyncClient(base_url=emulator.base_url) as anonymous:
        assert (await anonymous.get("/v1/files")).status_code == 401
        assert (await anonymous.get(f"/v1/files/{second['id']}/download")).status_code == 404


async def test_the_official_client_uploads_an_input_and_reads_an_output(
    anyio_backend: str, tmp_path: Path
) -> None:
    if anyio_backend == "trio":
        pytest.skip("the official client's async API sleeps with asyncio.sleep: asyncio only")
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    # The official client makes FileOutputs of https: and data: outputs only; the
    # emulator serves plain http on loopback, so its outputs are data: URIs here.
    async with Emulator(Scenario(duration=0.1, file_output="data")).serve() as emu:
        client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
        try:
            # The upscaler wants no prompt; its output PNG names the input it received.
            with image.open("rb") as opened:
                first = await client.async_run(
                    "replicate/upscaler", input={"image": opened, "scale": 2}
                )
            data = await first.aread()
            # Sent inline as a data: URI instead of uploaded.
            with image.open("rb") as opened:
                inline = await client.async_run(
                    "replicate/upscaler",
                    input={"image": opened},
                    file_encoding_strategy="base64",
                )
            inline_data = await inline.aread()
            uploaded = await client.files.async_create(io.BytesIO(PNG), filename="x.png")
            again = await client.files.async_get(uploaded.id)
            listed = await client.files.async_list()
            removed = await client.files.async_delete(uploaded.id)
        finally:
            await client._async_client.aclose()
        async with httpx.AsyncClient(base_url=emu.base_url, headers=AUTH) as http:
            inline_prediction, prediction = (await http.get("/v1/predictions")).json()["results"]
            sent = prediction["input"]["image"]
            sent_inline = inline_prediction["input"]["image"]
            file_object = (await http.get(sent)).json()
            base_url = emu.base_url
        uploads = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/files"]
        creates = [
            r for r in emu.requests if r.method == "POST" and r.path.endswith("/predictions")
        ]
    assert type(first).__name__ == "FileOutput"
    assert png_text(data)["input-sha256"] == hashlib.sha256(PNG).hexdigest()
    assert png_text(data)["input-length"] == str(len(PNG))
    assert png_text(inline_data)["input-sha256"] == hashlib.sha256(PNG).hexdigest()
    assert sent_inline.startswith("data:")
    # The input went up through /v1/files and the create carried its urls.get.
    assert sent.startswith(f"{base_url}/v1/files/")
    assert file_object["size"] == len(PNG)
    assert file_object["name"] == "cat.png"
    assert len(uploads) == 2
    assert len(creates) == 2
    assert again.id == uploaded.id
    assert again.size == len(PNG)
    assert uploaded.id in [f.id for f in listed]
    assert removed is True
