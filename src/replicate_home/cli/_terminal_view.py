"""The live view and the final table of ``replicate-home compare`` (needs ``rich``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._fanout import ComparisonResult, Event, Failed, Finished, Progress, StatusChanged

__all__ = ["LiveView", "results_table"]

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timeout": "red",
    "not sent": "yellow",
    "error": "red",
    "canceled": "yellow",
    "aborted": "yellow",
}
EXCERPT = 60


class LiveView:
    """One line per model (status, elapsed, polls, and the progress an image model
    reports in its logs), redrawn as events arrive."""

    def __init__(self, models: Sequence[str], console: Console) -> None:
        self._models = list(models)
        self._status = ["waiting"] * len(models)
        self._polls = [0] * len(models)
        self._progress = [""] * len(models)
        self._started: list[float | None] = [None] * len(models)
        self._ended: list[float | None] = [None] * len(models)
        self._console = console
        self._live = Live(
            get_renderable=self._render, console=console, refresh_per_second=8, transient=True
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
                    f"  {progress.percentage:4.0%} {progress.current}/{progress.total}"
                )
        elif isinstance(event, Finished):
            self._status[index] = event.prediction.status
            self._ended[index] = now
        elif isinstance(event, Failed):
            self._status[index] = type(event.error).__name__
            self._ended[index] = now

    def _render(self) -> RenderableType:
        lines, now = [], time.monotonic()
        for index, model in enumerate(self._models):
            started, ended = self._started[index], self._ended[index]
            elapsed = 0.0 if started is None else (ended or now) - started
            status = self._status[index]
            line = Text(f"{index:>2} {model:<45} ")
            line.append(f"{status:<12}", style=_STATUS_STYLE.get(status, "cyan"))
            line.append(f" {elapsed:6.1f}s  {self._polls[index]:>3} polls")
            line.append(self._progress[index])
            lines.append(line)
        return Group(*lines)


def results_table(results: Sequence[ComparisonResult]) -> Table:
    """The side-by-side table: model, status, latency, polls, output excerpt or images."""
    table = Table(show_lines=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("polls", justify="right", no_wrap=True)
    table.add_column("output", overflow="fold", min_width=20)
    for result in results:
        if result.images:
            output = "\n".join(result.images)
        elif result.error is not None:
            output = str(result.error)
        else:
            output = " ".join((result.text or "").split())
            if len(output) > EXCERPT:
                output = output[: EXCERPT - 1] + "…"
        table.add_row(
            str(result.index),
            result.model,
            Text(result.status, style=_STATUS_STYLE.get(result.status, "")),
            "" if result.latency is None else f"{result.latency:.2f}s",
            "" if result.polls is None else str(result.polls),
            output,
        )
    return table
