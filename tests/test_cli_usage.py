"""Usage errors of the command line: everything that can be checked before the first
create is, and each is exit status 2 with one line on stderr, nothing on stdout, and
nothing started (no emulator, no request, no database created)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import replicate_home.emulator
from replicate_home import ReplicateHome, RunNotFound
from replicate_home.cli import main
from replicate_home.comparisons import ResultsStore, load_prompts, parse_prompts, resume_comparison
from replicate_home.emulator import Emulator, Scenario


@pytest.fixture
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting an emulator fails the test: usage errors come before anything starts."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an emulator was started")

    monkeypatch.setattr(replicate_home.emulator.Emulator, "serve", refuse)


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv``: exit 2, nothing on stdout, one line on stderr (returned)."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replicate-home: error: ")
    assert "Errno" not in err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A results database holding one finished run, named ``first``."""

    class Quick(Emulator):
        def __init__(self, scenario: Scenario | None = None, **options: Any) -> None:
            super().__init__(Scenario(duration=0.05), **options)

    db = tmp_path / "runs.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replicate_home.emulator, "Emulator", Quick)
        argv = ["compare", "--emulator", "--db", str(db), "--name", "first", "-p", "a", "-p", "b"]
        assert main([*argv, "-m", "gemma-2b"]) == 0
    capsys.readouterr()
    return db


# -- the prompt set ----------------------------------------------------------------------


@pytest.mark.usefixtures("no_emulator")
def test_a_missing_prompt_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "prompts.csv"
    db = tmp_path / "runs.db"
    line = usage_error(
        capsys, ["compare", "--emulator", "--db", str(db), "--prompts", str(missing), "-m", "sdxl"]
    )
    assert f"--prompts {missing}: no such file or directory" in line
    line = usage_error(
        capsys, ["compare", "--emulator", "--db", str(db), "--prompts", str(tmp_path), "-m", "sdxl"]
    )
    assert "is a directory" in line
    assert not db.exists()


@pytest.mark.usefixtures("no_emulator")
def test_a_prompt_file_that_is_not_utf8_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "prompts.txt"
    latin.write_bytes("un café\n".encode("latin-1"))
    line = usage_error(capsys, ["compare", "--emulator", "--prompts", str(latin), "-m", "sdxl"])
    assert "not UTF-8" in line


def test_a_csv_exported_with_a_byte_order_mark_reads_as_any_other(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark, before the header's first name."""
    exported = tmp_path / "prompts.csv"
    exported.write_bytes(b"\xef\xbb\xbfprompt,seed\r\na cat,1\r\nla f\xc3\xaate,2\r\n")
    rows = load_prompts(exported)
    assert [(row.prompt, dict(row.input)) for row in rows] == [
        ("a cat", {"seed": 1}),
        ("la fête", {"seed": 2}),
    ]
    for format in ("lines", "jsonl"):
        text = "\ufeffa cat\n" if format == "lines" else '\ufeff{"prompt": "a cat"}\n'
        assert [row.prompt for row in parse_prompts(text, format)] == ["a cat"]


@pytest.mark.usefixtures("no_emulator")
def test_row_inputs_on_the_homepage_service_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a"}\n{"prompt": "b", "seed": 2}\n', encoding="utf-8")
    db = tmp_path / "runs.db"
    argv = ["compare", "--emulator", "--service", "home", "--db", str(db), "--prompts", str(rows)]
    line = usage_error(capsys, [*argv, "-m", "gemma-2b"])
    assert "prompt 2 of the set" in line
    assert "--service api" in line
    assert not db.exists()


# -- the report, --save ------------------------------------------------------------------


@pytest.mark.usefixtures("no_emulator")
def test_a_report_without_jinja2_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # not installed
    db = tmp_path / "runs.db"
    argv = ["compare", "--emulator", "--db", str(db), "--report", str(tmp_path / "r.html")]
    line = usage_error(capsys, [*argv, "-p", "a", "-m", "gemma-2b"])
    assert "pip install 'replicate-home[report]'" in line
    assert not db.exists()
    line = usage_error(capsys, ["report", "x", "--db", str(db)])
    assert "pip install 'replicate-home[report]'" in line


@pytest.mark.usefixtures("no_emulator")
def test_report_pages_and_save_directories_that_cant_be_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    db = ["--db", str(tmp_path / "runs.db")]
    prompt_set = ["compare", "--emulator", *db, "-p", "a", "-m", "gemma-2b"]
    line = usage_error(capsys, [*prompt_set, "--report", str(tmp_path)])
    assert "is a directory" in line
    line = usage_error(capsys, [*prompt_set, "--report", str(a_file / "report.html")])
    assert "is a file, not a directory" in line
    for command in (
        ["generate", "--emulator", "-m", "sdxl"],
        ["compare", "--emulator", "-m", "sdxl"],
    ):
        line = usage_error(capsys, [*command, "--save", str(a_file), "a hat"])
        assert f"--save {a_file}: a file is there" in line
        line = usage_error(capsys, [*command, "--save", str(a_file / "out"), "a hat"])
        assert "is a file, not a directory" in line
    assert a_file.read_text(encoding="utf-8") == "mine"


# -- run names and the database ----------------------------------------------------------


@pytest.mark.usefixtures("no_emulator")
def test_resume_and_report_never_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.db"
    line = usage_error(capsys, ["compare", "--emulator", "--resume", "x", "--db", str(missing)])
    assert f"--resume: no results database at {missing}" in line
    line = usage_error(capsys, ["compare", "--emulator", "--resume", "x"])
    assert "replicate-home.db (the default; --db PATH names another)" in line
    line = usage_error(capsys, ["report", "x", "--db", str(missing)])
    assert "report: no results database" in line
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_or_a_name_taken_is_a_usage_error_with_the_way_out(
    recorded: Path, no_emulator: None, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", str(recorded)]
    line = usage_error(capsys, ["compare", "--emulator", *db, "--resume", "nope"])
    assert line.endswith(f"no run 'nope' in {recorded}; its runs: first")
    line = usage_error(capsys, ["report", "nope", *db])
    assert "its runs: first" in line
    taken = ["compare", "--emulator", *db, "--name", "first", "-p", "c", "-m", "gemma-2b"]
    line = usage_error(capsys, taken)
    assert "a run named 'first' is already in" in line
    assert "--resume first finishes it, or give another --name" in line


@pytest.mark.usefixtures("no_emulator")
def test_a_file_that_is_no_database_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database " * 100, encoding="utf-8")
    line = usage_error(capsys, ["compare", "--emulator", "--resume", "x", "--db", str(notes)])
    assert str(notes) in line


@pytest.mark.anyio
async def test_resuming_an_unknown_run_is_a_typed_error(recorded: Path) -> None:
    async with ResultsStore.open(recorded) as store, ReplicateHome("http://127.0.0.1:9") as client:
        with pytest.raises(RunNotFound) as caught:
            await resume_comparison(client, store, "nope")
    assert isinstance(caught.value, KeyError)  # what the store raised before
    assert caught.value.run_id == "nope"
    assert str(caught.value) == "no run named 'nope'"


# -- arguments: the subcommand's usage, what was meant -----------------------------------


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (
            ["generate", "--emulater", "hi"],
            "usage: replicate-home generate ",
            "unrecognized arguments: --emulater (did you mean --emulator?)",
        ),
        (
            ["generate"],
            "usage: replicate-home generate ",
            "the following arguments are required: PROMPT (or -i inputs)",
        ),
        (
            ["generate", "a", "cat"],
            "usage: replicate-home generate ",
            "unrecognized arguments: cat "
            '(a prompt of several words goes in quotes: "a cat in a hat")',
        ),
        (
            ["compare", "-m", "sdxl", "--jsno", "hi"],
            "usage: replicate-home compare ",
            "unrecognized arguments: --jsno (did you mean --json?)",
        ),
        (
            ["compare", "hi"],
            "usage: replicate-home compare ",
            "the following arguments are required: -m/--model (or -d/--deployment, "
            "--collection, --search)",
        ),
        (
            ["predictions", "get", "x", "--jsn"],
            "usage: replicate-home predictions get ",
            "unrecognized arguments: --jsn (did you mean --json?)",
        ),
    ],
)
def test_argument_errors_show_the_commands_own_usage(
    argv: list[str], usage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(usage)
    command = usage.removeprefix("usage: ").rstrip()
    assert err.strip().splitlines()[-1] == f"{command}: error: {message}"


def test_an_emulator_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "replicate_home", "emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"replicate-home: error: port {port} on 127.0.0.1 is in use (another emulator?): "
        "pick another --port, or --port 0 for any free one\n"
    )
