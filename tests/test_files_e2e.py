"""Files end to end on the emulator's file models, over loopback, on asyncio and trio: a
path, a file object and bytes each reach the model intact (its output proves it), in
both ``upload`` and ``data`` modes; an upscaler needs no prompt; a fan-out of ten models
over one image uploads it once; a speech-to-text model hears the audio sent; a
several-MB video output saves in bounded memory."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from replicate_home import ReplicateAPI
from replicate_home._uploads import FileEncoding
from replicate_home.cli import main
from replicate_home.emulator import (
    Emulator,
    Scenario,
    png_text,
    transcription_text,
    video_sha256,
)

pytestmark = pytest.mark.anyio

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
AUDIO = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(200)) * 20
UPSCALERS = [f"acme/upscaler-{number}" for number in range(10)]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The file models, ten upscalers more, and predictions that end at once."""
    models: dict[str, Any] = dict.fromkeys(UPSCALERS, "upscale")
    async with Emulator(Scenario(duration=0.05), models=models).serve() as running:
        yield running


def _proof(png: bytes) -> tuple[str, int]:
    text = png_text(png)
    return text["input-sha256"], int(text["input-length"])


IMAGE_PROOF = (hashlib.sha256(IMAGE).hexdigest(), len(IMAGE))


@pytest.mark.parametrize("mode", ["upload", "data"])
@pytest.mark.parametrize("kind", ["path", "anyio-path", "file", "bytes"])
async def test_each_kind_of_file_reaches_the_upscaler_intact(
    emulator: Emulator, tmp_path: Path, mode: FileEncoding, kind: str
) -> None:
    import anyio

    path = tmp_path / "cat.png"
    path.write_bytes(IMAGE)
    with path.open("rb") as opened:
        value: Any = {
            "path": path,
            "anyio-path": anyio.Path(path),
            "file": opened,
            "bytes": IMAGE,
        }[kind]
        async with ReplicateAPI("t", base_url=emulator.base_url, file_encoding=mode) as api:
            # An upscaler takes no prompt.
            prediction = await api.predict("replicate/upscaler", input={"image": value})
            (output,) = prediction.files
            png = await output.read()
    assert prediction.status == "succeeded"
    assert "prompt" not in prediction.input
    assert _proof(png) == IMAGE_PROOF
    assert png_text(png)["scale"] == "2"
    assert emulator.files.uploads == (1 if mode == "upload" else 0)


@pytest.mark.parametrize("mode", ["upload", "data"])
async def test_a_fan_out_of_ten_upscalers_sends_one_image_once(
    emulator: Emulator, tmp_path: Path, mode: FileEncoding
) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(IMAGE)
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        results = await api.compare(
            UPSCALERS, input={"image": path, "scale": 3}, file_encoding=mode
        )
        pngs = []
        for result in results:
            assert result.ok, result.error
            assert result.prediction is not None
            pngs.append(await result.prediction.files[0].read())
    assert [_proof(png) for png in pngs] == [IMAGE_PROOF] * 10
    assert emulator.files.uploads == (1 if mode == "upload" else 0)
    assert emulator.stats().uploads == emulator.files.uploads


async def test_image_to_image_gets_its_image_and_references(
    emulator: Emulator, tmp_path: Path
) -> None:
    reference = tmp_path / "style.png"
    reference.write_bytes(IMAGE[::-1])
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        prediction = await api.predict(
            "replicate/img2img",
            input={
                "image": io.BytesIO(IMAGE),
                "prompt": "in watercolour",
                "num_outputs": 2,
                "reference_images": [reference, IMAGE],
            },
        )
        pngs = [await file.read() for file in prediction.files]
    assert len(pngs) == 2
    for png in pngs:
        text = png_text(png)
        assert (text["input-sha256"], int(text["input-length"])) == IMAGE_PROOF
        assert text["prompt-sha256"] == hashlib.sha256(b"in watercolour").hexdigest()
        assert text["reference-sha256s"].split(",") == [
            hashlib.sha256(IMAGE[::-1]).hexdigest(),
            hashlib.sha256(IMAGE).hexdigest(),
        ]
    # The image (a file object with no name) and the second reference (bytes) hold the
    # same content, so they share one upload; the reference file is the other.
    assert emulator.files.uploads == 2


@pytest.mark.parametrize("mode", ["upload", "data"])
async def test_speech_to_text_hears_the_audio_sent(
    emulator: Emulator, tmp_path: Path, mode: FileEncoding
) -> None:
    audio = tmp_path / "hello.wav"
    audio.write_bytes(AUDIO)
    async with ReplicateAPI("t", base_url=emulator.base_url, file_encoding=mode) as api:
        prediction = await api.predict("openai/whisper", input={"audio": audio})
    assert prediction.output["transcription"] == transcription_text(AUDIO)


def test_the_cli_sends_a_file_to_a_model_without_prompt_and_saves_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(IMAGE)
    saved = tmp_path / "out"
    command = ["generate", "--service", "api", "--emulator", "-m", "replicate/upscaler"]
    assert main([*command, "-i", f"image=@{image}", "--save", str(saved)]) == 0
    capsys.readouterr()
    (png,) = saved.iterdir()
    assert png.suffix == ".png"
    assert _proof(png.read_bytes()) == IMAGE_PROOF


VIDEO_BYTES = 24 * 1024 * 1024


@pytest.mark.slow
async def test_a_several_mb_video_saves_in_bounded_memory(
    emulator_in_subprocess: Callable[..., AbstractContextManager[str]], tmp_path: Path
) -> None:
    # The emulator in a process of its own: this process's traced memory is the
    # client's alone.
    with emulator_in_subprocess("--duration", "0.05", "--file-output", "url") as url:
        async with ReplicateAPI("t", base_url=url) as api:
            prediction = await api.predict(
                "minimax/video-01", input={"prompt": "a cat", "output_bytes": VIDEO_BYTES}
            )
            (video,) = prediction.files
            tracemalloc.start()
            try:
                path = await video.save(tmp_path)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert path.suffix == ".mp4"
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    assert digest.hexdigest() == video_sha256("a cat", VIDEO_BYTES)
    print(f"video save peak: {peak / VIDEO_BYTES:.4f} of {VIDEO_BYTES} bytes")
    assert peak < VIDEO_BYTES / 16
