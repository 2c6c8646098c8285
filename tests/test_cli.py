"""The command line, run in-process and as a real subprocess."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from replicate_home import ReplicateHome
from replicate_home._cli import build_parser, chosen_service, main

Spawn = Callable[..., AbstractContextManager[str]]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_generate_streams_text_on_the_emulator_by_default(
    backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_HOME_BASE_URL")
    assert main(["generate", "--backend", backend, "Tell me about hats"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip()) > 20
    assert out.endswith("\n")
    assert "using the local emulator" in err


def test_generate_image_prints_urls_and_saves_files(
    backend: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "generate",
            "--emulator",
            "--backend",
            backend,
            "-m",
            "sdxl",
            "--save",
            str(tmp_path),
            "a cat",
        ]
    )
    assert code == 0
    out, _err = capsys.readouterr()
    urls = out.split()
    assert urls
    assert all(url.startswith("http://127.0.0.1:") for url in urls)
    files = list(tmp_path.iterdir())
    assert len(files) == len(urls)
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)


def test_models_lists_every_model_kind_and_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for model in ReplicateHome.models:
        assert model in out
    for alias in ReplicateHome.model_aliases:
        assert alias in out
    assert re.search(r"gemma-2b-it\s+text", out)
    assert re.search(r"stable-diffusion-3\s+image", out)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "--emulator", "-m", "gpt-4", "hi"], "not supported"),
        (["generate", "--emulator", "--timeout", "0", "hi"], "timeout"),
        (["generate", "--base-url", "http://127.0.0.1:9", "hi"], "ConnectError"),
        (["generate", "--base-url", "nonsense", "hi"], "base_url"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replicate-home: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["generate"])
    assert caught.value.code == 2
    assert "PROMPT" in capsys.readouterr().err


@pytest.fixture
def emulator_process(emulator_in_subprocess: Spawn) -> Iterator[str]:
    with emulator_in_subprocess("--duration", "0.2") as url:
        yield url


def test_generate_against_an_emulator_in_another_process(
    emulator_process: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "--base-url", emulator_process, "hello"]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "emulator" not in err


def test_compare_json(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--emulator", "--backend", backend, "--json"]
    assert main([*argv, "-m", "gemma-2b", "-m", "sd-3", "-m", "gemma-2b", "a cat"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in results] == [
        "google-deepmind/gemma-2b-it",
        "stability-ai/stable-diffusion-3",
        "google-deepmind/gemma-2b-it",
    ]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert all(r["status"] == "succeeded" and r["error"] is None for r in results)
    assert results[0]["text"] == results[2]["text"]
    assert results[1]["images"]
    assert all(r["latency"] > 0 and r["polls"] >= 1 for r in results)


def test_compare_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that no URL is folded
    assert main(["compare", "--emulator", "-m", "gemma-2b", "-m", "sdxl", "a cat"]) == 0
    out = capsys.readouterr().out
    assert "google-deepmind/gemma-2b-it" in out
    assert "bytedance/sdxl-lightning-4step" in out
    assert out.count("succeeded") == 2
    assert "/_emulator/files/" in out


def test_compare_rejects_unknown_models_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", "--emulator", "-m", "gemma-2b", "-m", "gpt-4", "hi"]) == 1
    assert "gpt-4" in capsys.readouterr().err


SECRET = "r8_cli_secret_token"


def test_generate_on_the_api_with_inputs(
    backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
    argv = ["generate", "--emulator", "--backend", backend, "-m", "meta/llama-3"]
    assert main([*argv, "-i", "max_tokens=64", "-i", 'stop=["\\n"]', "Hello"]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert SECRET not in out + err


def test_compare_on_the_api_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--service", "api", "--emulator", "--json"]
    assert main([*argv, "-m", "meta/llama-3", "-m", "black-forest-labs/flux-schnell", "p"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in results] == ["meta/llama-3", "black-forest-labs/flux-schnell"]
    assert results[0]["text"]
    assert results[1]["images"]


def test_the_service_defaults_to_api_when_a_token_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = build_parser().parse_args(["generate", "hi"])
    assert chosen_service(args) == "home"
    monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
    assert chosen_service(args) == "api"
    assert (
        chosen_service(build_parser().parse_args(["generate", "--service", "home", "x"])) == "home"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "--service", "api", "--emulator", "-m", "not a model", "hi"], "malformed"),
        (["generate", "--service", "api", "--emulator", "-i", "novalue", "hi"], "KEY=VALUE"),
        (["generate", "--service", "home", "--emulator", "-i", "a=1", "hi"], "only a prompt"),
    ],
)
def test_api_usage_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def guarded_emulator(emulator_in_subprocess: Spawn) -> Iterator[str]:
    """An emulator in another process that accepts only the token 'the-right-one'."""
    with emulator_in_subprocess("--token", "the-right-one") as url:
        yield url


def test_a_refused_token_is_not_printed(
    guarded_emulator: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
    assert main(["generate", "-v", "--base-url", guarded_emulator, "hi"]) == 1
    out, err = capsys.readouterr()
    assert "refused the token" in err
    assert SECRET not in out + err
    monkeypatch.setenv("REPLICATE_API_TOKEN", "the-right-one")
    assert main(["generate", "--base-url", guarded_emulator, "hi"]) == 0


def test_emulator_rate_limits_and_file_output_from_the_command_line(
    emulator_in_subprocess: Spawn,
) -> None:
    options = ("--duration", "0.1", "--rate-limits", "2,1000", "--file-output", "url")
    with emulator_in_subprocess(*options) as url, httpx.Client(base_url=url, timeout=10) as http:
        headers = {"Authorization": "Token any", "Prefer": "wait=5"}
        body = {"input": {"prompt": "a fox"}}
        created = http.post("/v1/models/stability-ai/sdxl/predictions", json=body, headers=headers)
        assert created.status_code == 201
        (image,) = created.json()["output"]
        assert image.startswith(f"{url}/_emulator/files/")  # --file-output url
        throttled = http.post(
            "/v1/models/stability-ai/sdxl/predictions", json=body, headers=headers
        )
        assert throttled.status_code == 429  # a burst of one create: the second waits
        assert int(throttled.headers["retry-after"]) >= 1
        assert http.get("/v1/account", headers=headers).status_code == 200


@pytest.mark.parametrize("value", ["600", "a,b", "0,10", "1,2,3", "-1,5"])
def test_bad_rate_limits_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["emulator", "--rate-limits", value])
    assert caught.value.code == 2
    assert "--rate-limits" in capsys.readouterr().err


def test_emulator_options_parse() -> None:
    args = build_parser().parse_args(
        ["emulator", "--rate-limits", "600,3000", "--stream-port", "9001", "--file-output", "url"]
    )
    assert (args.rate_limits, args.stream_port, args.file_output) == ((600, 3000), 9001, "url")
    defaults = build_parser().parse_args(["emulator"])
    assert (defaults.rate_limits, defaults.stream_port, defaults.file_output) == (None, 0, "data")
