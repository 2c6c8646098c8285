"""A long fan-out or prompt-set run holds what its calls in flight need, never what
the calls not yet started or already ended did: the tasks alive stay under a bound that
does not grow with the number of calls."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from replicate_home import Failed, Finished, PredictionNotSent, ReplicateAPI
from replicate_home._fanout import PENDING_CREATES
from replicate_home.comparisons import ResultsStore, RunProgress, run_comparison
from replicate_home.comparisons._store import _Database
from replicate_home.emulator import Emulator, Scenario

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_bounded"

pytestmark = pytest.mark.anyio

#: Tasks of the client beside its calls' own: the test's, the client's group, the bulk
#: follower's sweeper, an archive download or two, the results store's thread call.
_OVERHEAD = 16


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(duration=0.05)


@pytest.mark.parametrize("prompts", [4, pytest.param(24, marks=pytest.mark.slow)])
async def test_tasks_of_a_run_follow_its_limit_not_its_cells(
    emulator: Emulator, tmp_path: Path, client_tasks: Callable[[], set[int]], prompts: int
) -> None:
    """With ``limit``, a cell's task starts when its turn comes: the tasks alive at any
    moment (sampled as cells end: a quarter, half, all of them) stay under one bound for
    8 cells and for 48, and nothing a cell held stays once it ended."""
    limit = 8
    samples: dict[int, int] = {}

    def sample(progress: RunProgress) -> None:
        samples[progress.done] = max(samples.get(progress.done, 0), len(client_tasks()))

    async with (
        ResultsStore.open(tmp_path / "runs.db") as store,
        ReplicateAPI(TOKEN, base_url=emulator.base_url) as client,
    ):
        run = await run_comparison(
            client,
            store,
            [f"prompt {n}" for n in range(prompts)],
            [LLAMA, FLUX],
            limit=limit,
            on_progress=sample,
        )
        cells = await store.cells(run.id)
    total = 2 * prompts
    assert [cell.status for cell in cells] == ["succeeded"] * total
    bound = 2 * limit + _OVERHEAD  # a runner and its create's job per cell in flight
    assert max(samples.values()) <= bound, samples
    for ended in (total // 4, total // 2, total):
        assert samples[ended] <= bound


async def test_calls_waiting_for_the_budget_are_not_all_started(
    emulator: Emulator, client_tasks: Callable[[], set[int]]
) -> None:
    """Without a limit, at most PENDING_CREATES calls wait for a create at once; the
    others start as those leave. Each keeps the deadline to be sent it had started with
    the fan-out: those the budget never lets out end ``not sent`` together."""
    calls = PENDING_CREATES + 64
    most = 0
    ended: list[Finished | Failed] = []
    async with (
        ReplicateAPI(TOKEN, base_url=emulator.base_url, creates_per_minute=60) as client,
        client.fan_out([LLAMA] * calls, prompt="hello", timeout=1.0) as events,
    ):
        async for event in events:
            most = max(most, len(client_tasks()))
            if isinstance(event, (Finished, Failed)):
                ended.append(event)
    assert len(ended) == calls
    assert {event.index for event in ended} == set(range(calls))
    not_sent = [event for event in ended if isinstance(event, Failed)]
    assert all(isinstance(event.error, PredictionNotSent) for event in not_sent)
    assert len(not_sent) >= calls - 5  # a create a second: a few leave in the second
    # Each turn began with the fan-out: the last started waited the same second.
    assert min(event.elapsed for event in not_sent) >= 1.0
    assert most <= PENDING_CREATES + _OVERHEAD


async def test_streams_take_at_most_half_the_gate(emulator: Emulator) -> None:
    """Event streams hold their place in the request gate for a prediction's whole run:
    at most half the places go to them (the rest stay for creates and polls), and a
    prediction past that is followed by polls, its text the same."""
    emulator.script("a long answer", Scenario(duration=1.0), model=LLAMA)
    calls = 60  # the gate has 100 places: 50 for streams
    peak = 0

    def track(running: Emulator) -> bool:
        nonlocal peak
        peak = max(peak, running.stats().open_streams)
        return False

    async with anyio.create_task_group() as group:
        group.start_soon(emulator.wait_for, track)
        budget = {"creates_per_minute": 60_000, "requests_per_minute": 60_000}
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url, **budget) as client:
            results = await client.compare([LLAMA] * calls, prompt="a long answer")
        group.cancel_scope.cancel()
    assert [result.status for result in results] == ["succeeded"] * calls
    texts = {result.text for result in results}
    assert len(texts) == 1
    assert texts != {""}
    stats = emulator.stats()
    assert 0 < peak <= 50
    assert 0 < stats.stream_connections < calls  # the others polled


async def test_writes_queued_together_commit_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes queued while one is being made go in one transaction, each in a savepoint
    of its own: all are committed when their callers go on, in fewer hops than writes,
    and one that fails is rolled back alone, its error raised to its caller only."""
    hops: list[int] = []
    commit = _Database.commit

    def counted(database: _Database, writes: list[Any]) -> None:
        hops.append(len(writes))
        commit(database, writes)

    monkeypatch.setattr(_Database, "commit", counted)
    cells = 40
    failed: list[BaseException] = []
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        run = await store.create_run(
            service="api",
            models=[LLAMA],
            cells=[(n, 0, LLAMA, f"p{n}", {"prompt": f"p{n}"}) for n in range(cells)],
            settings={},
        )

        async def mark(cell: int) -> None:
            await store.record_sending(run.id, cell, deadline=60)
            assert await store.record_sent(run.id, cell, f"id-{cell}")

        async def broken() -> None:
            def work(connection: sqlite3.Connection) -> None:
                connection.execute("UPDATE cells SET state = 'done' WHERE run_id = ?", (run.id,))
                connection.execute("INSERT INTO no_such_table VALUES (1)")

            try:
                await store._transaction(work)
            except sqlite3.OperationalError as error:
                failed.append(error)

        async with anyio.create_task_group() as group:
            for cell in range(cells):
                group.start_soon(mark, cell)
            group.start_soon(broken)
        stored = await store.cells(run.id)
    assert len(failed) == 1  # its error, to its caller
    assert [cell.state for cell in stored] == ["running"] * cells  # its update undone
    assert [cell.prediction_id for cell in stored] == [f"id-{n}" for n in range(cells)]
    assert sum(hops) == 2 * cells + 1 + 1  # every write once (and the run's own)
    assert len(hops) < sum(hops)  # fewer hops than writes


async def test_a_writer_cancelled_before_its_hop_leaves_the_queue_to_the_next(
    tmp_path: Path,
) -> None:
    """The write that would have made the hop is cancelled while it waits for the
    database: it is withdrawn (never written), and the write queued behind it is
    written all the same."""
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        run = await store.create_run(
            service="api",
            models=[LLAMA],
            cells=[(n, 0, LLAMA, f"p{n}", {"prompt": f"p{n}"}) for n in range(2)],
            settings={},
        )
        async with anyio.create_task_group() as group:
            async with store._limiter:  # the database busy: both writes queue
                first = anyio.CancelScope()

                async def cancelled() -> None:
                    with first:
                        await store.record_sending(run.id, 0, deadline=60)

                group.start_soon(cancelled)
                await anyio.wait_all_tasks_blocked()
                group.start_soon(partial(store.record_sending, run.id, 1, deadline=60))
                await anyio.wait_all_tasks_blocked()
                first.cancel()
                await anyio.wait_all_tasks_blocked()
        stored = await store.cells(run.id)
    assert first.cancelled_caught
    assert [cell.state for cell in stored] == ["pending", "sending"]
