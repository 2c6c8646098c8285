"""Ctrl-C on a prompt-set run: what had ended is printed as the end would print it, and
the exact command that finishes the run; that command does. And Ctrl-C at the very start,
while the package imports: one line and status 130, never a traceback."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import replicate_home.emulator
from replicate_home.cli import main
from replicate_home.emulator import Emulator, Scenario

#: The command line with the emulator ``--emulator`` starts: the prompt "first" ends at
#: once, every other prompt takes a minute.
RUNNER = textwrap.dedent(
    """
    import sys
    import replicate_home.emulator as emulator_module
    from replicate_home.cli import main
    from replicate_home.emulator import Emulator, Scenario

    class Scripted(Emulator):
        def __init__(self, *args, **kwargs):
            super().__init__(Scenario(duration=60), **kwargs)
            self.script("first", Scenario(duration=0.1))

    emulator_module.Emulator = Scripted
    sys.exit(main(sys.argv[1:]))
    """
)


def interrupted(*argv: str) -> tuple[str, list[str]]:
    """Run ``compare`` with ``-v``, send Ctrl-C once the first prediction has ended and
    the second is being polled; stdout and stderr's lines (without the library's log)."""
    command = [sys.executable, "-c", RUNNER, "compare", "--emulator", "-v", *argv]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        before, ended = [], False
        for line in process.stderr:  # blocking reads: the command's own log is the cue
            before.append(line)
            ended = ended or bool(re.match(r"replicate_home: home: \w+ is succeeded", line))
            if ended and re.match(r"replicate_home: home: \w+ is processing", line):
                break  # the first cell has ended (and was recorded), the second runs
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = [line for line in [*before, *err.splitlines()] if not line.startswith("replicate_")]
    return out, [line.rstrip("\n") for line in lines]


@pytest.mark.parametrize(
    "as_json",
    [
        pytest.param(False, id="summary", marks=pytest.mark.slow),
        pytest.param(True, id="json", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_prints_the_run_so_far_and_the_command_that_finishes_it(
    tmp_path: Path, as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    argv = ["--db", str(db), "--name", "hats", "-p", "first", "-p", "second", "-p", "third"]
    argv += ["-m", "gemma-2b", "--limit", "1", *(["--json"] if as_json else [])]
    out, err = interrupted(*argv)
    assert err[0] == f"replicate-home: run hats: 3 cells, recorded in {db}"
    *_, hint, last = err
    assert last == "replicate-home: error: interrupted"
    resume = ["replicate-home", "compare", "--resume", "hats", "--db", str(db), "--emulator"]
    resume += ["--limit", "1", *(["--json"] if as_json else [])]
    assert hint == f"replicate-home: run hats stopped; to finish it: {shlex.join(resume)}"
    if as_json:
        first, second, third = json.loads(out)
        assert (first["prompt"], first["status"]) == ("first", "succeeded")
        assert (second["status"], third["status"]) == (None, None)
    else:
        title, line, *details = out.splitlines()
        assert title == f"run hats (3 cells, {db})"
        assert line.startswith("  google-deepmind/gemma-2b-it: ")
        assert "1 succeeded" in line
        assert details[0].strip().startswith("latency p50 ")  # the model's numbers so far

    # The command printed finishes the run (here on a quick emulator).
    class Quick(Emulator):
        def __init__(self, scenario: Scenario | None = None, **options: Any) -> None:
            super().__init__(Scenario(duration=0.05), **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replicate_home.emulator, "Emulator", Quick)
        # A cell whose create was on its way at Ctrl-C is "in doubt" on the homepage
        # service (exit 1); every cell has ended either way.
        assert main(resume[1:]) in (0, 1)
    capsys.readouterr()
    with sqlite3.connect(db) as database:
        states = [row[0] for row in database.execute("SELECT state FROM cells")]
    assert states == ["done", "done", "done"]


#: The console script's guard, with a Ctrl-C at the moment the package starts to import.
GUARDED = textwrap.dedent(
    """
    import sys

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "replicate_home":
                raise KeyboardInterrupt  # as if Ctrl-C came while it loads
            return None

    sys.meta_path.insert(0, Interrupting())
    import _replicate_home_cli
    sys.exit(_replicate_home_cli.main())
    """
)


def test_ctrl_c_while_the_package_imports_is_one_line_and_130() -> None:
    (script,) = entry_points(group="console_scripts", name="replicate-home")
    assert script.value == "_replicate_home_cli:main"  # the guard is what runs
    done = subprocess.run(
        [sys.executable, "-c", GUARDED, "models"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 130
    assert done.stdout == ""
    assert done.stderr == "replicate-home: error: interrupted\n"


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.05, 0.1, 0.2, 0.4])
def test_ctrl_c_in_the_first_moments_never_prints_a_traceback(after: float) -> None:
    """The real console script, interrupted at moments of its start (when depends on the
    machine: before Python handles signals it just ends, killed by SIGINT)."""
    script = Path(sys.executable).with_name("replicate-home")
    with subprocess.Popen(
        [str(script), "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        time.sleep(after)  # not a synchronization: the moment of the Ctrl-C is the variable
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    assert "Traceback" not in err
    assert process.returncode in (0, 130, -signal.SIGINT), err
    if process.returncode == 130:
        assert err.splitlines()[-1] == "replicate-home: error: interrupted"
