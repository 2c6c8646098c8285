"""The command line, run in-process and as a real subprocess."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

import replicate_home.emulator
from replicate_home import ReplicateHome
from replicate_home.cli import main
from replicate_home.cli._common import UsageError
from replicate_home.cli._parser import build_parser
from replicate_home.cli._plan import choose_target
from replicate_home.emulator import Emulator, Scenario

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
    assert "running on the local emulator" in err


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


@pytest.fixture
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting an emulator fails the test: usage errors come before anything starts."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an emulator was started")

    monkeypatch.setattr(replicate_home.emulator.Emulator, "serve", refuse)


def assert_one_error_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replicate-home: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "--base-url", "http://127.0.0.1:9", "hi"], "ConnectError"),
    ],
)
def test_runtime_errors_print_one_line_and_exit_1(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_error_line(err, fragment)


@pytest.mark.usefixtures("no_emulator")
@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["generate", "--emulator", "-m", "gpt-4", "hi"], {}, "not supported"),
        (["generate", "--base-url", "nonsense", "hi"], {}, "base_url"),
        (["generate", "--base-url", "", "hi"], {}, "--base-url is empty"),
        (["generate", "--base-url", "  ", "hi"], {}, "--base-url is empty"),
        (["generate", "--service", "api", "hi"], {}, "no API token"),
        (["generate", "--service", "api", "-m", "meta/llama-3", "hi"], {}, "REPLICATE_API_TOKEN"),
        (["generate", "hi"], {"REPLICATE_API_TOKEN": ""}, "$REPLICATE_API_TOKEN is empty"),
        (["generate", "hi"], {"REPLICATE_API_TOKEN": " "}, "$REPLICATE_API_TOKEN is empty"),
        (["generate", "hi"], {"REPLICATE_HOME_BASE_URL": ""}, "$REPLICATE_HOME_BASE_URL is"),
        (["generate", "--service", "api", "hi"], {"REPLICATE_BASE_URL": ""}, "no API token"),
        (
            ["compare", "--base-url", "", "-m", "gemma-2b", "-m", "sd-3", "hi"],
            {},
            "--base-url is empty",
        ),
        (["compare", "--service", "api", "-m", "gemma-2b", "hi"], {}, "no API token"),
        (["compare", "--emulator", "-m", "gemma-2b", "-m", "gpt-4", "hi"], {}, "gpt-4"),
    ],
)
def test_missing_configuration_exits_2_with_nothing_on_stdout(
    argv: list[str],
    env: dict[str, str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REPLICATE_HOME_BASE_URL")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_error_line(err, fragment)


@pytest.mark.usefixtures("no_emulator")
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate"], "PROMPT"),
        (["generate", "--emulator", "--timeout", "0", "hi"], "--timeout"),
        (["generate", "--emulator", "--timeout", "nan", "hi"], "--timeout"),
        (["generate", "--emulator", "--poll-interval", "-1", "hi"], "--poll-interval"),
        (["compare", "--emulator", "--limit", "0", "-m", "gemma-2b", "hi"], "--limit"),
        (["compare", "--emulator", "hi"], "--model"),
        (["emulator", "--port", "70000"], "--port"),
        (["emulator", "--duration", "0"], "--duration"),
    ],
)
def test_bad_arguments_exit_2_before_anything_starts(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert fragment in err


@pytest.mark.parametrize("verbose", [False, True])
def test_a_defect_is_one_line_too_and_the_traceback_is_for_v(
    verbose: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> int:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("replicate_home.cli._main.generate_command", broken)
    assert main(["generate", "--emulator", *(["-v"] if verbose else []), "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last == (
        "replicate-home: error: internal error: a bug over two lines (-v shows the traceback)"
    )
    assert ("Traceback" in err) == verbose


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["generate", "--help"], ["compare", "--help"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 0
        out = capsys.readouterr().out
        assert "exit status:" in out
        for code in ("0 ", "1 ", "2 ", "130 "):
            assert f"\n  {code}" in out
    assert "--allow-failures" in out


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
    assert all(r["prediction_id"] and r["timings"]["latency"] == r["latency"] for r in results)


LONG_TEXT = "A hat is a head covering worn for warmth, fashion or ceremony. " * 6


_SCRIPTS: list[tuple[str, Scenario, str | None]] = []


@pytest.fixture(autouse=True)
def _quick_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The emulator ``--emulator`` starts in this process: quick predictions (0.2 s, not
    the command's 1 s), and the scripts of :func:`scripted`."""

    class Quick(Emulator):
        def __init__(self, scenario: Scenario | None = None, **options: Any) -> None:
            super().__init__(scenario or Scenario(duration=0.2), **options)
            for prompt, scripted_scenario, model in _SCRIPTS:
                self.script(prompt, scripted_scenario, model=model)

    monkeypatch.setattr(replicate_home.emulator, "Emulator", Quick)
    yield
    _SCRIPTS.clear()


@pytest.fixture
def scripted() -> Callable[..., None]:
    """Script the emulator that ``--emulator`` starts in this process."""

    def script(prompt: str, scenario: Scenario, model: str | None = None) -> None:
        _SCRIPTS.append((prompt, scenario, model))

    return script


def test_compare_off_a_terminal_prints_markdown_with_every_whole_output(
    backend: str, capsys: pytest.CaptureFixture[str], scripted: Callable[..., None]
) -> None:
    scripted("a cat", Scenario(duration=0.1, output=LONG_TEXT), "google-deepmind/gemma-2b-it")
    argv = ["compare", "--emulator", "--backend", backend, "-m", "gemma-2b", "-m", "sdxl"]
    assert main([*argv, "a cat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| # | model | status |")
    assert "| 0 | google-deepmind/gemma-2b-it | succeeded |" in out
    assert "| 1 | bytedance/sdxl-lightning-4step | succeeded |" in out
    assert "## 0. google-deepmind/gemma-2b-it: succeeded" in out
    assert LONG_TEXT.rstrip() in out  # whole, on one line, no width cut
    assert re.search(r"^- http://127\.0\.0\.1:\d+/_emulator/files/\S+\.png$", out, re.M)


def test_compare_on_a_terminal_prints_a_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("replicate_home.cli._compare.is_terminal", lambda stream: True)
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that no URL is folded
    assert main(["compare", "--emulator", "-m", "gemma-2b", "-m", "sdxl", "a cat"]) == 0
    out = capsys.readouterr().out
    assert "google-deepmind/gemma-2b-it" in out
    assert "bytedance/sdxl-lightning-4step" in out
    assert out.count("succeeded") == 2
    assert "/_emulator/files/" in out
    assert "| # |" not in out  # not the Markdown layout


def test_compare_exits_1_when_a_model_fails_unless_failures_are_allowed(
    backend: str, capsys: pytest.CaptureFixture[str], scripted: Callable[..., None]
) -> None:
    scripted(
        "p",
        Scenario(duration=0.1, outcome="failed", error="out of hats"),
        "bytedance/sdxl-lightning-4step",
    )
    scripted("p", Scenario(duration=0.1))
    argv = [
        "compare",
        "--emulator",
        "--backend",
        backend,
        "--json",
        "-m",
        "gemma-2b",
        "-m",
        "sdxl",
        "p",
    ]
    assert main(argv) == 1
    ok, failed = json.loads(capsys.readouterr().out)
    assert ok["status"] == "succeeded"
    assert failed["status"] == "failed"
    assert failed["error"] == "Prediction failed: out of hats" or "out of hats" in failed["error"]
    assert failed["error_type"] == "PredictionFailed"
    assert failed["prediction_id"]  # known, though it failed
    assert failed["polls"] >= 1
    assert main([*argv[:-1], "--allow-failures", "p"]) == 0
    capsys.readouterr()


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


@pytest.mark.parametrize(
    ("options", "env", "service", "base_url"),
    [
        ([], {}, "home", None),  # nothing configured: the emulator, with a notice
        (["--emulator"], {}, "home", None),
        (["--emulator"], {"REPLICATE_API_TOKEN": SECRET}, "api", None),
        (["--service", "home"], {}, "home", "https://homepage.replicate.com"),
        ([], {"REPLICATE_API_TOKEN": SECRET}, "api", "https://api.replicate.com"),
        (["--service", "home"], {"REPLICATE_API_TOKEN": SECRET}, "home", None),
        ([], {"REPLICATE_HOME_BASE_URL": "http://h"}, "home", "http://h"),
        ([], {"REPLICATE_BASE_URL": "http://a", "REPLICATE_API_TOKEN": "t"}, "api", "http://a"),
        (["--base-url", "http://b"], {}, "home", "http://b"),
        (["--base-url", "http://b"], {"REPLICATE_API_TOKEN": "t"}, "api", "http://b"),
    ],
)
def test_where_a_command_runs(
    options: list[str], env: dict[str, str], service: str, base_url: str | None
) -> None:
    args = build_parser().parse_args(["generate", *options, "hi"])
    target = choose_target(args, env)
    assert target.service == service
    if base_url is not None or "--emulator" in options or not (options or env):
        assert target.base_url == base_url
    assert (target.notice is not None) == (not options and not env)
    assert SECRET not in repr(target)


def test_an_api_url_alone_means_the_api_which_needs_a_token() -> None:
    args = build_parser().parse_args(["generate", "hi"])
    with pytest.raises(UsageError, match="no API token"):
        choose_target(args, {"REPLICATE_BASE_URL": "http://a"})


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
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def guarded_emulator(emulator_in_subprocess: Spawn) -> Iterator[str]:
    """An emulator in another process that accepts only the token 'the-right-one'."""
    with emulator_in_subprocess("--token", "the-right-one") as url:
        yield url


@pytest.mark.slow
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
    # No --file-output: the emulator's default (data: URIs, or https URLs with --tls).
    assert (defaults.rate_limits, defaults.stream_port, defaults.file_output) == (None, 0, None)
    assert (defaults.tls, build_parser().parse_args(["emulator", "--tls"]).tls) == (False, True)


# -- output hygiene, -v, Ctrl-C: the command as a real subprocess ------------------------

#: Runs the command line with the emulator that ``--emulator`` starts scripted by argv[1]
#: (JSON: [prompt, Scenario keywords, model or null] triples).
RUNNER = textwrap.dedent(
    """
    import json, sys
    import replicate_home.emulator as emulator_module
    from replicate_home.cli import main
    from replicate_home.emulator import Emulator, Scenario

    scripts = json.loads(sys.argv[1])

    class Scripted(Emulator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for prompt, scenario, model in scripts:
                self.script(prompt, Scenario(**scenario), model=model)

    emulator_module.Emulator = Scripted
    sys.exit(main(sys.argv[2:]))
    """
)

GEMMA = "google-deepmind/gemma-2b-it"


def spawn(scripts: list[Any], *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(scripts), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_stderr_until(process: subprocess.Popen[str], pattern: str) -> list[str]:
    """stderr's lines up to the first that matches ``pattern`` (blocking reads)."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"the command ended without {pattern!r}: {''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "markdown"])
def test_ctrl_c_mid_fan_out_prints_what_finished_and_exits_130(backend: str, as_json: bool) -> None:
    scripts = [["p", {"duration": 0.2}, GEMMA], ["p", {"duration": 120}, None]]
    argv = ["compare", "--emulator", "-v", "--backend", backend, "-m", "gemma-2b"]
    argv += ["-m", "sd-3", "-m", "sdxl", "p"] + (["--json"] if as_json else [])
    with spawn(scripts, *argv) as process:
        # The fast model's end, as the command took it in; the others still run.
        read_stderr_until(process, rf"cli: 0 {GEMMA}: succeeded")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "replicate-home: error: interrupted"
    if as_json:
        first, *rest = json.loads(out)
        assert first["status"] == "succeeded"
        assert first["text"]
        assert first["prediction_id"]
        assert [r["status"] for r in rest] == ["interrupted", "interrupted"]
        assert [r["model"] for r in rest] == [
            "stability-ai/stable-diffusion-3",
            "bytedance/sdxl-lightning-4step",
        ]
    else:
        assert f"| 0 | {GEMMA} | succeeded |" in out
        assert "| 1 | stability-ai/stable-diffusion-3 | interrupted |" in out
        assert "| 2 | bytedance/sdxl-lightning-4step | interrupted |" in out


@pytest.mark.slow
def test_ctrl_c_during_generate_ends_the_partial_line_and_exits_130(backend: str) -> None:
    # Output from the start, a word every 0.1 s, for two minutes.
    scripts = [["slow", {"duration": 120, "start_delay": 0, "output": ["hat "] * 1200}, None]]
    argv = ["generate", "--emulator", "--backend", backend, "slow"]
    with spawn(scripts, *argv) as process:
        assert process.stdout is not None
        first = process.stdout.read(1)  # some output has arrived: then Ctrl-C
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    out = first + rest
    assert process.returncode == 130, err
    assert out.strip()
    assert out.endswith("\n")
    assert err.splitlines()[-1] == "replicate-home: error: interrupted"


def test_a_failure_after_partial_output_ends_the_line_first(
    backend: str, capsys: pytest.CaptureFixture[str], scripted: Callable[..., None]
) -> None:
    scripted("doomed", Scenario(duration=0.3, outcome="failed", error="the hat fell off"))
    assert main(["generate", "--emulator", "--backend", backend, "doomed"]) == 1
    out, err = capsys.readouterr()
    assert out.strip()  # the output so far
    assert out.endswith("\n")
    assert_one_error_line(err, "the hat fell off")


def test_verbose_shows_our_requests_not_httpcore(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
    argv = ["generate", "--emulator", "-v", "-m", "meta/llama-3", "hi"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    requests = [line for line in err.splitlines() if line.startswith("replicate_home.http: ")]
    assert requests, err
    assert re.fullmatch(
        r"replicate_home\.http: POST http://127\.0\.0\.1:\d+/v1/\S+ -> 20\d \(\d+ ms\)",
        requests[0],
    )
    assert "httpcore" not in err
    assert SECRET not in err


def test_a_reader_that_leaves_is_no_error() -> None:
    """``replicate-home models | head -1``: stdout closes early; no traceback, no noise."""
    with subprocess.Popen(
        [sys.executable, "-m", "replicate_home", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        err = process.stderr.read()
    assert process.returncode == 1
    assert err == b""


@pytest.mark.slow
def test_compare_runs_without_rich(tmp_path: Path) -> None:
    """rich is the `cli` extra: without it, compare prints Markdown and a prompt-set run
    goes on without its live line."""
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from replicate_home.cli import main\n"
        "assert main(['compare', '--emulator', '-m', 'gemma-2b', 'a hat']) == 0\n"
        "sys.exit(main(['compare', '--emulator', '-m', 'gemma-2b', '-p', 'a', '-p', 'b',"
        f" '--db', {str(tmp_path / 'runs.db')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "| 0 | google-deepmind/gemma-2b-it | succeeded |" in done.stdout
    assert "internal error" not in done.stderr


def test_without_the_emulator_installed_it_says_so_and_exits_2() -> None:
    code = (
        "import sys; sys.modules['hypercorn'] = sys.modules['starlette'] = None\n"
        "from replicate_home.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "generate", "--emulator", "hi"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert_one_error_line(done.stderr, "pip install 'replicate-home[emulator]'")
