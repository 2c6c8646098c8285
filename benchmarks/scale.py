"""Benchmark 7: a prompt set at scale under Replicate's published rate limits.

The emulator (in a process of its own) enforces 600 creates and 3000 other requests a
minute, as Replicate publishes them. A worker process runs ``run_comparison`` of N cells
(N/2 prompts on a text model that streams and an image model that polls; durations
cycling over 2-10 s) on ``ReplicateAPI`` with its default budget, recording every cell in
a results database. Measured: wall time against the bound the create limit sets (N
creates at 10 a second, then the last prediction's duration), 429s, requests per
prediction, detection latency (the cell's result committed, against the emulator's
``completed_at``), client CPU and peak RSS. Then four worker processes on one token (no
shared store) run N/4 cells each: total 429s against all requests, and creates a second
against the limit.

Targets (the issue's): wall <= 1.05 x the bound; no 429 with one process; with four,
429s <= 2 % of requests and throughput >= 90 % of the limit.

Kill and resume: two ``replicate-home compare`` runs of the same prompt set on one token
and one results database at once, the second killed (SIGKILL) at seeded random moments
and resumed each time, then to its end. Measured: the emulator's creates against the two
runs' cells (exactly once: 1.00), the cells a resume found in the account's listing, the
killed run's total time against the other's, and the output archive: the image files kept
against those made (a kill between a cell's end and its download leaves the file to the
resume), the bytes kept and the bytes on disk (one copy of identical bytes).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from replicate_home import ReplicateAPI
from replicate_home.comparisons import ResultsStore, RunProgress, run_comparison

from ._common import (
    REPO_ROOT,
    TOKEN,
    EmulatorProcess,
    Settings,
    Table,
    _child_env,
    parse_iso,
    prompt_for,
)
from .fanout import _current_rss_kib, _peak_rss_kib, _reset_peak

MODELS = ["meta/meta-llama-3-8b-instruct", "black-forest-labs/flux-schnell"]
LIMITS = (600, 3000)  # Replicate's published limits, per minute
CREATES_PER_SECOND = LIMITS[0] / 60


def _prompts(count: int, durations: list[float], offset: int) -> list[str]:
    return [prompt_for(durations[(offset + n) % len(durations)], offset + n) for n in range(count)]


#: The shares of a run's cells ended at which the worker samples its memory.
MEMORY_SAMPLES = (0.25, 0.5, 0.75, 1.0)


class _MemorySampler:
    """Samples the worker's memory as the run's cells end (a progress listener): at each
    share of :data:`MEMORY_SAMPLES`, the current RSS, the objects the garbage collector
    tracks (what the run holds, which RSS hides: freed memory is rarely given back)
    and the cells in flight then. Steady between a quarter and three quarters ended,
    memory follows the cells in flight, not the cells ended."""

    def __init__(self) -> None:
        self.samples: list[dict[str, float]] = []

    def __call__(self, progress: RunProgress) -> None:
        share = progress.done / max(1, progress.total)
        if len(self.samples) < len(MEMORY_SAMPLES) and share >= MEMORY_SAMPLES[len(self.samples)]:
            self.samples.append(
                {
                    "ended": progress.done,
                    "in_flight": progress.running,
                    "rss_kib": _current_rss_kib(),
                    "objects": len(gc.get_objects()),
                }
            )


async def _work(
    url: str, prompts: list[str], database: str, bulk: bool, limits: tuple[int, int]
) -> dict[str, Any]:
    _reset_peak()
    rss_before = _current_rss_kib()
    cpu, wall = time.process_time(), time.perf_counter()
    memory = _MemorySampler()
    async with ResultsStore.open(database) as store:
        options: dict[str, Any] = {} if bulk else {"bulk_threshold": None}
        options.update(creates_per_minute=limits[0], requests_per_minute=limits[1])
        async with ReplicateAPI(TOKEN, base_url=url, timeout=600, **options) as client:
            run = await run_comparison(client, store, prompts, MODELS, on_progress=memory)
            run_cpu = time.process_time() - cpu
            rss_run_peak = _peak_rss_kib()
            creates, others = client.budget.creates, client.budget.requests
            throttles = creates.throttles + others.throttles
            # 429s and the decreases they made, on creates and on other requests.
            budget = [creates.throttles, creates.decreases, others.throttles, others.decreases]
            allowed = client.budget.creates.allowed_per_minute
        cells = await store.cells(run.id)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "rss_before_kib": rss_before,
        "rss_peak_kib": _peak_rss_kib(),
        # The run's alone: before the benchmark reads every cell back.
        "run_cpu": run_cpu,
        "rss_run_peak_kib": rss_run_peak,
        "memory": memory.samples,
        "statuses": sorted({cell.status or cell.state for cell in cells}),
        "failed": sum(1 for cell in cells if cell.status != "succeeded"),
        "ended": {cell.prediction_id: cell.ended_at for cell in cells if cell.prediction_id},
        "throttles_seen": throttles,
        "budget": budget,
        "sent": sorted(cell.sent_at for cell in cells if cell.sent_at),
        "allowed_per_minute": allowed,
    }


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale --worker")
    parser.add_argument("url")
    parser.add_argument("prompts", help="a JSON list of prompts")
    parser.add_argument("database")
    parser.add_argument("--one-get-each", action="store_true", help="no bulk following")
    parser.add_argument("--limits", default=f"{LIMITS[0]},{LIMITS[1]}", help="the budget's")
    args = parser.parse_args(argv)
    creates, others = (int(part) for part in args.limits.split(","))
    result = anyio.run(
        _work,
        args.url,
        json.loads(args.prompts),
        args.database,
        not args.one_get_each,
        (creates, others),
    )
    print(json.dumps(result))


def _spawn(
    url: str, prompts: list[str], database: Path, bulk: bool, limits: tuple[int, int]
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "benchmarks.scale", "--worker", url]
    command += [json.dumps(prompts), str(database), "--limits", f"{limits[0]},{limits[1]}"]
    if not bulk:
        command.append("--one-get-each")
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=_child_env(), stdout=subprocess.PIPE, text=True
    )


def _scenario(
    processes: int,
    cells: int,
    durations: list[float],
    directory: Path,
    bulk: bool = True,
    limits: tuple[int, int] = LIMITS,
) -> dict[str, Any]:
    """``cells`` over ``processes`` worker processes on one token, against an emulator
    (a process of its own) enforcing ``limits`` (creates, other requests a minute), each
    worker's budget set to them."""
    count = cells // len(MODELS)
    with EmulatorProcess(
        duration=0.5, durations=durations, count=count, rate_limits=limits
    ) as emulator:
        before = emulator.stats()
        started = time.time()
        share = count // processes
        workers = [
            _spawn(
                emulator.url,
                _prompts(share, durations, n * share),
                directory / f"runs-{processes}-{n}-{bulk}-{cells}.db",
                bulk,
                limits,
            )
            for n in range(processes)
        ]
        results = []
        for process in workers:
            out, _ = process.communicate(timeout=3600)
            if process.returncode != 0:
                raise RuntimeError(f"a scale worker failed ({process.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        after = emulator.stats()
        predictions = emulator.predictions(started)
    completed = {p["id"]: parse_iso(p["completed_at"]) for p in predictions if p["completed_at"]}
    created = sorted(parse_iso(p["created_at"]) for p in predictions)
    latencies = [
        datetime.fromisoformat(ended).timestamp() - completed[pid]
        for result in results
        for pid, ended in result["ended"].items()
        if ended and pid in completed
    ]
    creates = after["creates"] - before["creates"]
    requests = after["requests"] - before["requests"] - 1  # less the first stats request
    return {
        "processes": processes,
        "bulk": bulk,
        "cells": creates,
        "failed": sum(result["failed"] for result in results),
        "wall": max(result["wall"] for result in results),
        "limit": limits[0] / 60,
        "bound": creates / (limits[0] / 60) + max(durations),
        "throttled": after["throttled"] - before["throttled"],
        "requests": requests,
        "throughput": (len(created) - 1) / (created[-1] - created[0]) if len(created) > 1 else 0,
        "latency_median": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95": (
            statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else float("nan")
        ),
        "cpu": sum(result["cpu"] for result in results),
        "rss_mib": max(result["rss_peak_kib"] for result in results) / 1024,
        "run_cpu": sum(result["run_cpu"] for result in results),
        "rss_run_mib": max(result["rss_run_peak_kib"] for result in results) / 1024,
        "memory": results[0]["memory"] if processes == 1 else [],
        "allowed": [round(result["allowed_per_minute"]) for result in results],
        "budget": [result["budget"] for result in results],
        # Each process's first and last create answered, seconds after the first of all.
        "spans": _spans([result["sent"] for result in results]),
        "sent": [result["sent"] for result in results],
    }


def _compare(url: str, database: Path, run: str, prompts: Path | None) -> subprocess.Popen[str]:
    """``replicate-home compare`` of run ``run`` (``prompts``: a new run; else resumed)."""
    command = [sys.executable, "-m", "replicate_home", "compare", "--service", "api"]
    command += ["--base-url", url, "--db", str(database), "--allow-failures", "--json"]
    if prompts is None:
        command += ["--resume", run]
    else:
        command += ["--name", run, "--prompts", str(prompts)]
        for model in MODELS:
            command += ["-m", model]
    env = {**_child_env(), "REPLICATE_API_TOKEN": TOKEN}
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _recorded(database: Path, run: str) -> bool:
    try:
        with sqlite3.connect(database) as db:
            return bool(db.execute("SELECT 1 FROM runs WHERE id = ?", (run,)).fetchall())
    except sqlite3.OperationalError:  # killed before the tables were made
        return False


def _killed_scenario(
    cells: int, durations: list[float], directory: Path, kills: int, seed: int = 7
) -> dict[str, Any]:
    """Two runs of one prompt set at once, the second killed ``kills`` times."""
    chance = random.Random(seed)
    count = cells // len(MODELS)
    prompts = directory / "killed-prompts.txt"
    prompts.write_text("\n".join(_prompts(count, durations, 0)) + "\n", encoding="utf-8")
    database = directory / "killed.db"
    with EmulatorProcess(
        duration=0.5, durations=durations, count=count, rate_limits=LIMITS
    ) as emulator:
        before = emulator.stats()
        started = time.perf_counter()
        other = _compare(emulator.url, database, "other", prompts)
        other_ended: list[float] = []

        def wait_for_other() -> None:  # when it ended, while the killed run goes on
            other.wait(timeout=3600)
            other_ended.append(time.perf_counter())

        waiter = threading.Thread(target=wait_for_other)
        waiter.start()
        killed_wall = 0.0
        # Each life is cut at a random moment of the time the run would take alone.
        alone = count * len(MODELS) / CREATES_PER_SECOND + max(durations)
        for _ in range(kills):
            begun = time.perf_counter()
            life = _compare(
                emulator.url, database, "killed", None if _recorded(database, "killed") else prompts
            )
            time.sleep(chance.uniform(0.5, max(1.0, alone / kills)))
            if life.poll() is None:
                os.kill(life.pid, signal.SIGKILL)
            life.wait(timeout=60)
            killed_wall += time.perf_counter() - begun
        begun = time.perf_counter()
        last = _compare(
            emulator.url, database, "killed", None if _recorded(database, "killed") else prompts
        )
        last.wait(timeout=3600)
        killed_wall += time.perf_counter() - begun
        waiter.join()
        if last.returncode != 0 or other.returncode != 0:
            raise RuntimeError("a kill/resume run failed")
        other_wall = other_ended[0] - started
        after = emulator.stats()
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT run_id, status, COUNT(*) FROM cells GROUP BY run_id, status")
        statuses = {(run, status): number for run, status, number in rows}
        (found,) = db.execute("SELECT COUNT(*) FROM claims WHERE found = 1").fetchone()
        (claimed,) = db.execute("SELECT COUNT(*) FROM claims").fetchone()
        files = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        (kept_bytes,) = db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM files WHERE state = 'kept'"
        ).fetchone()
    archive = database.with_name(database.name + "-archive")
    return {
        "cells": 2 * count * len(MODELS),
        "creates": after["creates"] - before["creates"],
        "succeeded": sum(n for (_, status), n in statuses.items() if status == "succeeded"),
        "claimed": claimed,
        "found": found,
        "kills": kills,
        "killed_wall": killed_wall,
        "other_wall": other_wall,
        "files": sum(files.values()),
        "files_kept": files.get("kept", 0),
        "kept_bytes": kept_bytes,
        "disk_bytes": sum(path.stat().st_size for path in archive.rglob("*") if path.is_file()),
    }


def _cpu_per_cell(result: dict[str, Any]) -> float:
    """The worker's CPU a cell during the run (before it reads every cell back)."""
    return float(result["run_cpu"]) / max(1, result["cells"])


def _held(samples: list[dict[str, float]]) -> str:
    """The objects the worker's garbage collector tracked at a quarter, half and three
    quarters of the cells ended, with the cells then in flight: steady, what an ended
    cell held was dropped."""
    shown = [sample for sample in samples if sample["ended"] < samples[-1]["ended"]]
    return " / ".join(
        f"{sample['objects'] / 1000:.0f}k ({sample['in_flight']:.0f} in flight)" for sample in shown
    )


def _killed_table(result: dict[str, Any], cells: int) -> Table:
    table = Table(
        f"Kill and resume beside another run: two runs of one prompt set of {cells} cells, "
        "one killed with SIGKILL and resumed",
        [
            "kills",
            "creates / cells",
            "succeeded",
            "ids claimed (found in the listing)",
            "killed run's time / the other's",
            "files kept / made",
            "archive: bytes kept (on disk)",
            "target",
        ],
    )
    ratio = result["creates"] / max(1, result["cells"])
    table.add(
        result["kills"],
        f"{result['creates']} / {result['cells']} = {ratio:.2f}",
        f"{result['succeeded']} / {result['cells']}",
        f"{result['claimed']} ({result['found']})",
        f"{result['killed_wall']:.1f} s / {result['other_wall']:.1f} s = "
        f"{result['killed_wall'] / result['other_wall']:.2f}",
        f"{result['files_kept']} / {result['files']}",
        f"{result['kept_bytes'] / 2**20:.1f} MiB ({result['disk_bytes'] / 2**20:.1f} MiB)",
        f"exactly once {'met' if result['creates'] == result['cells'] else 'MISSED'}"
        f", every file kept {'met' if result['files_kept'] == result['files'] else 'MISSED'}",
    )
    table.notes = [
        "both runs on one token and one results database, started together; the killed "
        "run is killed at seeded random moments, each time resumed (--resume), then run "
        "to its end.",
        "creates: the emulator's count; cells: both runs'. Every id is claimed by one cell "
        "of the database (its primary key); found: cells whose create had left with no "
        "answer recorded, re-attached from the account's listing.",
        "files: the image model's outputs, each kept in the archive beside the database as "
        "its cell ends (a resume keeps those a kill left pending); on disk: one copy of "
        "identical bytes (both runs' images of one prompt are the same).",
    ]
    return table


def _spans(sent: list[list[str]]) -> list[tuple[float, float]]:
    times = [[datetime.fromisoformat(moment).timestamp() for moment in each] for each in sent]
    start = min((each[0] for each in times if each), default=0.0)
    return [(round(each[0] - start, 1), round(each[-1] - start, 1)) for each in times if each]


#: Where a full run draws the four processes' creates over time.
PLOT = REPO_ROOT / "docs" / "img" / "scale-creates.png"


def plot(result: dict[str, Any], path: Path) -> None:
    """Each process's creates over time, their sum, and the create limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [
        sorted(datetime.fromisoformat(moment).timestamp() for moment in sent)
        for sent in result["sent"]
    ]
    start = min(each[0] for each in times if each)
    figure, axes = plt.subplots(figsize=(8, 4.4))
    for number, each in enumerate(times, 1):
        axes.step(
            [t - start for t in each],
            range(1, len(each) + 1),
            where="post",
            label=f"process {number}",
        )
    total = sorted(t - start for each in times for t in each)
    axes.step(total, range(1, len(total) + 1), where="post", color="black", label="all four")
    axes.plot([0, len(total) / CREATES_PER_SECOND], [0, len(total)], "k--", linewidth=1)
    axes.annotate("the create limit (10 a second)", (len(total) / CREATES_PER_SECOND / 2, 600))
    axes.set_xlabel("seconds after the first create")
    axes.set_ylabel("creates answered")
    axes.set_title(f"Four processes on one token, no shared store: {len(total)} creates")
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(settings: Settings, plot_path: Path | None = None) -> list[Table]:
    cells = settings.pick(1000, 40)
    durations = settings.pick([2.0, 4.0, 6.0, 8.0, 10.0], [0.5, 1.0])
    with tempfile.TemporaryDirectory() as directory:
        each = _scenario(1, cells, durations, Path(directory), bulk=False)
        one = _scenario(1, cells, durations, Path(directory))
        four = _scenario(4, cells, durations, Path(directory))
        killed_cells = settings.pick(200, 20)
        killed = _killed_scenario(killed_cells, durations, Path(directory), settings.pick(5, 3))
        # Ten times the cells against ten times the limits, in one process.
        big = _scenario(
            1, cells * 10, durations, Path(directory), limits=(LIMITS[0] * 10, LIMITS[1] * 10)
        )
    if plot_path is not None:
        plot(four, plot_path)
    table = Table(
        f"A prompt set at scale: N = {cells} cells (text that streams, images that poll; "
        f"{min(durations):g}-{max(durations):g} s) under 600 creates / 3000 requests a minute "
        f"(the last row: {cells * 10} cells under ten times those)",
        [
            "processes",
            "following",
            "cells",
            "wall / bound",
            "429s (% of requests)",
            "requests / prediction",
            "creates / s (% of limit)",
            "detection median / p95",
            "client CPU",
            "peak RSS",
            "targets",
        ],
    )
    baseline = each["latency_median"]
    for result in (each, one, four, big):
        share = result["throttled"] / max(1, result["requests"])
        ratio = result["wall"] / result["bound"]
        limit_share = result["throughput"] / result["limit"]
        if result is big:
            met = [
                f"wall {'met' if ratio <= 1.10 else 'MISSED'}",
                f"CPU a cell {_cpu_per_cell(result) / _cpu_per_cell(one):.2f}x, "
                f"RSS {result['rss_mib'] / one['rss_mib']:.2f}x the in-bulk row",
                "objects held at 25/50/75 % ended: " + _held(result["memory"]),
            ]
        elif result["processes"] == 1:
            met = [
                f"wall {'met' if ratio <= 1.05 else 'MISSED'}",
                f"no 429 {'met' if result['throttled'] == 0 else 'MISSED'}",
            ]
        else:
            met = [
                f"429s {'met' if share <= 0.02 else 'MISSED'}",
                f"throughput {'met' if limit_share >= 0.9 else 'MISSED'}",
            ]
        following = "in bulk" if result["bulk"] else "one GET each"
        if result["bulk"] and result["processes"] == 1:
            following += f" (detection {result['latency_median'] / baseline:.2f}x)"
        table.add(
            result["processes"],
            following,
            result["cells"]
            if not result["failed"]
            else f"{result['cells']} ({result['failed']} failed)",
            f"{result['wall']:.1f} s / {result['bound']:.1f} s = {ratio:.2f}",
            f"{result['throttled']} ({100 * share:.2f} %)",
            f"{result['requests'] / max(1, result['cells']):.2f}",
            f"{result['throughput']:.2f} ({100 * limit_share:.0f} %)",
            f"{1000 * result['latency_median']:.0f} / {1000 * result['latency_p95']:.0f} ms",
            f"{result['cpu']:.1f} s",
            f"{result['rss_mib']:.0f} MiB",
            ", ".join(met),
        )
    table.notes = [
        "following: polls of one GET each, or through the listing above "
        "bulk_threshold (the default); the ratio is the median detection against the "
        "one-GET-each row of this run.",
        "bound: the cells' creates at the create limit (10 a second; 100 in the last row) "
        "plus the longest duration.",
        "last row: the budget set to the emulator's limits (6000 creates, 30000 requests a "
        "minute); target wall <= 1.10 x the bound, and the client's CPU a cell and peak RSS "
        "against the in-bulk row's (memory must not grow with the cells ended: the objects "
        "the worker holds, sampled at a quarter, half and three quarters of the cells "
        "ended, follow the cells in flight).",
        "detection: the cell's result committed to the results database, after the emulator's "
        "completed_at (same machine clock).",
        "429s and requests: the emulator's counts (creates, polls, streams, the listing "
        "the benchmark reads once).",
        "four processes: each one's last create answered at "
        + ", ".join(f"{end:g}" for _, end in four["spans"])
        + " s after the first create; their budgets ended at "
        + ", ".join(str(allowed) for allowed in four["allowed"])
        + " creates a minute (equal shares finish together).",
    ]
    return [table, _killed_table(killed, killed_cells)]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
