"""The emulator over https (``Emulator(tls=True)``, ``replicate-home emulator --tls``):
every origin on TLS with a local certificate authority, ``https`` output URLs."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import replicate

from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

SDXL = "stability-ai/sdxl"
LLAMA = "meta/meta-llama-3-8b-instruct"


async def test_every_origin_is_https_and_trusted_only_through_the_ca_bundle() -> None:
    emulator = Emulator(Scenario(duration=0.1), tls=True)
    async with emulator.serve() as emu:
        assert emu.base_url.startswith("https://127.0.0.1:")
        assert emu.stream_url.startswith("https://127.0.0.1:")
        bundle = emu.ca_bundle
        assert bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
        async with httpx.AsyncClient(verify=emu.ssl_context()) as http:
            created = await http.post(
                f"{emu.base_url}/v1/models/{LLAMA}/predictions",
                json={"input": {"prompt": "hi"}},
                headers={"Authorization": "Bearer t", "Prefer": "wait"},
            )
            assert created.status_code == 201
            prediction = created.json()
            assert prediction["urls"]["get"].startswith("https://")
            stream = await http.get(prediction["urls"]["stream"])
            assert stream.status_code == 200
            assert "event: done" in stream.text
        # Nobody trusts that authority by default.
        async with httpx.AsyncClient(verify=ssl.create_default_context()) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"{emu.base_url}/v1/account")
    assert not bundle.exists()  # removed once serving stops


async def test_the_official_client_gets_https_output_urls_that_serve_the_files(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the official client's async API sleeps with asyncio.sleep: asyncio only")
    emulator = Emulator(Scenario(duration=0.2), tls=True)
    async with emulator.serve() as emu:
        # What a user of the official client does: trust the bundle through the
        # environment before the client is made.
        monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_bundle))
        client = replicate.Client(api_token="r8_tls", base_url=emu.base_url)
        try:
            output = await client.async_run(
                SDXL, input={"prompt": "a lighthouse"}, use_file_output=False
            )
        finally:
            await client._async_client.aclose()
        assert isinstance(output, list)
        assert output
        async with httpx.AsyncClient(verify=emu.ssl_context()) as http:
            for url in output:
                assert url.startswith(f"{emu.base_url}/_emulator/files/")
                image = await http.get(url)
                assert image.status_code == 200
                assert image.content.startswith(b"\x89PNG")


def test_the_command_line_serves_https_and_prints_the_ca_bundle() -> None:
    command = [sys.executable, "-m", "replicate_home", "emulator", "--port", "0", "--tls"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            url = re.search(r"https://\S+", lines[0])
            bundle = re.search(r"SSL_CERT_FILE=(\S+)", "".join(lines))
            assert url, lines
            assert bundle, lines
            context = ssl.create_default_context(cafile=bundle.group(1))
            answer = httpx.get(
                f"{url.group(0)}/v1/account",
                headers={"Authorization": "Bearer t"},
                verify=context,
                timeout=10,
            )
            assert answer.status_code == 200
            assert Path(bundle.group(1)).exists()
        finally:
            process.terminate()
            process.wait(timeout=10)
