"""The emulator's file models (upscaler, image-to-image, speech-to-text, video), its
per-model input validation, and how it resolves input file references: over loopback,
on both backends. Each output proves which bytes reached the model."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home import ReplicateAPI, ResponseTooLarge
from replicate_home.emulator import (
    DEFAULT_VIDEO_BYTES,
    FILE_MODELS,
    Emulator,
    Scenario,
    png_text,
    transcription_text,
    video_sha256,
)
from replicate_home.emulator._file_store import FileStore
from replicate_home.emulator._input_files import check_uri, resolve_uri
from replicate_home.emulator._png import digest_png
from replicate_home.emulator._schemas import input_schema
from replicate_home.emulator._validation import validate_input

pytestmark = pytest.mark.anyio

UPSCALER = "replicate/upscaler"
IMG2IMG = "replicate/img2img"
WHISPER = "openai/whisper"
VIDEO = "minimax/video-01"
AUTH = {"authorization": "Bearer t"}
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
WAIT = {"prefer": "wait=5"}


def data_uri(content: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(content).decode("ascii")


def from_data_uri(uri: str) -> bytes:
    assert uri.startswith("data:"), uri[:40]
    return base64.b64decode(uri.split(",", 1)[1])


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    async with (
        Emulator(Scenario(duration=0.0), **options).serve() as emu,
        httpx.AsyncClient(base_url=emu.base_url, headers=AUTH, timeout=10) as client,
    ):
        yield emu, client


async def run(client: httpx.AsyncClient, model: str, **model_input: Any) -> dict[str, Any]:
    """Create with ``Prefer: wait`` and answer the finished prediction."""
    response = await client.post(
        f"/v1/models/{model}/predictions", json={"input": model_input}, headers=WAIT
    )
    assert response.status_code == 201, response.text
    prediction: dict[str, Any] = response.json()
    assert prediction["status"] in ("succeeded", "failed"), prediction
    return prediction


async def upload(client: httpx.AsyncClient, content: bytes, name: str = "cat.png") -> str:
    created = await client.post("/v1/files", files={"content": (name, content, "image/png")})
    assert created.status_code == 201, created.text
    url: str = created.json()["urls"]["get"]
    return url


# --------------------------------------------------------------------------- the models


async def test_the_upscaler_needs_no_prompt_and_its_png_proves_its_input() -> None:
    async with served() as (_, client):
        done = await run(client, UPSCALER, image=data_uri(IMAGE), scale=3)
        assert (done["status"], done["version"], done["source"]) == ("succeeded", "hidden", "api")
        png = from_data_uri(done["output"])  # one file, alone: a string
        assert png_text(png) == {
            "input-sha256": sha256(IMAGE),
            "input-length": str(len(IMAGE)),
            "scale": "3",
        }
        assert png[16:24] == (48).to_bytes(4, "big") * 2  # IHDR: 16 pixels per unit of scale
        default = await run(client, UPSCALER, image=data_uri(IMAGE))
        assert png_text(from_data_uri(default["output"]))["scale"] == "2"


async def test_an_uploaded_file_reaches_the_model_by_its_url_or_a_signed_url() -> None:
    async with served(file_output="url") as (emu, client):
        url = await upload(client, IMAGE)
        file_id = url.rsplit("/", 1)[1]
        for reference in (url, emu.download_url(file_id)):
            done = await run(client, UPSCALER, image=reference)
            output = await client.get(done["output"])
            assert output.headers["content-type"] == "image/png"
            assert int(output.headers["content-length"]) == len(output.content)
            assert png_text(output.content)["input-sha256"] == sha256(IMAGE)
        # An output file of the emulator is an input too: the upscaled PNG, upscaled again.
        first = await client.get(done["output"])
        again = await run(client, UPSCALER, image=done["output"])
        assert png_text((await client.get(again["output"])).content)["input-sha256"] == sha256(
            first.content
        )
        assert emu.stats().uploads == 1
        assert emu.files.uploads == 1


async def test_image_to_image_outputs_prove_the_image_the_prompt_and_the_references() -> None:
    async with served() as (_, client):
        reference = "https://example.com/style.png"  # not fetched: its URL's bytes stand in
        done = await run(
            client,
            IMG2IMG,
            image=data_uri(IMAGE),
            prompt="a hat, ☂",
            strength=0.25,
            num_outputs=3,
            reference_images=[reference, data_uri(b"style")],
        )
        texts = [png_text(from_data_uri(uri)) for uri in done["output"]]
        assert [text["index"] for text in texts] == ["0", "1", "2"]
        for text in texts:
            assert text["input-sha256"] == sha256(IMAGE)
            assert text["input-length"] == str(len(IMAGE))
            assert text["prompt-sha256"] == sha256("a hat, ☂".encode())
            assert text["strength"] == "0.25"
            assert text["reference-sha256s"] == f"{sha256(reference.encode())},{sha256(b'style')}"
        assert len(set(done["output"])) == 3  # each output its own image


async def test_speech_to_text_states_the_audio_length_and_hash() -> None:
    audio = bytes(range(200)) * 50
    async with served() as (_, client):
        url = await upload(client, audio, "talk.wav")
        done = await run(client, WHISPER, audio=url, translate=True)
        output = done["output"]
        assert output["transcription"] == transcription_text(audio)
        match = re.fullmatch(
            r"The audio is (\d+) bytes long and its SHA-256 is ([0-9a-f]{64})\.",
            output["transcription"],
        )
        assert match is not None
        assert (int(match[1]), match[2]) == (len(audio), sha256(audio))
        assert output["segments"][0]["text"] == output["transcription"]
        assert output["translation"] == output["transcription"]
        assert output["detected_language"] == "english"
        srt = (await run(client, WHISPER, audio=url, transcription="srt"))["output"]
        assert srt["transcription"] == (
            f"1\n00:00:00,000 --> 00:00:00,625\n{transcription_text(audio)}\n"
        )
        vtt = (await run(client, WHISPER, audio=url, transcription="vtt"))["output"]
        assert vtt["transcription"].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.625\n")
        assert transcription_text(audio) in vtt["transcription"]


async def test_the_video_downloads_streamed_with_its_length_and_hash() -> None:
    async with served(file_output="url") as (_, client):
        done = await run(client, VIDEO, prompt="waves")
        digest = hashlib.sha256()
        received = 0
        async with client.stream("GET", done["output"]) as response:
            assert response.headers["content-type"] == "video/mp4"
            assert int(response.headers["content-length"]) == DEFAULT_VIDEO_BYTES
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                digest.update(chunk)
        assert received == DEFAULT_VIDEO_BYTES
        assert digest.hexdigest() == video_sha256("waves", DEFAULT_VIDEO_BYTES)


async def test_a_small_video_comes_inline_and_names_its_inputs() -> None:
    frame = b"first frame"
    async with served() as (_, client):
        done = await run(
            client, VIDEO, prompt="waves", first_frame_image=data_uri(frame), output_bytes=5000
        )
        video = from_data_uri(done["output"])
        assert done["output"].startswith("data:video/mp4;base64,")
        assert len(video) == 5000
        assert sha256(video) == video_sha256("waves", 5000, frame)
        assert video[4:8] == b"ftyp"
        size = int.from_bytes(video[24:28], "big")
        assert video[28:32] == b"free"
        facts = json.loads(video[32 : 24 + size])
        assert facts == {
            "prompt-sha256": sha256(b"waves"),
            "first-frame-sha256": sha256(frame),
            "first-frame-length": len(frame),
            "length": 5000,
        }
        assert sha256(video) != video_sha256("waves", 5000)  # the frame counts
        tiny = from_data_uri((await run(client, VIDEO, prompt="waves", output_bytes=7))["output"])
        assert len(tiny) == 7


async def test_an_input_file_that_names_nothing_fails_the_prediction() -> None:
    async with served() as (emu, client):
        url = await upload(client, IMAGE)
        file_id = url.rsplit("/", 1)[1]
        signed = emu.download_url(file_id)
        assert (await client.delete(f"/v1/files/{file_id}")).status_code == 204
        for reference in (url, signed, f"{emu.base_url}/_emulator/files/nope/0.png"):
            done = await run(client, UPSCALER, image=reference)
            assert done["status"] == "failed"
            assert done["error"].startswith("input.image: cannot download")
            assert done["output"] is None
        broken = await run(client, UPSCALER, image="data:image/png;base64,***")
        assert (broken["status"], broken["error"]) == (
            "failed",
            "input.image: cannot decode the data: URI: its base64 data is malformed",
        )
        with pytest.raises(KeyError):
            emu.download_url(file_id)


# --------------------------------------------------------------------------- validation


def assert_invalid(response: httpx.Response, *fields: tuple[str, str, str]) -> None:
    """A 422 shaped like the real one, with exactly these (type, field, description)."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Input validation failed"
    assert body["status"] == 422
    expected = [{"type": t, "field": f, "description": d} for t, f, d in fields]
    assert body["invalid_fields"] == expected
    assert body["detail"] == "".join(f"- {f}: {d}\n" for _, f, d in fields)


@pytest.mark.parametrize(
    ("model", "model_input", "fields"),
    [
        (UPSCALER, {"scale": 2}, [("required", "input", "image is required")]),
        (
            UPSCALER,
            {"image": 7, "scale": "2"},
            [
                ("invalid_type", "input.image", "Invalid type. Expected: string, given: integer"),
                ("invalid_type", "input.scale", "Invalid type. Expected: integer, given: string"),
            ],
        ),
        (
            UPSCALER,
            {"image": "https://x.test/a.png", "scale": 0, "face_enhance": 1},
            [
                ("number_gte", "input.scale", "Must be greater than or equal to 1"),
                (
                    "invalid_type",
                    "input.face_enhance",
                    "Invalid type. Expected: boolean, given: integer",
                ),
            ],
        ),
        (
            UPSCALER,
            {"image": "cat.png"},
            [("format", "input.image", "Does not match format 'uri'")],
        ),
        (
            UPSCALER,
            {"image": "http://example.com/cat.png"},
            [
                (
                    "format",
                    "input.image",
                    "Does not match format 'uri': the emulator cannot fetch http URLs of other "
                    "hosts; give one of its own file URLs, a data: URI or an https URL",
                )
            ],
        ),
        (
            IMG2IMG,
            {"image": "data:,x", "strength": 1.5, "reference_images": ["ftp://x", 3]},
            [
                ("required", "input", "prompt is required"),
                ("number_lte", "input.strength", "Must be less than or equal to 1"),
                ("format", "input.reference_images.0", "Does not match format 'uri'"),
                (
                    "invalid_type",
                    "input.reference_images.1",
                    "Invalid type. Expected: string, given: integer",
                ),
            ],
        ),
        (
            IMG2IMG,
            {"image": "data:,x", "prompt": "p", "output_format": "webp"},
            [("enum", "input.output_format", 'output_format must be one of the following: "png"')],
        ),
        (
            WHISPER,
            {"audio": None, "transcription": "json"},
            [
                ("invalid_type", "input.audio", "Invalid type. Expected: string, given: null"),
                (
                    "enum",
                    "input.transcription",
                    'transcription must be one of the following: "plain text", "srt", "vtt"',
                ),
            ],
        ),
        (
            VIDEO,
            {"prompt": "x", "output_bytes": 2.5},
            [
                (
                    "invalid_type",
                    "input.output_bytes",
                    "Invalid type. Expected: integer, given: number",
                )
            ],
        ),
        (
            "meta/meta-llama-3-8b-instruct",
            {"prompt": "x", "temperature": 6},
            [("number_lte", "input.temperature", "Must be less than or equal to 5")],
        ),
    ],
)
async def test_bad_inputs_answer_the_real_422(
    model: str, model_input: dict[str, Any], fields: list[tuple[str, str, str]]
) -> None:
    async with served() as (emu, client):
        response = await client.post(f"/v1/models/{model}/predictions", json={"input": model_input})
        assert_invalid(response, *fields)
        assert emu.stats().creates == 0


async def test_unknown_inputs_are_ignored_and_integral_numbers_are_integers() -> None:
    async with served() as (_, client):
        done = await run(client, UPSCALER, image=data_uri(IMAGE), scale=2.0, guidance=7, x=None)
        assert done["status"] == "succeeded"
        assert done["input"]["guidance"] == 7  # kept as sent, and ignored
        text = await run(client, "meta/meta-llama-3-8b-instruct", prompt="hi", image="whatever")
        assert text["status"] == "succeeded"


async def test_not_json_constants_are_refused() -> None:
    async with served() as (_, client):
        body = b'{"input": {"image": "https://x.test/a", "scale": NaN}}'
        response = await client.post(f"/v1/models/{UPSCALER}/predictions", content=body)
        assert response.status_code == 400


async def test_the_served_schemas_are_the_ones_enforced() -> None:
    async with served(models={"acme/upscaler-2": "upscale"}) as (_, client):
        listed = (await client.get("/v1/models")).json()
        names = [f"{m['owner']}/{m['name']}" for m in listed["results"]]
        assert set(FILE_MODELS) | {"acme/upscaler-2", "stability-ai/sdxl"} <= set(names)
        assert len(names) == len(set(names))
        for model, kind in [*FILE_MODELS.items(), ("acme/upscaler-2", "upscale")]:
            got = (await client.get(f"/v1/models/{model}")).json()
            schemas = got["latest_version"]["openapi_schema"]["components"]["schemas"]
            assert schemas["Input"] == input_schema(kind)
            versions = (await client.get(f"/v1/models/{model}/versions")).json()["results"]
            assert (
                versions[0]["openapi_schema"]["components"]["schemas"]["Input"]["required"]
                == (input_schema(kind)["required"])
            )
        custom = await run(client, "acme/upscaler-2", image=data_uri(IMAGE))
        assert png_text(from_data_uri(custom["output"]))["input-sha256"] == sha256(IMAGE)
    with pytest.raises(ValueError, match="must be one of"):
        Emulator(models={"acme/x": "sound"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="owner/name"):
        Emulator(models={"x": "text"})


async def test_official_predictions_report_a_hidden_version_and_their_source() -> None:
    async with served() as (_, client):
        by_name = await run(client, UPSCALER, image=data_uri(IMAGE))
        version = (await client.get(f"/v1/models/{UPSCALER}")).json()["latest_version"]["id"]
        by_version = await client.post(
            "/v1/predictions",
            json={"version": f"{UPSCALER}:{version}", "input": {"image": data_uri(IMAGE)}},
        )
        assert by_version.json()["version"] == version  # a version named is reported
        got = (await client.get(f"/v1/predictions/{by_name['id']}")).json()
        listed = (await client.get("/v1/predictions")).json()["results"]
        assert (got["version"], got["source"]) == ("hidden", "api")
        assert [(item["version"], item["source"]) for item in listed] == [
            (version, "api"),
            ("hidden", "api"),
        ]


# --------------------------------------------------------------------------- the validator


_SCHEMA = input_schema("upscale")
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.sampled_from(["https://x.test/a.png", "data:,abc", "ftp://x", "cat.png"]),
    st.lists(st.integers(), max_size=2),
)


def _accepts_uri(value: str) -> str | None:
    return None if value.startswith(("https://", "data:")) else "Does not match format 'uri'"


@given(st.dictionaries(st.sampled_from(["image", "scale", "face_enhance", "other"]), _VALUES))
def test_the_validator_agrees_with_the_schema_field_by_field(model_input: dict[str, Any]) -> None:
    problems = validate_input(model_input, _SCHEMA, _accepts_uri)
    by_field = {problem.field: problem.type for problem in problems}
    image = model_input.get("image")
    if "image" not in model_input:
        assert by_field.get("input") == "required"
    elif not isinstance(image, str):
        assert by_field["input.image"] == "invalid_type"
    else:
        assert ("input.image" in by_field) == (_accepts_uri(image) is not None)
    scale = model_input.get("scale")
    if "scale" in model_input:
        integral = (
            isinstance(scale, (int, float))
            and not isinstance(scale, bool)
            and float(scale).is_integer()
        )
        if not integral:
            assert by_field["input.scale"] == "invalid_type"
        else:
            assert isinstance(scale, (int, float))
            expected = "number_gte" if scale < 1 else "number_lte" if scale > 4 else None
            assert by_field.get("input.scale") == expected
    if "face_enhance" in model_input:
        is_bool = isinstance(model_input["face_enhance"], bool)
        assert ("input.face_enhance" in by_field) != is_bool
    assert not any(field.startswith("input.other") for field in by_field)  # ignored
    assert (problems == []) == (not by_field)


# --------------------------------------------------------------------------- our client


async def test_our_client_runs_a_file_model_whose_version_is_hidden() -> None:
    async with (
        Emulator(Scenario(duration=0.1)).serve() as emu,
        ReplicateAPI("t", base_url=emu.base_url) as api,
    ):
        created = await api.create(UPSCALER, input={"image": data_uri(IMAGE)})
        assert (created.version, created.source) == ("hidden", "api")
        done = await api.wait(created)
        again = await api.get(created.id)
        predicted = await api.predict(WHISPER, input={"audio": data_uri(IMAGE, "audio/wav")})
    assert (done.status, done.version, again.version) == ("succeeded", "hidden", "hidden")
    assert isinstance(done.output, str)
    assert png_text(from_data_uri(done.output))["input-sha256"] == sha256(IMAGE)
    assert predicted.output["transcription"] == transcription_text(IMAGE)


@pytest.mark.slow  # about 1 s: 11 MiB answers, encoded and decoded
async def test_a_default_video_as_a_data_uri_fits_our_clients_answer_limit() -> None:
    # 8 MiB as base64 in every answer about the prediction: about 11 MiB, under 32 MiB.
    async with (
        Emulator(Scenario(duration=0.05)).serve() as emu,
        ReplicateAPI("t", base_url=emu.base_url) as api,
    ):
        done = await api.predict(VIDEO, input={"prompt": "waves"})
    assert isinstance(done.output, str)
    assert sha256(from_data_uri(done.output)) == video_sha256("waves", DEFAULT_VIDEO_BYTES)


@pytest.mark.slow
async def test_a_video_too_big_for_a_data_uri_is_refused_by_our_client() -> None:
    # 30 MiB as base64 is 40 MiB: over the client's 32 MiB max_response_bytes, as documented.
    async with (
        Emulator(Scenario(duration=0.05)).serve() as emu,
        ReplicateAPI("t", base_url=emu.base_url) as api,
    ):
        with pytest.raises(ResponseTooLarge):
            await api.predict(VIDEO, input={"prompt": "waves", "output_bytes": 30 * 1024 * 1024})


@given(st.binary(max_size=300), st.booleans())
def test_a_data_uri_reaches_the_model_as_the_bytes_it_carries(content: bytes, b64: bool) -> None:
    uri = data_uri(content) if b64 else "data:application/octet-stream," + quote_from_bytes(content)
    assert check_uri(uri, "http://127.0.0.1:1") is None
    assert resolve_uri(uri, "http://127.0.0.1:1", FileStore(), lambda _id, _name: None) == content


_KEYWORDS = st.text(st.characters(min_codepoint=32, max_codepoint=255), min_size=1, max_size=79)
_VALUES_LATIN1 = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=40)


@given(st.dictionaries(_KEYWORDS, _VALUES_LATIN1, max_size=4), st.data())
def test_png_text_reads_back_what_was_written_and_refuses_a_broken_file(
    text: dict[str, str], data: st.DataObject
) -> None:
    png = digest_png(hashlib.sha256(b"x").digest(), 4, text)
    assert png_text(png) == text
    cut = data.draw(st.integers(0, len(png) - 1), label="cut")
    with pytest.raises(ValueError, match="not a PNG file"):
        png_text(png[:cut])
    flipped = bytearray(png)
    flipped[data.draw(st.integers(8, len(png) - 1), label="flip")] ^= 0x40
    with pytest.raises(ValueError, match="not a PNG file"):
        png_text(bytes(flipped))
