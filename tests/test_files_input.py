"""File inputs on the official API: a path, a file object and bytes reach the model
intact as ``data:`` URIs (the emulator's record of the input proves it); bad ones are a
``ValueError`` before any request; the CLI's ``-i KEY=@FILE`` and ``@-``."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from replicate_home import ReplicateAPI
from replicate_home._file_inputs import check_input
from replicate_home._media import content_type_of
from replicate_home._uploads import FileEncoding
from replicate_home.cli import main
from replicate_home.cli._plan import parse_inputs
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
MODEL = "meta/meta-llama-3-8b-instruct"


@pytest.fixture
def scenario() -> Scenario:
    """Predictions that end at once: these tests are about what goes before them."""
    return Scenario(duration=0.05)


def _decoded(uri: Any) -> tuple[str, bytes]:
    assert isinstance(uri, str)
    head, _, payload = uri.partition(",")
    assert head.startswith("data:")
    assert head.endswith(";base64")
    return head[5:-7], base64.b64decode(payload)


def _received(emulator: Emulator, sent: Any) -> tuple[str, bytes]:
    """The content type and bytes a model got for a file input: a ``data:`` URI's, or
    those of the upload its URL names (``urls.get`` of the emulator's Files API)."""
    assert isinstance(sent, str)
    if sent.startswith("data:"):
        return _decoded(sent)
    stored = emulator.files.by_url(emulator.base_url, sent)
    assert stored is not None, sent
    return stored.content_type, stored.content


def _uploads(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests if (r.method, r.path) == ("POST", "/v1/files"))


MODES = [("upload", None), ("data", None), ("data", "upload"), ("upload", "data")]


@pytest.mark.parametrize(("client_mode", "call_mode"), MODES)
async def test_a_path_a_file_object_and_bytes_reach_the_model_intact(
    emulator: Emulator, tmp_path: Path, client_mode: FileEncoding, call_mode: FileEncoding | None
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    audio = tmp_path / "hello.wav"
    audio.write_bytes(b"RIFF....WAVEfmt ")
    with image.open("rb") as opened:
        opened.read(5)  # a file already partly read is sent whole
        inputs = {
            "prompt": "describe",
            "image": image,
            "apath": anyio.Path(audio),
            "nested": {"frames": [opened, PNG, bytearray(b"\x00\x01"), memoryview(b"\xff")]},
        }
        api = ReplicateAPI("t", base_url=emulator.base_url, file_encoding=client_mode)
        async with api:
            prediction = await api.predict(MODEL, input=inputs, file_encoding=call_mode)
    mode = call_mode or client_mode
    sent = prediction.input
    assert all(
        isinstance(value, str) and value.startswith("data:") == (mode == "data")
        for value in [sent["image"], sent["apath"], *sent["nested"]["frames"]]
    )
    assert _received(emulator, sent["image"]) == ("image/png", PNG)
    kind, data = _received(emulator, sent["apath"])
    assert kind in ("audio/wav", "audio/x-wav")
    assert data == audio.read_bytes()
    frames = sent["nested"]["frames"]
    assert _received(emulator, frames[0]) == ("image/png", PNG)
    assert _received(emulator, frames[1]) == ("image/png", PNG)
    assert _received(emulator, frames[2])[1] == b"\x00\x01"
    assert _received(emulator, frames[3]) == ("application/octet-stream", b"\xff")
    assert sent["prompt"] == "describe"
    # The caller's input is left as it was.
    assert inputs["image"] == image
    # One upload per file: six objects, and no two with the same content and name.
    if mode == "upload":
        assert _uploads(emulator) == 6
    else:
        assert _uploads(emulator) == 0


@pytest.mark.parametrize("kind", ["path", "file", "bytes"])
async def test_a_fan_out_of_ten_models_sends_one_image_once(
    emulator: Emulator, tmp_path: Path, kind: str
) -> None:
    # (Both modes, over ten distinct file models: tests/test_files_e2e.py.)
    mode: FileEncoding = "upload"
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    value: Any = {"path": image, "file": io.BytesIO(PNG), "bytes": PNG}[kind]
    async with ReplicateAPI("t", base_url=emulator.base_url, file_encoding=mode) as api:
        results = await api.compare([MODEL] * 10, input={"prompt": "x", "image": value})
    assert all(result.ok for result in results)
    sent = set()
    for result in results:
        assert result.prediction is not None
        sent.add(result.prediction.input["image"])
        assert _received(emulator, result.prediction.input["image"])[1] == PNG
    assert len(sent) == 1  # every model got the same URL (or data: URI)
    assert _uploads(emulator) == (1 if mode == "upload" else 0)
    assert emulator.files.uploads == (1 if mode == "upload" else 0)


async def test_bad_file_inputs_fail_before_any_request(emulator: Emulator, tmp_path: Path) -> None:
    closed = io.BytesIO(PNG)
    closed.close()
    text_file = (tmp_path / "notes.txt").open("w")
    try:
        bad: list[tuple[object, str]] = [
            (tmp_path, "directory"),
            (tmp_path / "missing.png", "not a readable file"),
            (closed, "closed"),
            (text_file, "text mode"),
            (object(), "JSON-serialisable"),
            (float("nan"), "JSON-serialisable"),
        ]
        async with ReplicateAPI("t", base_url=emulator.base_url) as api:
            for value, message in bad:
                with pytest.raises(ValueError, match=message):
                    await api.predict(MODEL, input={"prompt": "x", "image": value})
    finally:
        text_file.close()
    assert len(emulator.requests) == 0


def test_check_input_and_content_types() -> None:
    assert check_input({"a": [1, "x", None, {"b": True}]}) is False
    assert check_input({"a": [b"x"]}) is True
    assert content_type_of("x.jpg", b"") == "image/jpeg"
    assert content_type_of(None, b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert content_type_of(None, b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert content_type_of(None, b"??") == "application/octet-stream"


def test_cli_sends_a_file_and_standard_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"RIFF-audio")))
    command = ["generate", "--service", "api", "--emulator", "-m", MODEL]
    inputs = ["-i", f"image=@{image}", "-i", "audio=@-", "-i", "note=@@home"]
    assert main([*command, *inputs, "hi"]) == 0
    capsys.readouterr()
    missing = ["-i", f"image=@{tmp_path / 'nope.png'}"]
    assert main([*command, *missing, "hi"]) == 2
    out, err = capsys.readouterr()
    assert "is not a file" in err
    assert out == ""


@pytest.mark.parametrize("encoding", [None, "data"])
def test_cli_sends_files_as_file_encoding_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str | None
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    command = ["generate", "--service", "api", "--emulator", "-v", "-m", MODEL]
    chosen = [] if encoding is None else ["--file-encoding", encoding]
    assert main([*command, *chosen, "-i", f"image=@{image}", "-i", f"same=@{image}", "x"]) == 0
    _, err = capsys.readouterr()
    uploads = err.count("POST http://127.0.0.1") - err.count("/predictions ->")
    assert err.count("/v1/files ->") == (0 if encoding == "data" else 1)
    assert uploads == err.count("/v1/files ->")


def test_cli_file_encoding_needs_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    command = ["generate", "--service", "home", "--emulator", "--file-encoding", "data", "x"]
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert "--file-encoding needs the api service" in err
    assert out == ""


def test_cli_at_values_become_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"RIFF-audio")))
    values = parse_inputs([f"image=@{image}", "audio=@-", "note=@@home", "n=3"])
    assert values == {"image": image, "audio": b"RIFF-audio", "note": "@home", "n": 3}
