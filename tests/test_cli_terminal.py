"""The command line on a terminal: what a person sees at 80 and at 120 columns (a real
pseudo-terminal for the command, rich's own console width for the live lines)."""

from __future__ import annotations

import base64
import fcntl
import io
import itertools
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap

import pytest
from rich.console import Console

from replicate_home._fanout import StatusChanged
from replicate_home.cli import main
from replicate_home.cli._common import shown_url
from replicate_home.cli._run_view import progress_line
from replicate_home.cli._terminal_view import LiveView
from replicate_home.comparisons import RunProgress

#: The command line with the emulator that ``--emulator`` starts scripted: every
#: prediction of gemma takes 0.1 s and answers TEXT.
RUNNER = textwrap.dedent(
    """
    import sys
    import replicate_home.emulator as emulator_module
    from replicate_home.cli import main
    from replicate_home.emulator import Emulator, Scenario

    class Scripted(Emulator):
        def __init__(self, *args, **kwargs):
            super().__init__(Scenario(duration=0.1), **kwargs)
            text = Scenario(duration=0.1, output=sys.argv[2])
            self.script(sys.argv[1], text, model="google-deepmind/gemma-2b-it")

    emulator_module.Emulator = Scripted
    sys.exit(main(sys.argv[3:]))
    """
)

TEXT = (
    "Felt hats keep their shape in the rain, straw hats let the summer wind through, "
    "and a top hat says that the evening has begun. "
) * 3

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(columns: int, *argv: str) -> tuple[int, list[str]]:
    """Run the command with stdout on a pseudo-terminal ``columns`` wide (stderr is a
    pipe: no live view); its exit status and stdout's lines as the terminal got them."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**environment, "TERM": "xterm-256color"},
    ) as process:
        os.close(terminal)
        received = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end closed: all is read
                break
            if not chunk:
                break
            received += chunk
        process.wait(timeout=60)
    os.close(controller)
    text = ANSI.sub("", received.decode()).replace("\r", "")
    return process.returncode, text.splitlines()


@pytest.mark.parametrize("columns", [80, 120])
def test_compare_fits_the_terminal_and_cuts_no_word(columns: int) -> None:
    argv = ["compare", "--emulator", "-m", "gemma-2b", "-m", "sdxl", "-m", "sd-3"]
    code, lines = on_a_terminal(columns, "a hat", TEXT, *argv, "a hat")
    assert code == 0
    assert lines
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    screen = "\n".join(lines)
    for model in (
        "google-deepmind/gemma-2b-it",
        "bytedance/sdxl-lightning-4step",
        "stability-ai/stable-diffusion-3",
    ):
        assert model in screen
    assert screen.count("succeeded") == 3
    if columns == 120:  # the table, whole: every row ends with its right border
        rows = [line for line in lines if line.startswith("│")]
        assert rows
        assert all(line.rstrip().endswith("│") for line in rows)
        cells = [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows]
        starts = [n for n, cell in enumerate(cells) if cell[0]] + [len(cells)]
        outputs = [
            [cell[-1] for cell in cells[start:end]] for start, end in itertools.pairwise(starts)
        ]
    else:  # stacked: each output under its model, at the terminal's whole width
        assert not any(line.startswith(("│", "┃")) for line in lines)
        starts = [n for n, line in enumerate(lines) if re.match(r"\d ", line)] + [len(lines)]
        outputs = [
            [line.strip() for line in lines[start + 1 : end]]
            for start, end in itertools.pairwise(starts)
        ]
    text, *images = outputs
    # The text's first words, each whole, then "…".
    words = " ".join(text).split(" ")
    assert words[-1].endswith("…")
    assert words[:-1] == TEXT.split()[: len(words) - 1]
    assert TEXT.split()[len(words) - 1].startswith(words[-1].rstrip("…"))
    # Image URLs whole (folded onto the next line where the column is narrow).
    for image in images:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/_emulator/files/\w+/0\.png", "".join(image))


def render(renderable: object, columns: int) -> list[str]:
    console = Console(width=columns, file=io.StringIO(), color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in output.splitlines()]


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_the_live_lines_fit_the_terminal(columns: int) -> None:
    models = ["google-deepmind/gemma-2b-it", "stability-ai/stable-diffusion-3"]
    view = LiveView(models, Console(file=io.StringIO()))
    view.update(StatusChanged(0, models[0], "processing"))
    lines = render(view.render(), columns)
    assert len(lines) == 2
    assert all(len(line) <= columns for line in lines)
    assert "processing" in lines[0]
    assert lines[1].split()[-2:] == ["0", "polls"]
    if columns >= 80:
        assert models[1] in lines[1]  # whole where there is room
    else:
        assert "…" in lines[1]  # else the name gives way, not the status


def progress(**counts: int | float | None) -> RunProgress:
    values: dict[str, object] = {
        "run_id": "r",
        "total": 90,
        "done": 40,
        "running": 4,
        "waiting": 46,
        "failed": 3,
        "remaining": 35.0,
    }
    values.update(counts)
    return RunProgress(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_the_prompt_set_line_fits_and_says_why_cells_wait(columns: int) -> None:
    (line,) = render(progress_line(progress(), 12.0, 4), columns)
    assert len(line) <= columns
    words = (
        "40/90 cells done · 4 running · 46 queued (--limit 4) · 3 failed · about 35 s left · 12 s"
    )
    if columns >= len(words):
        assert line.endswith(words)
        assert line.startswith("━") == (columns - len(words) > 10)  # a bar in the room left
    else:
        assert line.endswith("…")
    # Queued below the limit is not "for the limit"; one cell is one cell.
    (line,) = render(progress_line(progress(running=2, waiting=48), 1.0, 4), 120)
    assert "48 queued ·" in line
    (line,) = render(progress_line(progress(total=1, done=1, running=0, waiting=0), 1.0, None), 120)
    assert line.endswith("1/1 cell done · 3 failed · 1 s")


def test_a_data_uri_is_said_in_few_words_on_a_terminal_and_whole_in_a_pipe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    png = base64.b64encode(b"\x89PNG" + bytes(2000)).decode()
    assert shown_url(f"data:image/png;base64,{png}") == (
        "a data: URI holding image/png of 2 KB (--save DIR writes it to a file)"
    )
    assert shown_url("https://example.com/a.png") == "https://example.com/a.png"
    argv = ["generate", "--emulator", "--service", "api", "-m", "black-forest-labs/flux-schnell"]
    assert main([*argv, "a fox"]) == 0
    out = capsys.readouterr().out
    header, _, payload = out.strip().partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(payload).startswith(b"\x89PNG")
    argv = [
        "compare",
        "--emulator",
        "--service",
        "api",
        "--json",
        "-m",
        "black-forest-labs/flux-schnell",
    ]
    assert main([*argv, "a fox"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["images"][0].startswith("data:image/png;base64,")
