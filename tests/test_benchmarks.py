"""The benchmarks can't rot: ``python -m benchmarks --quick`` runs every one of them.

No assertion here is about a timing (these machines are noisy): only that each benchmark
ran, printed its table and made its plot. The request gate the fan-out benchmark led to
is tested here too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from replicate_home import Finished, FixedSchedule, ReplicateAPI
from replicate_home._engine import Engine
from replicate_home._exchange import RequestGate
from replicate_home._home import HomeService
from replicate_home._run import run_to_end
from replicate_home._schedule import RetryPolicy
from replicate_home.emulator import Emulator, Scenario

ROOT = Path(__file__).resolve().parent.parent

TITLES = [
    "Per-poll overhead",
    "Detection latency after completion",
    "Fan-out scale",
    "Cancellation latency",
    "The official API: ours (ReplicateAPI.predict) vs the official client",
    "Streaming cost per event",
    "A prompt set at scale",
    "Kill and resume beside another run",
    "A fan-out over one file",
    "The viewer's first page",
    "A storm of",
]


@pytest.mark.slow
@pytest.mark.timeout(420)  # about 90 s on 2 cores (with scale); generous for loaded ones
def test_the_quick_run_prints_every_table(tmp_path: Path) -> None:
    plot, output = tmp_path / "latency.png", tmp_path / "results.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "benchmarks", "--quick", "--plot", str(plot)]
    completed = subprocess.run(
        [*command, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=410,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "ERROR" not in out + completed.stderr
    assert "0 error(s)" in out
    for title in TITLES:
        assert f"### {title}" in out, title
    tables = out.split("### ")[1:]
    assert len(tables) == len(TITLES)
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert len(rows) >= 2, table  # a header and at least one result
        assert "CPython" in table or "PyPy" in table  # the machine line
    assert plot.read_bytes().startswith(b"\x89PNG")
    # The scale plot goes beside it, never into docs/img/ on a quick run.
    assert (tmp_path / "scale-creates.png").read_bytes().startswith(b"\x89PNG")
    assert output.read_text().count("### ") == len(TITLES)


# -- the request gate ------------------------------------------------------------------

on_both_backends = pytest.mark.anyio
BASE = "http://service.test"


class Counting:
    """A service that answers slowly and counts the requests it holds at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.served = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await anyio.sleep(0.01)
        finally:
            self.now -= 1
        self.served += 1
        status = "starting" if request.method == "POST" else "succeeded"
        body: dict[str, Any] = {"id": f"p{self.served}", "status": status, "output": ["Hi"]}
        return httpx.Response(200, content=json.dumps(body).encode())


def engine(http: httpx.AsyncClient, gate: RequestGate | None) -> Engine:
    return Engine(
        http,
        HomeService(BASE),
        timeout=10,
        schedule=FixedSchedule(0.001),
        retry=RetryPolicy(max_retries=0),
        gate=gate,
    )


@on_both_backends
async def test_the_gate_bounds_the_requests_in_flight() -> None:
    service = Counting()
    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as http:
        gated = engine(http, RequestGate(2))
        call = HomeService(BASE).prepare("gemma-2b", None, "Hi")
        results = []

        async def one() -> None:
            results.append(await run_to_end(gated, call))

        async with anyio.create_task_group() as group:
            for _ in range(7):
                group.start_soon(one)
    assert len(results) == 7
    assert all(result.status == "succeeded" for result in results)
    assert service.peak == 2
    assert service.served == 14  # a create and a poll each


@on_both_backends
async def test_a_caller_cancelled_while_waiting_at_the_gate_takes_no_place() -> None:
    gate = RequestGate(1)
    await gate.acquire()
    with anyio.move_on_after(0.05) as scope:
        await gate.acquire()
    assert scope.cancelled_caught
    gate.release()
    with anyio.fail_after(1):
        await gate.acquire()  # the cancelled waiter did not keep the place
    gate.release()


@on_both_backends
async def test_streams_give_their_place_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many streamed predictions through a client of its own, whose gate is two places
    (one of them for streams): every stream ends and gives its place back, so all of
    them finish (those that found the stream place taken, by polls)."""
    monkeypatch.setattr("replicate_home._client.HTTP_LIMITS", httpx.Limits(max_connections=2))
    async with Emulator(Scenario(duration=0.2)).serve() as emulator:
        async with ReplicateAPI("token", base_url=emulator.base_url, wait=None) as client:
            async with client.fan_out(["meta/llama-3"] * 6, prompt="Hi") as events:
                finished = [event async for event in events if isinstance(event, Finished)]
            gate = client._open_engine()._exchange.gate
            assert gate is not None
            for _ in range(2):  # both places are free again
                gate._slots.acquire_nowait()
            assert gate.streams == 0  # and the streams' count
        stats = emulator.stats()
    assert len(finished) == 6
    assert 1 <= stats.stream_connections <= 6
