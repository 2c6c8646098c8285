"""The live view and the final results of ``replicate-home compare`` on a terminal
(needs ``rich``), laid out for the terminal's width: nothing runs past its right edge
and no word is cut, at 80 columns as at 200."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .._fanout import ComparisonResult, Event, Failed, Finished, Progress, StatusChanged
from ._common import shown_url

__all__ = ["LiveView", "ResultsView"]

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timeout": "red",
    "not sent": "yellow",
    "error": "red",
    "canceled": "yellow",
    "aborted": "yellow",
}

#: A text output's excerpt in the table, in characters (the whole of it is in the
#: Markdown and JSON outputs).
EXCERPT = 60

#: The output column's least width: below it the results are stacked, one model after
#: the other, each output under its model at the terminal's whole width.
OUTPUT_MIN_WIDTH = 30

#: What the table's borders and cell padding take, for its six columns.
_TABLE_FRAME = 6 * 3 + 1

#: How far a stacked result's output is indented under its model.
_INDENT = 3


class LiveView:
    """One line per model (status, elapsed, polls, and the progress an image model
    reports in its logs), redrawn as events arrive; a model's name is shortened with
    "…" where the terminal is too narrow for the line."""

    def __init__(self, models: Sequence[str], console: Console) -> None:
        self._models = list(models)
        self._status = ["waiting"] * len(models)
        self._polls = [0] * len(models)
        self._progress = [""] * len(models)
        self._started: list[float | None] = [None] * len(models)
        self._ended: list[float | None] = [None] * len(models)
        self._console = console
        self._live = Live(
            get_renderable=self.render, console=console, refresh_per_second=8, transient=True
        )

    def __enter__(self) -> LiveView:
        if self._console.is_terminal:
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._console.is_terminal:
            self._live.stop()

    def update(self, event: Event) -> None:
        index, now = event.index, time.monotonic()
        if self._started[index] is None:
            self._started[index] = now
        if isinstance(event, StatusChanged):
            self._status[index] = event.status
        elif isinstance(event, Progress):
            self._polls[index] = event.prediction.polls
            progress = event.prediction.progress  # image models report steps in their logs
            if progress is not None:
                self._progress[index] = (
                    f"{progress.percentage:4.0%} {progress.current}/{progress.total}"
                )
        elif isinstance(event, Finished):
            self._status[index] = event.prediction.status
            self._ended[index] = now
        elif isinstance(event, Failed):
            self._status[index] = type(event.error).__name__
            self._ended[index] = now

    def render(self) -> RenderableType:
        """The lines as they stand (what the live display draws)."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(overflow="ellipsis", no_wrap=False)  # the one that gives way
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        now = time.monotonic()
        for index, model in enumerate(self._models):
            started, ended = self._started[index], self._ended[index]
            elapsed = 0.0 if started is None else (ended or now) - started
            status = self._status[index]
            grid.add_row(
                str(index),
                model,
                Text(status, style=_STATUS_STYLE.get(status, "cyan")),
                f"{elapsed:.1f}s",
                f"{self._polls[index]} polls",
                self._progress[index],
            )
        return grid


class ResultsView:
    """The results side by side: a table (model, status, latency, polls, an excerpt of
    the output or its images) where the terminal is wide enough for the output to be
    read, else each model's line with its output under it."""

    def __init__(self, results: Sequence[ComparisonResult]) -> None:
        self._results = list(results)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if width >= self._table_width():
            yield self._table()
        else:
            yield from self._stacked(width)

    def _table_width(self) -> int:
        """The least width at which the table's output column has its least width."""
        widest = [
            max((len(str(result.index)) for result in self._results), default=1),
            max((len(result.model) for result in self._results), default=5),
            max((len(result.status) for result in self._results), default=6),
            len("latency"),
            len("polls"),
        ]
        return _TABLE_FRAME + sum(widest) + OUTPUT_MIN_WIDTH

    def _table(self) -> Table:
        table = Table(show_lines=False)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("latency", justify="right", no_wrap=True)
        table.add_column("polls", justify="right", no_wrap=True)
        table.add_column("output", overflow="fold", min_width=OUTPUT_MIN_WIDTH)
        for result in self._results:
            table.add_row(
                str(result.index),
                result.model,
                _status(result),
                _latency(result),
                "" if result.polls is None else str(result.polls),
                _output(result, EXCERPT),
            )
        return table

    def _stacked(self, width: int) -> Iterator[RenderableType]:
        excerpt = max(EXCERPT, 2 * (width - _INDENT))
        for result in self._results:
            line = Text(f"{result.index} ", overflow="fold")
            line.append(result.model, style="bold")
            line.append(" · ")
            line.append_text(_status(result))
            if result.latency is not None:
                line.append(f" · {_latency(result)}")
            if result.polls is not None:
                line.append(f" · {result.polls} polls")
            output = Text(_output(result, excerpt), overflow="fold")
            yield Group(line, Padding(output, (0, 0, 0, _INDENT)))


def _status(result: ComparisonResult) -> Text:
    return Text(result.status, style=_STATUS_STYLE.get(result.status, ""))


def _latency(result: ComparisonResult) -> str:
    return "" if result.latency is None else f"{result.latency:.2f}s"


def _output(result: ComparisonResult, excerpt: int) -> str:
    """The output as the terminal shows it: the images' URLs (a ``data:`` URI said in a
    few words), the error, or the start of the text on one line."""
    if result.images:
        return "\n".join(shown_url(url) for url in result.images)
    if result.error is not None:
        return " ".join(str(result.error).split())
    text = " ".join((result.text or "").split())
    if len(text) <= excerpt:
        return text
    cut = text[: excerpt - 1]
    whole_words = cut.rpartition(" ")[0] if text[excerpt - 1] != " " else cut
    return (whole_words or cut).rstrip() + "…"  # no word cut in two (unless it is one word)
