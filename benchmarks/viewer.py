"""Benchmark 9: the viewer's first page of a 10,000-cell run against a 100-cell run.

Two results databases, each with one run whose cells all succeeded with a text output
of about 600 characters: 100 cells (25 prompts x 4 models, the baseline) and 10,000
cells (2,500 prompts x 4 models). Each is served by ``replicate-home view`` in a process
of its own (``python -m replicate_home view --port 0``), and asked, ``R`` times each
(20; quick: 5):

- the run's grid page (``/runs/RUN/grid``): time to the first byte of the answer;
- its first window of 25 prompt rows (``/api/runs/RUN/window``, what the page draws
  first): time to the first byte and to the whole answer;
- the event stream's snapshot (``/api/runs/RUN/events``): time to its first event;

the two runs taking turns, request by request, so that the machine's other load falls
on both alike.

Then the server's peak memory (``VmHWM`` of its process, Linux) after all of it.
Reported as medians, with each figure's ratio to the 100-cell run's; the target is a
first page that costs the same however large the run is (ratios near 1x): the viewer
reads windows, never a whole run.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx

from replicate_home.comparisons import ResultsStore

from ._common import Settings, Table, fmt_num, fmt_ratio, summarize

MODELS = ("meta/meta-llama-3-8b-instruct", "google-deepmind/gemma-2b-it", "acme/a", "acme/b")
TEXT = ("Across the quiet harbour the lamps came on one by one. " * 11).strip()


async def _make(database: Path, prompts: int) -> None:
    async with ResultsStore.open(database) as store:
        cells = [
            (p, m, model, f"prompt number {p}", {"prompt": f"prompt number {p}"})
            for p in range(prompts)
            for m, model in enumerate(MODELS)
        ]
        await store.create_run(service="api", models=MODELS, cells=cells, settings={}, run_id="run")
    # Every cell ended, in one transaction (the store writes one cell at a time).
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE cells SET state = 'done', status = 'succeeded', output_text = ?,"
            " latency = 1.5, predict_time = 1.2, ended_at = '2026-01-01T00:00:00+00:00'",
            (TEXT,),
        )
    connection.close()


@contextmanager
def _viewer(database: Path) -> Iterator[tuple[str, int]]:
    """``replicate-home view`` on ``database`` in a process of its own: URL and pid."""
    command = [sys.executable, "-m", "replicate_home", "view", "--db", str(database)]
    process = subprocess.Popen(
        [*command, "--port", "0", "--no-browser"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        if "viewer at " not in line:
            raise RuntimeError(f"the viewer did not start: {line!r}")
        url = line.split("viewer at ", 1)[1].split()[0].rstrip("/")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM: the memory figure needs Linux")


def _first_byte(http: httpx.Client, url: str) -> tuple[float, float]:
    """Seconds to the first byte and to the end of the answer to ``GET url``."""
    began = time.perf_counter()
    with http.stream("GET", url) as response:
        response.raise_for_status()
        pieces = response.iter_bytes()
        next(pieces)
        first = time.perf_counter() - began
        for _ in pieces:
            pass
    return first, time.perf_counter() - began


def _first_event(http: httpx.Client, url: str) -> float:
    began = time.perf_counter()
    with http.stream("GET", url) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                assert json.loads(line[6:])["type"] == "snapshot"
                return time.perf_counter() - began
    raise RuntimeError("the event stream ended without a snapshot")


def _measure(databases: dict[int, Path], reps: int) -> dict[int, dict[str, list[float]]]:
    """Each figure ``reps`` times per run, the runs taking turns (what load the machine
    has falls on both alike), then each server's peak memory."""
    names = ("page", "window", "window whole", "event")
    figures: dict[int, dict[str, list[float]]] = {
        cells: {name: [] for name in names} for cells in databases
    }
    with ExitStack() as stack:
        servers = {cells: stack.enter_context(_viewer(path)) for cells, path in databases.items()}
        http = stack.enter_context(httpx.Client(timeout=60))
        for _ in range(reps):
            for cells, (url, _) in servers.items():
                mine = figures[cells]
                mine["page"].append(_first_byte(http, f"{url}/runs/run/grid")[0])
                first, whole = _first_byte(http, f"{url}/api/runs/run/window")
                mine["window"].append(first)
                mine["window whole"].append(whole)
                mine["event"].append(_first_event(http, f"{url}/api/runs/run/events"))
        for cells, (_, pid) in servers.items():
            figures[cells]["peak"] = [_peak_kib(pid) / 1024]
    return figures


def run(settings: Settings) -> list[Table]:
    reps: int = settings.pick(20, 5)
    table = Table(
        "The viewer's first page, 10,000 cells against 100",
        [
            "run",
            "grid page TTFB, ms",
            "first window TTFB, ms",
            "first window whole, ms",
            "first event, ms",
            "peak server memory, MiB",
            "TTFB vs 100",
            "window vs 100",
            "event vs 100",
            "memory vs 100",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        databases = {cells: Path(folder) / f"run-{cells}.db" for cells in (100, 10_000)}
        for cells, database in databases.items():
            anyio.run(_make, database, cells // len(MODELS))
        results = _measure(databases, reps)
    base = {name: summarize(values).median for name, values in results[100].items()}
    for cells, figures in results.items():
        medians = {name: summarize(values) for name, values in figures.items()}
        table.add(
            f"{cells:,} cells",
            fmt_num(summarize([v * 1000 for v in figures["page"]]), 1),
            fmt_num(summarize([v * 1000 for v in figures["window"]]), 1),
            fmt_num(summarize([v * 1000 for v in figures["window whole"]]), 1),
            fmt_num(summarize([v * 1000 for v in figures["event"]]), 1),
            f"{medians['peak'].median:.0f}",
            fmt_ratio(medians["page"].median, base["page"]),
            fmt_ratio(medians["window whole"].median, base["window whole"]),
            fmt_ratio(medians["event"].median, base["event"]),
            fmt_ratio(medians["peak"].median, base["peak"]),
        )
    table.notes.append(
        f"{reps} requests of each kind per run, the runs taking turns; medians (min-max); "
        "each run served by `replicate-home view` in a process of its own; outputs of ~600 "
        "characters."
    )
    table.notes.append(
        "Target: the first page costs the same whatever the run's size (ratios near 1x)."
    )
    return [table]
