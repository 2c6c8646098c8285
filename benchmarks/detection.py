"""Benchmark 2: how late a finished prediction is noticed, and how many polls it costs.

Predictions of ``D`` seconds run on the emulator (homepage service) under three
schedules: the spec's fixed 5 s, a fixed 0.5 s, and our default adaptive schedule.
"Latency after completion" is the client's wall clock (``time.time()``) when
``predict()`` returns, minus the ``completed_at`` the emulator stamped on the
prediction (same machine, same clock). Every (schedule, ``D``) cell runs several
predictions; all cells run at once, their starts staggered, at a load far below what
either process can take (a few dozen requests a second).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from replicate_home import AdaptiveSchedule, FixedSchedule, PollSchedule, ReplicateHome

from ._common import (
    REPO_ROOT,
    EmulatorProcess,
    Settings,
    Summary,
    Table,
    fmt_ratio,
    prompt_for,
    summarize,
)

MODEL = "google-deepmind/gemma-2b-it"


@dataclass(frozen=True)
class Schedule:
    name: str
    poll_interval: float | None  # None: the client's default (adaptive)
    model: PollSchedule


SCHEDULES = [
    Schedule("fixed 5 s (spec)", 5.0, FixedSchedule(5.0)),
    Schedule("fixed 0.5 s", 0.5, FixedSchedule(0.5)),
    Schedule("ours: adaptive (default)", None, AdaptiveSchedule()),
]


@dataclass
class Cell:
    """The predictions of one schedule and one duration."""

    latencies: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)


@dataclass
class Results:
    durations: list[float]
    cells: dict[tuple[str, float], Cell]
    requests_counted: int = 0
    requests_seen: int = 0

    def latency(self, schedule: str, duration: float) -> Summary:
        return summarize(self.cells[schedule, duration].latencies)

    def polls(self, schedule: str, duration: float) -> Summary:
        return summarize(self.cells[schedule, duration].polls)


async def _measure(
    url: str, durations: Sequence[float], reps: int, stagger: float
) -> list[tuple[str, float, str, float, int]]:
    """(schedule, D, prediction id, arrival wall time, polls) of every prediction."""
    found: list[tuple[str, float, str, float, int]] = []
    rng = random.Random(5)

    async def one(client: ReplicateHome, schedule: str, duration: float, index: int) -> None:
        await anyio.sleep(rng.uniform(0.0, stagger))
        prediction = await client.predict(MODEL, prompt=prompt_for(duration, index))
        arrived = time.time()
        found.append((schedule, duration, prediction.id, arrived, prediction.polls))

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                ReplicateHome(url, poll_interval=schedule.poll_interval, timeout=60)
            )
            for schedule in SCHEDULES
        ]
        async with anyio.create_task_group() as group:
            for number, (schedule, client) in enumerate(zip(SCHEDULES, clients, strict=True)):
                for duration in durations:
                    for rep in range(reps):
                        index = number * reps + rep
                        group.start_soon(one, client, schedule.name, duration, index)
    return found


def measure(settings: Settings) -> Results:
    durations: list[float] = settings.pick([0.3, 1.0, 3.0, 10.0], [0.3])
    reps = settings.pick(7, 1)
    results = Results(durations, {(s.name, d): Cell() for s in SCHEDULES for d in durations})
    with EmulatorProcess(durations=durations, count=len(SCHEDULES) * reps) as emulator:
        before = emulator.stats()["requests"]
        found = anyio.run(_measure, emulator.url, durations, reps, settings.pick(1.0, 0.3))
        # The first stats request is counted in the second answer.
        results.requests_seen = emulator.stats()["requests"] - before - 1
        completed = emulator.completed_at()
    for schedule, duration, prediction_id, arrived, polls in found:
        cell = results.cells[schedule, duration]
        cell.latencies.append(arrived - completed[prediction_id])
        cell.polls.append(float(polls))
        results.requests_counted += polls + 1
    return results


def run(settings: Settings, plot_path: Path | None = None) -> list[Table]:
    results = measure(settings)
    table = Table(
        "Detection latency after completion, and polls per prediction",
        [
            "D",
            "schedule",
            "latency after completion, ms",
            "vs fixed 5 s",
            "polls/prediction",
            "vs fixed 0.5 s",
            "target",
        ],
    )
    adaptive = SCHEDULES[2].name
    for duration in results.durations:
        spec = results.latency(SCHEDULES[0].name, duration)
        half = results.polls(SCHEDULES[1].name, duration)
        for schedule in SCHEDULES:
            latency = results.latency(schedule.name, duration)
            polls = results.polls(schedule.name, duration)
            target = ""
            if schedule.name == adaptive:
                target = _verdict(duration, latency, polls, half)
            table.add(
                f"{duration:g} s",
                schedule.name,
                _ms(latency),
                fmt_ratio(latency.median, spec.median),
                _count(polls),
                fmt_ratio(polls.median, half.median),
                target,
            )
    reps = len(results.cells[adaptive, results.durations[0]].latencies)
    table.notes.append(
        f"{reps} predictions per cell; median (min-max). Requests per prediction = polls + 1 "
        f"(the create); the emulator counted {results.requests_seen} requests for "
        f"{results.requests_counted} expected."
    )
    table.notes.append(
        "Target (ours): median latency after completion ≤ 10% of D + 50 ms, and for "
        "D ≥ 3 s fewer polls than the fixed 0.5 s schedule."
    )
    if plot_path is not None:
        plot(results, plot_path)
        shown = plot_path.resolve()
        if shown.is_relative_to(REPO_ROOT):
            shown = shown.relative_to(REPO_ROOT)
        table.notes.append(f"Plot: {shown}")
    return [table]


def _ms(summary: Summary) -> str:
    return f"{summary.median * 1e3:.0f} ({summary.low * 1e3:.0f}-{summary.high * 1e3:.0f})"


def _count(summary: Summary) -> str:
    if summary.low == summary.high:
        return f"{summary.median:.0f}"
    return f"{summary.median:.0f} ({summary.low:.0f}-{summary.high:.0f})"


def _verdict(duration: float, latency: Summary, polls: Summary, half: Summary) -> str:
    bound = 0.1 * duration + 0.05
    parts = [f"latency ≤ {bound * 1e3:.0f} ms: {'met' if latency.median <= bound else 'MISSED'}"]
    if duration >= 3:
        fewer = polls.median < half.median
        parts.append(f"polls < {half.median:.0f}: {'met' if fewer else 'MISSED'}")
    return "; ".join(parts)


def model_latency(schedule: PollSchedule, duration: float) -> tuple[float, int]:
    """Latency and polls the schedule alone implies (no request time): the first poll
    at or after ``duration``."""
    moment, polls = 0.0, 0
    while True:
        moment += schedule.delay(polls)
        polls += 1
        if moment >= duration:
            return moment - duration, polls


def poll_gap(schedule: PollSchedule, duration: float) -> float:
    """The gap between the polls before and after ``duration``: the most a prediction of
    about that length can be noticed late on this schedule (no request time)."""
    moment, polls = 0.0, 0
    while True:
        delay = schedule.delay(polls)
        moment += delay
        polls += 1
        if moment >= duration:
            return delay


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {SCHEDULES[0].name: "#d62728", SCHEDULES[1].name: "#1f77b4"}
    colors[SCHEDULES[2].name] = "#2ca02c"
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    low, high = 0.2, 12.0
    grid = [low * (high / low) ** (step / 600) for step in range(601)]
    for schedule in SCHEDULES:
        color = colors[schedule.name]
        model = [model_latency(schedule.model, d) for d in grid]
        left.plot(grid, [poll_gap(schedule.model, d) for d in grid], color=color, alpha=0.3)
        right.plot(grid, [polls for _, polls in model], color=color, alpha=0.25, linewidth=1)
        medians = [results.latency(schedule.name, d) for d in results.durations]
        left.errorbar(
            results.durations,
            [max(s.median, 1e-4) for s in medians],
            yerr=[
                [max(s.median - s.low, 0) for s in medians],
                [max(s.high - s.median, 0) for s in medians],
            ],
            fmt="o",
            color=color,
            capsize=3,
            label=schedule.name,
        )
        polls = [results.polls(schedule.name, d).median for d in results.durations]
        right.plot(results.durations, polls, "o", color=color, label=schedule.name)
    left.plot(
        grid, [0.1 * d + 0.05 for d in grid], "k--", linewidth=1, label="target: 10% of D + 50 ms"
    )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_ylim(1e-4, 8)  # room below the points for the legend
    left.set_xlabel("prediction duration D (s)")
    left.set_ylabel("latency after completion (s)")
    left.set_title("Detection latency (median, min-max)")
    left.legend(fontsize=8, loc="lower right")
    right.set_xscale("log")
    right.set_xlabel("prediction duration D (s)")
    right.set_ylabel("polls per prediction")
    right.set_title("Polls per prediction (median)")
    right.legend(fontsize=8, loc="upper left")
    for axis in (left, right):
        axis.set_xticks([0.3, 1, 3, 10])
        axis.set_xticklabels(["0.3", "1", "3", "10"])
        axis.grid(True, which="both", alpha=0.2)
    figure.text(
        0.5,
        0.01,
        "Points: measured on the emulator. Faint lines, from the schedule alone: left, the "
        "gap between the polls around D (the most a schedule can be late); right, the polls "
        "up to D.",
        ha="center",
        fontsize=8,
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
