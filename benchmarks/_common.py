"""What every benchmark shares: settings, statistics, tables, the machine, and the
emulator running in a process of its own."""

from __future__ import annotations

import gc
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "REPO_ROOT",
    "TOKEN",
    "EmulatorProcess",
    "Settings",
    "Summary",
    "Table",
    "fmt_ms",
    "fmt_num",
    "fmt_ratio",
    "machine_line",
    "machine_lines",
    "parse_iso",
    "prompt_for",
    "quiet_gc",
    "run_worker",
    "summarize",
    "versions",
    "wall_clock",
]

#: The directory holding the ``benchmarks`` package (the repository root).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Any token: the emulator accepts every non-empty one by default.
TOKEN = "r8_benchmark"


@dataclass(frozen=True)
class Settings:
    """How big to run: ``quick`` is every benchmark small (the test suite runs it)."""

    quick: bool = False

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


# -- statistics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median and range of a sample."""

    median: float
    low: float
    high: float
    count: int


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    return Summary(statistics.median(values), min(values), max(values), len(values))


def fmt_ms(summary: Summary, digits: int = 1) -> str:
    """``median (min-max)`` in milliseconds."""
    if summary.count == 0:
        return "n/a"
    scale = 1000.0
    return (
        f"{summary.median * scale:.{digits}f} "
        f"({summary.low * scale:.{digits}f}-{summary.high * scale:.{digits}f})"
    )


def fmt_num(summary: Summary, digits: int = 2, unit: str = "") -> str:
    """``median (min-max)`` as plain numbers."""
    if summary.count == 0:
        return "n/a"
    if summary.low == summary.high:
        return f"{summary.median:.{digits}f}{unit}"
    return f"{summary.median:.{digits}f}{unit} ({summary.low:.{digits}f}-{summary.high:.{digits}f})"


def fmt_ratio(ours: float, baseline: float) -> str:
    if baseline <= 0 or ours != ours or baseline != baseline:  # NaN-safe
        return "n/a"
    return f"{ours / baseline:.2f}x"


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect garbage before a measurement, so one run does not pay for the last one."""
    gc.collect()
    yield


# -- tables ---------------------------------------------------------------------------


@dataclass
class Table:
    """One printed result table: a Markdown pipe table with a title and notes."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def render(self) -> str:
        widths = [len(header) for header in self.headers]
        for row in self.rows:
            for index, cell in enumerate(row):
                widths[index] = max(widths[index], len(cell))

        def line(cells: Sequence[str]) -> str:
            padded = (cell.ljust(widths[index]) for index, cell in enumerate(cells))
            return "| " + " | ".join(padded) + " |"

        parts = [f"### {self.title}", "", machine_line(), ""]
        parts.append(line(self.headers))
        parts.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
        parts.extend(line(row) for row in self.rows)
        if self.notes:
            parts.append("")
            parts.extend(f"- {note}" for note in self.notes)
        return "\n".join(parts) + "\n"


# -- the machine ----------------------------------------------------------------------

_VERSIONED = (
    "replicate-home",
    "httpx",
    "httpcore",
    "anyio",
    "trio",
    "aiohttp",
    "httpx-aiohttp",
    "httpx-sse",
    "replicate",
    "hypercorn",
    "starlette",
)


def _cpu_model() -> str:
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                return text_line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def machine_line() -> str:
    """One line: CPU, cores, OS, Python."""
    return (
        f"_{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, {platform.python_implementation()} "
        f"{platform.python_version()}_"
    )


def machine_lines() -> list[str]:
    """The machine and every relevant version, for the top of a run."""
    listed = ", ".join(f"{name} {version}" for name, version in versions().items())
    return [machine_line(), f"_{listed}_"]


# -- prompts, clocks ------------------------------------------------------------------


def prompt_for(duration: float, index: int) -> str:
    """The prompt the benchmark emulator scripts to last ``duration`` seconds."""
    return f"bench D={duration:g} #{index}"


def parse_iso(text: str) -> float:
    """Unix time of the emulator's ISO-8601 timestamps (``2024-01-01T00:00:00.000000Z``)."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=timezone.utc).timestamp()


# -- the emulator in a process of its own ---------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) if not path else f"{REPO_ROOT}{os.pathsep}{path}"
    return env


def _read_line(stream: Any, timeout: float) -> str:
    """The first line of ``stream``, within ``timeout`` seconds (else empty)."""
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True)
    reader.start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


class EmulatorProcess:
    """``python -m benchmarks._emulator`` in a subprocess, terminated on exit.

    Unscripted prompts take ``duration`` seconds; ``prompt_for(d, i)`` takes ``d`` seconds
    for each ``d`` in ``durations`` and ``i`` below ``count``. ``module`` runs another
    server instead (one that prints its URL first, as ``benchmarks._stream_server``).
    """

    def __init__(
        self,
        *,
        duration: float = 1.0,
        durations: Sequence[float] = (),
        count: int = 0,
        module: str = "benchmarks._emulator",
        rate_limits: tuple[int, int] | None = None,
    ) -> None:
        self._module = module
        self._args = [
            "--duration",
            repr(duration),
            "--durations",
            ",".join(repr(float(d)) for d in durations),
            "--count",
            str(count),
        ]
        if rate_limits is not None:
            self._args += ["--rate-limits", f"{rate_limits[0]},{rate_limits[1]}"]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self._http = httpx.Client(timeout=30.0)

    def __enter__(self) -> EmulatorProcess:
        args = self._args if self._module == "benchmarks._emulator" else []
        command = [sys.executable, "-m", self._module, *args]
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        line = _read_line(self._process.stdout, 30.0)
        match = re.search(r"http://\S+", line)
        if match is None:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator did not start (it said {line!r})")
        self.url = match.group(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stats(self) -> dict[str, int]:
        """The emulator's counters (``GET /_emulator/stats``)."""
        answer = self._http.get(f"{self.url}/_emulator/stats")
        answer.raise_for_status()
        data: dict[str, int] = answer.json()
        return data

    def predictions(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every prediction the emulator holds created at or after ``since`` (Unix time),
        as ``/v1`` answers them: ``id``, ``input.prompt``, ``completed_at``, … Read page
        by page (100 a page, as Replicate's), after the ``next`` cursors, waiting out
        any 429 the emulator's rate limits answer."""
        url: str | None = f"{self.url}/v1/predictions"
        found: list[dict[str, Any]] = []
        while url is not None:
            answer = self._http.get(
                url,
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=60.0,
            )
            if answer.status_code == 429:
                time.sleep(float(answer.headers.get("retry-after", "1")))
                continue
            answer.raise_for_status()
            page = answer.json()
            found += page["results"]
            url = page["next"]
            if page["results"] and parse_iso(page["results"][-1]["created_at"]) < since - 0.01:
                break  # newest first: the rest are older still
        return [item for item in found if parse_iso(item["created_at"]) >= since - 0.01]

    def completed_at(self, since: float = 0.0) -> dict[str, float]:
        """Completion time (Unix) of every finished prediction by id (created after ``since``)."""
        return {
            item["id"]: parse_iso(item["completed_at"])
            for item in self.predictions(since)
            if item.get("completed_at")
        }

    def completed_by_prompt(self, since: float) -> dict[str, float]:
        """Completion time (Unix) by prompt, of the predictions created after ``since``."""
        found: dict[str, float] = {}
        for item in self.predictions(since):
            if item.get("completed_at"):
                found[item["input"]["prompt"]] = parse_iso(item["completed_at"])
        return found

    def cpu_seconds(self) -> float:
        """CPU time the emulator process has used so far (Linux), else NaN."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def run_worker(module: str, args: Sequence[str], timeout: float = 300.0) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process; its last stdout line is JSON."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({completed.returncode}): {completed.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def wall_clock() -> float:
    """Unix time, the clock the emulator's ``completed_at`` is on."""
    return time.time()
