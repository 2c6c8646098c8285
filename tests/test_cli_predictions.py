"""``replicate-home predictions ...`` and ``-d/--deployment`` against an emulator in
another process."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from replicate_home.cli import main

Spawn = Callable[..., AbstractContextManager[str]]
SECRET = "r8_cli_predictions_secret"
LLAMA = "meta/meta-llama-3-8b-instruct"


@pytest.fixture
def api_emulator(emulator_in_subprocess: Spawn, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with emulator_in_subprocess("--duration", "0.3", "--deploy", f"acme/chat={LLAMA}") as url:
        monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
        monkeypatch.setenv("REPLICATE_BASE_URL", url)
        yield url


def create(url: str, prompt: str, path: str = f"/v1/models/{LLAMA}/predictions") -> str:
    headers = {"authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        answer = http.post(path, json={"input": {"prompt": prompt}})
        answer.raise_for_status()
        return str(answer.json()["id"])


def test_predictions_list_get_wait_and_cancel(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = create(api_emulator, "one")
    second = create(api_emulator, "two")
    assert main(["predictions", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "MODEL", "STATUS", "CREATED", "SOURCE"]
    assert [line.split()[0] for line in table[1:]] == [second, first]
    assert main(["predictions", "list", "--json", "--limit", "1"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["id"] == second
    assert main(["predictions", "wait", first]) == 0
    waited = capsys.readouterr().out
    assert waited.strip()  # the text output
    assert main(["predictions", "get", first, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["id"], record["status"], record["input"]) == (
        first,
        "succeeded",
        {"prompt": "one"},
    )
    assert record["output"]
    assert "".join(record["output"]) == waited.rstrip("\n")
    assert main(["predictions", "get", first]) == 0
    details = capsys.readouterr().out
    assert f"id:           {first}" in details
    assert "status:       succeeded" in details
    third = create(api_emulator, "three")
    assert main(["predictions", "cancel", third, "--json"]) == 0
    canceled = json.loads(capsys.readouterr().out)
    assert canceled["id"] == third
    assert canceled["status"] in ("canceled", "succeeded")  # it may have ended already


def test_a_failed_or_missing_prediction_exits_1(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predictions", "get", "doesnotexist"]) == 1
    err = capsys.readouterr().err
    assert "not found" in err
    assert SECRET not in err


def test_predictions_need_the_api(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predictions", "list"]) == 2
    out, err = capsys.readouterr()
    assert not out
    assert "REPLICATE_API_TOKEN" in err
    assert main(["predictions", "list", "--emulator", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.slow
def test_deployments_on_the_command_line(
    api_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "-d", "acme/chat", "hello"]) == 0
    assert capsys.readouterr().out.strip()
    argv = ["compare", "--json", "-m", LLAMA, "-d", "acme/chat", "hi"]
    assert main(argv) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in results] == [LLAMA, "deployment:acme/chat"]
    assert all(r["status"] == "succeeded" for r in results)
    with pytest.raises(SystemExit) as refused:
        main(["generate", "-d", "not-a-deployment", "x"])
    assert refused.value.code == 2
    assert "owner/name" in capsys.readouterr().err
    assert main(["generate", "--service", "home", "--emulator", "-d", "acme/chat", "x"]) == 2
    assert "--service api" in capsys.readouterr().err


def test_generate_draws_an_image_models_progress_on_a_terminal(
    api_emulator: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("replicate_home.cli._generate.is_terminal", lambda stream: True)
    assert (
        main(
            ["generate", "-m", "black-forest-labs/flux-schnell", "--poll-interval", "0.05", "a fox"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    # A data: URI said in a few words to the person at the terminal (a pipe gets it whole).
    assert re.fullmatch(r"a data: URI holding image/png of \d+ bytes \(--save DIR [^\n]*\)\n", out)
    assert "/20" in err  # " 45% 9/20", redrawn while it ran
    assert err.endswith("\r\x1b[K")  # and cleared at the end


@pytest.mark.slow
def test_webhook_options(api_emulator: str, capsys: pytest.CaptureFixture[str]) -> None:
    hook = ["--webhook", "http://127.0.0.1:9/hook", "--webhook-events", "start,completed"]
    assert main(["generate", *hook, "hello"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["compare", "--json", *hook, "-m", LLAMA, "-d", "acme/chat", "hi"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    bad = ["generate", "--webhook", "http://127.0.0.1:9/h", "--webhook-events", "nope", "x"]
    assert main(bad) == 2
    assert "webhook_events_filter" in capsys.readouterr().err
    home = ["generate", "--service", "home", "--emulator", "--webhook", "http://127.0.0.1:9/h"]
    assert main([*home, "x"]) == 2
    assert "api service" in capsys.readouterr().err
