"""Benchmark 3: ``fan_out`` at scale: N predictions of D seconds at once.

Each run is a fresh Python process (``python -m benchmarks.fanout --worker ...``), so the
peak RSS it reports is its own: the client, its ``N`` tasks, connections and events. It
opens a ``ReplicateHome`` on the emulator (homepage service, default adaptive schedule,
default httpx pool of 100 connections), then times one ``fan_out`` of ``N`` copies of the
text model from the ``async with`` to the last event: wall time, client CPU
(``time.process_time()``) and the RSS before it and its peak during it (the peak is reset
first, after a warm-up prediction; see :func:`_peak_rss_kib`). The parent reads the
emulator's request counter and CPU time around each run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from replicate_home import Failed, Finished, ReplicateHome
from replicate_home._client import HTTP_LIMITS, HTTP_TIMEOUT

from ._common import (
    EmulatorProcess,
    Settings,
    Summary,
    Table,
    fmt_num,
    fmt_ratio,
    prompt_for,
    run_worker,
    summarize,
)

MODEL = "gemma-2b"
#: An unscripted prompt: it takes the emulator's default duration, a short one.
WARM_UP = "warm up"


def _peak_rss_kib() -> float:
    """The process's peak RSS, in KiB: ``VmHWM`` on Linux, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` is no use in a child process: it starts from the parent's peak
    (the kernel carries the old address space's high-water mark over ``exec``), so a
    fan-out smaller than the benchmark runner never shows. ``VmHWM`` is the same
    high-water mark for this address space alone, and can be reset.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    import resource  # Unix only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else float(peak)  # bytes on macOS


def _reset_peak() -> bool:
    """Start the peak RSS afresh from the current RSS (Linux: ``/proc/self/clear_refs``),
    so that the peak measured afterwards is the fan-out's, not the imports'."""
    try:
        with open("/proc/self/clear_refs", "w") as control:
            control.write("5")
    except OSError:
        return False
    return True


def _current_rss_kib() -> float:
    """The current RSS in KiB (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return _peak_rss_kib()
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024


def _http_client(transport: str) -> httpx.AsyncClient | None:
    """``None``: the client opens its own (the default); ``aiohttp``: an httpx client on
    httpx-aiohttp's transport, with the same timeouts and pool size."""
    if transport == "httpcore":
        return None
    from httpx_aiohttp import AiohttpTransport

    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=AiohttpTransport(limits=HTTP_LIMITS))


async def _fan_out(url: str, count: int, prompt: str, transport: str) -> dict[str, Any]:
    finished = failed = 0
    errors: list[str] = []
    async with AsyncExitStack() as stack:
        http = _http_client(transport)
        if http is not None:
            await stack.enter_async_context(http)
        client = await stack.enter_async_context(ReplicateHome(url, timeout=300, http_client=http))
        # One short prediction first: the connection, lazy imports and first-use caches
        # are not the fan-out's.
        warm_up = await client.predict(MODEL, prompt=WARM_UP)
        gc.collect()
        reset = _reset_peak()
        rss_before = _current_rss_kib()
        cpu, wall = time.process_time(), time.perf_counter()
        async with client.fan_out([MODEL] * count, prompt=prompt) as events:
            async for event in events:
                if isinstance(event, Finished):
                    finished += 1
                elif isinstance(event, Failed):
                    failed += 1
                    errors.append(repr(event.error))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rss_after = _peak_rss_kib()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "peak_reset": reset,
        "warm_up_requests": warm_up.polls + 1,
        "finished": finished,
        "failed": failed,
        "errors": errors[:3],
    }


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout --worker")
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("prompt")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--transport", default="httpcore", choices=["httpcore", "aiohttp"])
    args = parser.parse_args(argv)
    result = anyio.run(
        _fan_out, args.url, args.count, args.prompt, args.transport, backend=args.backend
    )
    print(json.dumps(result))


@dataclass(frozen=True)
class Case:
    count: int
    backend: str = "asyncio"
    transport: str = "httpcore"

    @property
    def label(self) -> str:
        return self.backend if self.transport == "httpcore" else f"{self.backend} + aiohttp"


def _cases(settings: Settings) -> list[Case]:
    counts: list[int] = settings.pick([1, 10, 100, 1000], [1, 10, 100])
    cases = [Case(count) for count in counts]
    smallest = settings.pick(10, 100)  # quick: one row each
    cases += [Case(count, "trio") for count in counts if count >= smallest]
    cases += [Case(count, transport="aiohttp") for count in counts if count >= smallest]
    return cases


def run(settings: Settings) -> list[Table]:
    duration = settings.pick(3.0, 0.5)
    reps = settings.pick(3, 1)
    cases = _cases(settings)
    runs: dict[Case, list[dict[str, Any]]] = {case: [] for case in cases}
    with EmulatorProcess(duration=0.05, durations=[duration], count=1) as emulator:
        prompt = prompt_for(duration, 0)
        for _ in range(reps):
            for case in cases:
                before = emulator.stats()["requests"]
                emulator_cpu = emulator.cpu_seconds()
                args = [emulator.url, str(case.count), prompt, "--backend", case.backend]
                args += ["--transport", case.transport]
                result = run_worker("benchmarks.fanout", ["--worker", *args])
                result["emulator_cpu"] = emulator.cpu_seconds() - emulator_cpu
                # The first stats request is counted in the second answer.
                requests = emulator.stats()["requests"] - before - 1
                result["requests"] = requests - result["warm_up_requests"]
                if result["failed"] or result["finished"] != case.count:
                    raise RuntimeError(f"fan-out of {case.count} failed: {result['errors']}")
                runs[case].append(result)
    return [_table(duration, reps, cases, runs)]


def _table(
    duration: float, reps: int, cases: list[Case], runs: dict[Case, list[dict[str, Any]]]
) -> Table:
    table = Table(
        f"Fan-out scale: N concurrent predictions of D = {duration:g} s through fan_out",
        [
            "N",
            "client",
            "wall, s",
            "wall / D",
            "CPU/prediction, ms",
            "vs N = 10",
            "requests/prediction",
            "CPU/request, ms",
            "peak RSS, MiB",
            "RSS/prediction, KiB",
            "emulator busy",
        ],
    )
    for case in cases:
        results = runs[case]
        count = case.count
        wall = summarize([r["wall"] for r in results])
        cpu = summarize([r["cpu"] / count for r in results])
        ten = Case(10, case.backend, case.transport)
        base = summarize([r["cpu"] / 10 for r in runs[ten]]) if ten in runs else None
        requests = summarize([r["requests"] / count for r in results])
        per_request = summarize([r["cpu"] / r["requests"] for r in results])
        growth = summarize(
            [max(0.0, r["rss_after_kib"] - r["rss_before_kib"]) / count for r in results]
        )
        peak = summarize([r["rss_after_kib"] / 1024 for r in results])
        busy = summarize([r["emulator_cpu"] / r["wall"] for r in results])
        table.add(
            count,
            case.label,
            fmt_num(wall, 2),
            f"{wall.median / duration:.2f}",
            _ms(cpu),
            "n/a" if base is None else fmt_ratio(cpu.median, base.median),
            f"{requests.median:.1f}",
            f"{per_request.median * 1e3:.2f}",
            f"{peak.median:.0f}",
            f"{growth.median:.1f}",
            "n/a" if busy.median != busy.median else f"{busy.median:.0%}",
        )
    resets = all(r["peak_reset"] for results in runs.values() for r in results)
    table.notes.append(
        f"{reps} run(s) per row, each in a fresh process; median (min-max). "
        + (
            "RSS/prediction: the peak RSS during the fan-out minus the RSS just before it "
            "(client open, peak reset), divided by N: memory per in-flight prediction."
            if resets
            else "RSS/prediction: peak RSS after minus before the fan-out, divided by N (the "
            "peak could not be reset, so small fan-outs may show 0)."
        )
    )
    table.notes.append(
        "'asyncio + aiohttp': httpx on httpx-aiohttp's AiohttpTransport (pool of 100, as "
        "the default). 'emulator busy': the emulator process's CPU time over the wall time "
        "(100% = its one core saturated)."
    )
    table.notes.append(
        "Targets: wall ≤ 1.2 x D at N = 100; client CPU per prediction within 1.5x from "
        "N = 10 to N = 1000."
    )
    return table


def _ms(summary: Summary) -> str:
    return f"{summary.median * 1e3:.2f} ({summary.low * 1e3:.2f}-{summary.high * 1e3:.2f})"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        raise SystemExit("run the benchmarks with: python -m benchmarks")
