"""Benchmark 4: from cancelling a caller to the call having returned.

A task runs ``predict()`` on a prediction that lasts far longer than the test, with a
poll interval of 2 s. Once the create has answered (``on_status``), another task waits
0.2 s (so the caller is asleep in the middle of its poll interval), notes the time and
cancels the caller's cancel scope; the caller notes the time as soon as its ``with``
block is left. Both services, both backends. For the official API the prediction is an
image model's (it polls; the client is made with ``wait=None`` so that no create is held
before the part measured), and the caller's cancellation also sends a remote cancel, in
the background: the caller does not wait for it. A second API case cancels a text
prediction while the client reads its event stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from replicate_home import ReplicateAPI, ReplicateHome
from replicate_home._client import BaseClient

from ._common import TOKEN, EmulatorProcess, Settings, Table, fmt_ms, summarize

#: Long enough never to finish during the benchmark.
FOREVER = 600.0
POLL_INTERVAL = 2.0
#: How long after the create answered the caller is cancelled: mid-interval.
CANCEL_AFTER = 0.2


@dataclass(frozen=True)
class Case:
    name: str
    service: str  # "home" or "api"
    model: str


CASES = [
    Case("homepage, asleep between polls", "home", "gemma-2b"),
    Case("API, asleep between polls", "api", "black-forest-labs/flux-schnell"),
    Case("API, reading the event stream", "api", "meta/meta-llama-3-8b-instruct"),
]


def _client(case: Case, url: str) -> BaseClient:
    if case.service == "home":
        return ReplicateHome(url, poll_interval=POLL_INTERVAL, timeout=FOREVER)
    # wait=None: no held create before the part measured (it would only slow the run).
    return ReplicateAPI(
        TOKEN, base_url=url, poll_interval=POLL_INTERVAL, timeout=FOREVER, wait=None
    )


async def _measure(url: str, case: Case, reps: int) -> tuple[list[float], int]:
    """Latencies of ``reps`` cancellations, and how many calls ended otherwise."""
    latencies: list[float] = []
    unexpected = 0
    async with _client(case, url) as client:
        for _ in range(reps):
            answered = anyio.Event()
            scope = anyio.CancelScope()
            returned: list[float] = []

            async def caller(
                scope: anyio.CancelScope = scope,
                answered: anyio.Event = answered,
                returned: list[float] = returned,
            ) -> None:
                with scope:
                    await client.predict(
                        case.model, prompt="never ends", on_status=lambda _: answered.set()
                    )
                returned.append(time.perf_counter())

            async with anyio.create_task_group() as group:
                group.start_soon(caller)
                await answered.wait()
                await anyio.sleep(CANCEL_AFTER)
                cancelled = time.perf_counter()
                scope.cancel()
            if returned and scope.cancelled_caught:
                latencies.append(returned[0] - cancelled)
            else:
                unexpected += 1
    return latencies, unexpected


def run(settings: Settings) -> list[Table]:
    reps = settings.pick(25, 4)
    table = Table(
        "Cancellation latency: from cancelling the caller to the call having returned",
        ["case", "backend", "latency, ms", "target < 10 ms", "remote cancels sent"],
    )
    with EmulatorProcess(duration=FOREVER) as emulator:
        for case in CASES:
            for backend in ("asyncio", "trio"):
                before = emulator.stats()
                latencies, unexpected = anyio.run(
                    _measure, emulator.url, case, reps, backend=backend
                )
                if unexpected:
                    raise RuntimeError(f"{case.name}: {unexpected} calls were not cancelled")
                cancels = emulator.stats()["cancels"] - before["cancels"]
                latency = summarize(latencies)
                table.add(
                    case.name,
                    backend,
                    fmt_ms(latency, 2),
                    "met" if latency.median < 0.010 else "MISSED",
                    f"{cancels}/{reps}" if case.service == "api" else "n/a (no remote cancel)",
                )
    table.notes.append(
        f"{reps} cancellations per row, {CANCEL_AFTER:g} s into a {POLL_INTERVAL:g} s poll "
        "interval (or into the event stream); median (min-max). The API client's remote "
        "cancel runs in its own task group and is counted by the emulator."
    )
    return [table]
