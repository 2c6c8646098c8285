"""What a new user met in their first hours (issue 24's list), each pinned down: a
per-call deadline on ``predict`` and ``generate``, ``save("saved")`` making a
directory, a base URL ending in ``/v1``, a typed "not found", the way to a model the
homepage service doesn't run, and the emulator's ``num_outputs``. On asyncio and trio,
against the emulator over loopback."""

from __future__ import annotations

import base64
from contextlib import aclosing
from pathlib import Path

import pytest

from replicate_home import (
    FileOutput,
    InvalidInputError,
    ModelNotSupportedError,
    NotFoundError,
    PredictionTimeout,
    ReplicateAPI,
    ReplicateHome,
    ResponseStatusError,
)
from replicate_home.cli import main
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

TOKEN = "r8_first_use"
LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"

#: A 1 x 1 PNG, as a data: URI output.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def test_predict_and_generate_take_a_deadline_of_their_own(emulator: Emulator) -> None:
    emulator.script("slow", Scenario(duration=30))
    async with ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=120) as client:

        async def drain() -> None:
            async with aclosing(client.generate(LLAMA, prompt="slow", timeout=0.5)) as chunks:
                async for _ in chunks:
                    pass

        # Each call has its own half second (the prediction takes 30, the client's 120).
        with pytest.raises(PredictionTimeout):
            await client.predict(LLAMA, prompt="slow", timeout=0.5)
        with pytest.raises(PredictionTimeout):
            await drain()
        for bad in (0, -1, float("nan")):
            with pytest.raises(ValueError, match="timeout"):
                await client.predict(LLAMA, prompt="hi", timeout=bad)
            with pytest.raises(ValueError, match="timeout"):
                client.generate(LLAMA, prompt="hi", timeout=bad)
        prediction = await client.predict(LLAMA, prompt="quick", timeout=60)
    assert prediction.status == "succeeded"


async def test_save_to_a_path_without_a_suffix_makes_a_directory(tmp_path: Path) -> None:
    file = FileOutput("data:image/png;base64," + base64.b64encode(PNG).decode())
    saved = await file.save(tmp_path / "saved")
    assert saved == tmp_path / "saved" / "output.png"
    again = await file.save(str(tmp_path / "saved"))
    assert again == tmp_path / "saved" / "output-2.png"
    nested = await file.save(f"{tmp_path}/out/")
    assert nested == tmp_path / "out" / "output.png"
    named = await file.save(tmp_path / "deeper" / "cat.png")  # a suffix: the file itself
    assert named == tmp_path / "deeper" / "cat.png"
    assert all(path.read_bytes() == PNG for path in (saved, again, nested, named))
    (tmp_path / "notes").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):  # an existing file stays a file, never replaced
        await file.save(tmp_path / "notes")
    assert (tmp_path / "notes").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_a_base_url_ending_in_v1_is_the_same_api(emulator: Emulator, suffix: str) -> None:
    async with ReplicateAPI(TOKEN, base_url=emulator.base_url + suffix) as client:
        assert client.base_url == emulator.base_url
        prediction = await client.predict(LLAMA, prompt="hi")
    assert prediction.status == "succeeded"
    paths = [request.path for request in emulator.requests]
    assert paths
    assert not any(path.startswith("/v1/v1") for path in paths)


async def test_an_unknown_prediction_is_not_found(emulator: Emulator) -> None:
    async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get("zzz")
    assert isinstance(caught.value, ResponseStatusError)  # what it was before
    assert caught.value.status_code == 404
    assert "prediction zzz not found" in str(caught.value)


async def test_a_model_the_homepage_does_not_run_points_to_the_api() -> None:
    async with ReplicateHome("http://127.0.0.1:9") as client:
        with pytest.raises(ModelNotSupportedError) as caught:
            await client.predict(LLAMA, prompt="hi")
        assert "use ReplicateAPI" in str(caught.value)
        with pytest.raises(ModelNotSupportedError) as typo:
            await client.predict("gemma-3b", prompt="hi")
    assert "ReplicateAPI" not in str(typo.value)  # a misspelt alias is not an API model


def test_the_command_line_says_service_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--service", "home", "--emulator", "-m", LLAMA, "hi"]) == 2
    err = capsys.readouterr().err
    assert "use --service api, with an API token" in err
    assert "ReplicateAPI" not in err


async def test_the_emulators_flux_honours_num_outputs(emulator: Emulator) -> None:
    async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
        two = await client.predict(FLUX, prompt="a cat", input={"num_outputs": 2})
        one = await client.predict(FLUX, prompt="a cat")
        with pytest.raises(InvalidInputError, match="num_outputs"):
            await client.predict(FLUX, prompt="a cat", input={"num_outputs": 9})
        images = [await file.read() for file in two.files]
    assert len(two.files) == 2
    assert len(one.files) == 1
    assert all(image.startswith(b"\x89PNG") for image in images)
