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
from replicate_home._cli import main, parse_inputs
from replicate_home._files import check_input, content_type_of
from replicate_home.emulator import Emulator

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
MODEL = "meta/meta-llama-3-8b-instruct"


def _decoded(uri: Any) -> tuple[str, bytes]:
    assert isinstance(uri, str)
    head, _, payload = uri.partition(",")
    assert head.startswith("data:")
    assert head.endswith(";base64")
    return head[5:-7], base64.b64decode(payload)


async def test_a_path_a_file_object_and_bytes_reach_the_model_intact(
    emulator: Emulator, tmp_path: Path
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
        async with ReplicateAPI("t", base_url=emulator.base_url) as api:
            prediction = await api.predict(MODEL, input=inputs)
    sent = prediction.input
    assert _decoded(sent["image"]) == ("image/png", PNG)
    kind, data = _decoded(sent["apath"])
    assert kind in ("audio/wav", "audio/x-wav")
    assert data == audio.read_bytes()
    frames = sent["nested"]["frames"]
    assert _decoded(frames[0]) == ("image/png", PNG)
    assert _decoded(frames[1]) == ("image/png", PNG)
    assert _decoded(frames[2])[1] == b"\x00\x01"
    assert _decoded(frames[3]) == ("application/octet-stream", b"\xff")
    assert sent["prompt"] == "describe"
    # The caller's input is left as it was.
    assert inputs["image"] == image


async def test_one_file_object_in_a_fan_out_reaches_every_model(emulator: Emulator) -> None:
    shared = io.BytesIO(PNG)
    models = [MODEL] * 4
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        results = await api.compare(models, input={"prompt": "x", "image": shared})
    assert all(result.ok for result in results)
    for result in results:
        assert result.prediction is not None
        assert _decoded(result.prediction.input["image"]) == ("image/png", PNG)


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


def test_cli_at_values_become_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"RIFF-audio")))
    values = parse_inputs([f"image=@{image}", "audio=@-", "note=@@home", "n=3"])
    assert values == {"image": image, "audio": b"RIFF-audio", "note": "@home", "n": 3}
