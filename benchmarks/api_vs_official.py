"""Issue 8: the official API, ours (``ReplicateAPI``) against the official client.

N concurrent predictions of D seconds on the emulator's ``/v1``, in one run, side by
side: the official ``replicate`` client (``Client.async_run``, the function behind
``replicate.async_run``, under asyncio) and ours (``ReplicateAPI.predict``) under asyncio
and trio. Two kinds of model: a text model, whose predictions have an event stream
(ours follows it), and an image model, which has none (ours polls on its adaptive
schedule after a ``Prefer: wait=1`` create; the official client holds its create with
``Prefer: wait``, up to 60 s). One more row runs ours with ``wait=60``: the official
client's protocol, one held create, on our implementation.

Per run: client CPU (``time.process_time()`` around the N calls, client construction
excluded for both), wall time, requests per prediction (the emulator's counter before
and after) and, per prediction, the latency after completion (the client's
``time.time()`` when the call returned minus the emulator's ``completed_at``; each
prediction is found by its prompt, unique in the run).

Our client paces itself to Replicate's published limits by default (600 creates and
3000 other requests a minute); the emulator enforces none, so the comparison raises
ours out of the way, and one extra row shows the default budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from replicate_home import ReplicateAPI

from ._common import (
    TOKEN,
    EmulatorProcess,
    Settings,
    Summary,
    Table,
    fmt_ratio,
    parse_iso,
    prompt_for,
    quiet_gc,
    summarize,
    wall_clock,
)

TEXT = "meta/meta-llama-3-8b-instruct"
IMAGE = "black-forest-labs/flux-schnell"
KINDS = {TEXT: "text (streams)", IMAGE: "image (polls)"}
#: Far above any rate the benchmark reaches: ours does not pace itself.
UNLIMITED = 10_000_000.0


@dataclass(frozen=True)
class Client:
    name: str
    backend: str
    wait: float | None = 1.0  # ours: ReplicateAPI(wait=...), its default
    default_budget: bool = False


OFFICIAL = Client("official replicate", "asyncio")
OURS = Client("ours", "asyncio")
CLIENTS = [
    OFFICIAL,
    OURS,
    Client("ours", "trio"),
    # The official client's protocol: one create held until the end (up to 60 s).
    Client("ours, wait=60", "asyncio", wait=60.0),
]
DEFAULT_BUDGET = Client("ours, default rate budget", "asyncio", default_budget=True)


@dataclass
class Run:
    cpu: float
    wall: float
    arrivals: dict[str, float]  # prompt -> Unix time the call returned
    started: float  # Unix time, before the first create


async def _ours(url: str, model: str, prompts: list[str], client: Client) -> Run:
    if client.default_budget:
        api_client = ReplicateAPI(TOKEN, base_url=url, timeout=120, wait=client.wait)
    else:
        api_client = ReplicateAPI(
            TOKEN,
            base_url=url,
            timeout=120,
            wait=client.wait,
            creates_per_minute=UNLIMITED,
            requests_per_minute=UNLIMITED,
        )
    arrivals: dict[str, float] = {}
    async with api_client as api:

        async def one(prompt: str) -> None:
            prediction = await api.predict(model, prompt=prompt)
            arrivals[prompt] = wall_clock()
            assert prediction.status == "succeeded"

        started = wall_clock()
        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as group:
            for prompt in prompts:
                group.start_soon(one, prompt)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Run(cpu, wall, arrivals, started)


async def _official(url: str, model: str, prompts: list[str], client: Client) -> Run:
    from replicate.client import Client as OfficialClient

    official = OfficialClient(api_token=TOKEN, base_url=url)
    http = official._async_client  # built here, outside the measurement, as ours is
    arrivals: dict[str, float] = {}
    try:

        async def one(prompt: str) -> None:
            output = await official.async_run(model, input={"prompt": prompt})
            arrivals[prompt] = wall_clock()
            assert output

        started = wall_clock()
        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as group:
            for prompt in prompts:
                group.start_soon(one, prompt)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await http.aclose()
    return Run(cpu, wall, arrivals, started)


@dataclass
class Cell:
    """Every run of one (model, D, N, client)."""

    cpu_per_prediction: list[float]
    walls: list[float]
    requests_per_prediction: list[float]
    latencies: list[float]
    detail: dict[str, float]


def _measure_cell(
    emulator: EmulatorProcess, model: str, duration: float, count: int, client: Client, reps: int
) -> Cell:
    cell = Cell([], [], [], [], {})
    prompts = [prompt_for(duration, index) for index in range(count)]
    run_one = _official if client is OFFICIAL else _ours
    totals = {"creates": 0, "polls": 0, "stream_connections": 0, "cancels": 0}
    for _ in range(reps):
        before = emulator.stats()
        with quiet_gc():
            run = anyio.run(run_one, emulator.url, model, prompts, client, backend=client.backend)
        after = emulator.stats()
        if len(run.arrivals) != count:
            raise RuntimeError(f"{client.name}: {len(run.arrivals)} of {count} calls returned")
        completed = {
            item["input"]["prompt"]: item
            for item in emulator.predictions(since=run.started)
            if item["model"] == model
        }
        for prompt, arrived in run.arrivals.items():
            item = completed[prompt]
            cell.latencies.append(arrived - parse_iso(item["completed_at"]))
        # The first stats request is counted in the second answer.
        cell.requests_per_prediction.append((after["requests"] - before["requests"] - 1) / count)
        cell.cpu_per_prediction.append(run.cpu / count)
        cell.walls.append(run.wall)
        for key in totals:
            totals[key] += after[key] - before[key]
    cell.detail = {key: value / (count * reps) for key, value in totals.items()}
    return cell


def run(settings: Settings) -> list[Table]:
    # Quick: 1.5 s still outlasts the held create (wait=1), so ours streams and polls.
    durations: list[float] = settings.pick([0.5, 3.0], [0.5])
    counts: list[int] = settings.pick([1, 10, 100], [4])
    reps = settings.pick(3, 1)
    cells: dict[tuple[str, float, int, Client], Cell] = {}
    with EmulatorProcess(durations=durations, count=max(counts)) as emulator:
        for model in KINDS:
            for duration in durations:
                for count in counts:
                    for client in CLIENTS:
                        cells[model, duration, count, client] = _measure_cell(
                            emulator, model, duration, count, client, reps
                        )
        extra = (TEXT, durations[0], max(counts), DEFAULT_BUDGET)
        cells[extra] = _measure_cell(emulator, *extra[:3], DEFAULT_BUDGET, 1)
    return [_table(cells, reps)]


def _table(cells: dict[tuple[str, float, int, Client], Cell], reps: int) -> Table:
    table = Table(
        "The official API: ours (ReplicateAPI.predict) vs the official client "
        "(replicate 1.0.7, async_run)",
        [
            "model",
            "D",
            "N",
            "client",
            "wall, s",
            "CPU/prediction, ms",
            "CPU vs official",
            "requests/prediction",
            "of which polls / streams",
            "latency after completion, ms",
            "vs official",
            "targets",
        ],
    )
    for (model, duration, count, client), cell in cells.items():
        official = cells.get((model, duration, count, OFFICIAL))
        cpu = summarize(cell.cpu_per_prediction)
        latency = summarize(cell.latencies)
        requests = summarize(cell.requests_per_prediction)
        versus_cpu = versus_latency = verdict = ""
        if official is not None and client is not OFFICIAL:
            base_cpu = summarize(official.cpu_per_prediction)
            base_latency = summarize(official.latencies)
            versus_cpu = fmt_ratio(cpu.median, base_cpu.median)
            versus_latency = f"{(latency.median - base_latency.median) * 1e3:+.0f} ms"
            verdict = _verdict(model, duration, cpu, base_cpu, latency, base_latency, requests)
        table.add(
            KINDS[model],
            f"{duration:g} s",
            count,
            f"{client.name} ({client.backend})",
            f"{summarize(cell.walls).median:.2f}",
            f"{cpu.median * 1e3:.2f} ({cpu.low * 1e3:.2f}-{cpu.high * 1e3:.2f})",
            versus_cpu,
            f"{requests.median:.2f}",
            f"{cell.detail['polls']:.2f} / {cell.detail['stream_connections']:.2f}",
            f"{latency.median * 1e3:.1f} ({latency.low * 1e3:.1f}-{latency.high * 1e3:.1f})",
            versus_latency,
            verdict,
        )
    table.notes.append(
        f"{reps} runs per row (the default-budget row: 1); CPU and wall: median (min-max) over "
        "runs; latency: median (min-max) over every prediction of every run. Requests "
        "per prediction: the emulator's count (creates, polls, streams; no cancels here)."
    )
    table.notes.append(
        "Targets (ours): less CPU per prediction than the official client; where the model "
        "streams, latency within 50 ms of the official client's and at most 3 requests "
        "per prediction; where we must poll, latency ≤ 10% of D + 50 ms."
    )
    return table


def _verdict(
    model: str,
    duration: float,
    cpu: Summary,
    base_cpu: Summary,
    latency: Summary,
    base_latency: Summary,
    requests: Summary,
) -> str:
    less = round(cpu.median / base_cpu.median, 2) < 1.0  # as the ratio column shows it
    parts = ["CPU " + ("met" if less else "MISSED")]
    if model == TEXT:
        close = latency.median <= base_latency.median + 0.050
        parts.append("latency " + ("met" if close else "MISSED"))
        parts.append("requests " + ("met" if requests.median <= 3 else "MISSED"))
    else:
        bound = 0.1 * duration + 0.050
        parts.append(
            f"latency ≤ {bound * 1e3:.0f} ms " + ("met" if latency.median <= bound else "MISSED")
        )
    return ", ".join(parts)
