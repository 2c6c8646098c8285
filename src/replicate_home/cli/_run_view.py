"""What a prompt-set run shows while it goes: its name once it is recorded (always, on
stderr: it is what ``--resume`` needs), and on a terminal with rich (the ``cli`` extra)
one live line that fits the terminal's width: a bar and the counts."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..comparisons import RunProgress

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["RunDisplay", "count", "progress_counts", "progress_line"]

#: The bar's least width; narrower, the line is the counts alone.
_BAR_MIN = 10

#: The bar's widest (wider says no more).
_BAR_MAX = 40


def count(number: int, noun: str) -> str:
    """``1 cell``, ``2 cells``: a number and its noun, in the plural but for one."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def progress_counts(progress: RunProgress, elapsed: float, limit: int | None) -> str:
    """The live line's words: done, running, queued (and why, where it is known: cells
    held back by ``--limit``), failed, the time left and the time so far."""
    if progress.stage == "judges":  # the cells have ended: judge models score them
        parts = [f"judging: {progress.done}/{count(progress.total, 'output')} judged"]
    else:
        parts = [f"{progress.done}/{count(progress.total, 'cell')} done"]
    if progress.running:
        parts.append(f"{progress.running} running")
    if progress.waiting:
        held = limit is not None and progress.running >= limit
        parts.append(f"{progress.waiting} queued" + (f" (--limit {limit})" if held else ""))
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    if progress.remaining is not None and progress.done < progress.total:
        parts.append(f"about {progress.remaining:.0f} s left")
    parts.append(f"{elapsed:.0f} s")
    return " · ".join(parts)


def progress_line(progress: RunProgress | None, elapsed: float, limit: int | None) -> Any:
    """The live line (a rich renderable) for the width it is drawn at: the counts, and
    a bar before them in what room is left; the counts cut with "…" only where the
    terminal is narrower than they are."""
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    if progress is None:
        return Text("starting…", no_wrap=True, overflow="ellipsis")
    words = Text(progress_counts(progress, elapsed, limit), no_wrap=True, overflow="ellipsis")
    total, done = progress.total, progress.done

    class Line:
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            room = options.max_width - words.cell_len - 1
            if room < _BAR_MIN:
                yield words
                return
            bar = ProgressBar(total=total, completed=done, width=min(room, _BAR_MAX))
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_row(bar, words)
            yield grid

    return Line()


class RunDisplay:
    """The run's name once it is known, and the live line while it goes (on a
    terminal, with rich). ``run_id`` is the run's name once a progress report gave it
    (the run was recorded): what an interrupted run is resumed by."""

    def __init__(self, database: Path, live: bool, limit: int | None = None) -> None:
        self._database = database
        self._live_wanted = live
        self._limit = limit
        self._live: Any = None
        self._last: RunProgress | None = None
        self._started = time.monotonic()
        self.run_id: str | None = None

    def __enter__(self) -> RunDisplay:
        # The live line is the `cli` extra's; without rich the run goes on without it.
        if self._live_wanted and importlib.util.find_spec("rich") is not None:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            if console.is_terminal:
                self._live = Live(
                    get_renderable=self.render,
                    console=console,
                    refresh_per_second=4,
                    transient=True,
                )
                self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, progress: RunProgress) -> None:
        self._last = progress
        if self.run_id is None:
            self.run_id = progress.run_id
            print(
                f"replicate-home: run {progress.run_id}: {count(progress.total, 'cell')}, "
                f"recorded in {self._database}",
                file=sys.stderr,
                flush=True,
            )

    def render(self) -> RenderableType:
        """The live line as it stands."""
        line: RenderableType = progress_line(
            self._last, time.monotonic() - self._started, self._limit
        )
        return line
