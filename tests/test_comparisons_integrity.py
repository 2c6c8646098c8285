"""Comparisons you can trust: a lost create is looked for only where it can be (its own
window, never another run's prediction), a run stays on its service, latencies come
from the service's own times, and cells are re-run by status as new attempts."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from replicate_home import ReplicateAPI, ReplicateHome, RunBoundElsewhere
from replicate_home.cli import main
from replicate_home.comparisons import (
    CellRecord,
    ResultsStore,
    RunProgress,
    resume_comparison,
    run_comparison,
    write_report,
)
from replicate_home.comparisons._lost import SKEW_MARGIN, UNMEASURED_SKEW, skew_bounds
from replicate_home.comparisons._store import ClockSample
from replicate_home.emulator import Emulator, Scenario

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_integrity"


# -- a run is bound to its service -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_run_resumes_only_on_its_own_service(tmp_path: Path) -> None:
    first, other = Emulator(Scenario(duration=30)), Emulator(Scenario(duration=0.1))
    async with first.serve(), other.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=first.base_url) as client:

            def leave_once_both_run(progress: RunProgress) -> None:
                if progress.running == 2:
                    scope.cancel()

            with anyio.CancelScope() as scope:
                await run_comparison(
                    client, store, ["a", "b"], [LLAMA], run_id="r", on_progress=leave_once_both_run
                )
        run = await store.run("r")
        assert (run.service, run.origin, run.emulator) == ("api", first.base_url, False)
        attempts = [
            ReplicateAPI(TOKEN, base_url=other.base_url),  # another base URL
            ReplicateHome(first.base_url),  # another kind of service
        ]
        for client in attempts:
            async with client:
                with pytest.raises(RunBoundElsewhere, match="recorded on"):
                    await resume_comparison(client, store, "r")
        async with ReplicateAPI(TOKEN, base_url=first.base_url) as client:
            with pytest.raises(RunBoundElsewhere) as caught:  # an emulator in its place
                await resume_comparison(client, store, "r", emulator=True)
        assert caught.value.origin == first.base_url
        assert isinstance(caught.value, ValueError)
        assert TOKEN not in str(caught.value)
    assert other.stats().requests == 0  # nothing sent to the wrong service


def test_cli_a_resume_on_another_service_is_a_usage_error_that_says_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = ["--db", str(tmp_path / "runs.db")]
    argv = ["compare", "--emulator", "--service", "api", "--name", "on-emu", *db]
    assert main([*argv, "--json", "-p", "a", "-m", LLAMA]) == 0
    assert json.loads(capsys.readouterr().out)[0]["attempts"] == 1
    # A run made on an emulator resumes on an emulator, never on a real service.
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    resume = ["compare", *db, "--resume", "on-emu", "--service", "api"]
    assert main([*resume, "--base-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"compare --resume on-emu --db {db[1]} --emulator --service api" in err[0]
    assert main(["compare", "--emulator", *db, "--resume", "on-emu", "--service", "home"]) == 2
    assert "recorded on the api service" in capsys.readouterr().err
    assert main(["compare", "--emulator", *db, "--resume", "on-emu", "--service", "api"]) == 0


def test_cli_a_run_on_a_named_service_never_resumes_on_the_emulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"

    async def record() -> None:
        async with ResultsStore.open(db) as store:
            await store.create_run(
                service="api",
                models=[LLAMA],
                cells=[(0, 0, LLAMA, "a", {"prompt": "a"})],
                settings={},
                run_id="real",
                origin="https://api.replicate.com/v1",
                emulator=False,
            )

    anyio.run(record)
    assert main(["compare", "--emulator", "--db", str(db), "--resume", "real"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "https://api.replicate.com/v1" in line
    assert "--base-url https://api.replicate.com/v1, with REPLICATE_API_TOKEN set" in line
    with sqlite3.connect(db) as database:
        assert database.execute("SELECT state FROM cells").fetchall() == [("pending",)]


# -- a lost create is looked for only in its own window ----------------------------------------


@pytest.mark.anyio
async def test_a_lost_create_never_takes_an_older_identical_or_another_runs_prediction(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.2))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            # Another run of the same prompt, recorded (its creates measure the clocks);
            # and one created a moment before the mark, by another program.
            other = await run_comparison(client, store, ["same"], [LLAMA])
            await client.create(LLAMA, prompt="same")
            await anyio.sleep(0.3)  # the scenario: a moment before the mark
            run = await store.create_run(
                origin=emulator.base_url,
                emulator=False,
                service="api",
                models=[LLAMA],
                cells=[
                    (0, 0, LLAMA, "same", {"prompt": "same"}),
                    (1, 0, LLAMA, "p", {"prompt": "p"}),
                ],
                settings={},
            )
            # Cell 0 was marked and its create never left; cell 1 is pending.
            await store.record_sending(run.id, 0, deadline=60)
            await client.create(LLAMA, prompt="p")  # not the run's: cell 1 was never sent
            before = emulator.stats().creates
            await resume_comparison(client, store, run.id)
        cells = await store.cells(run.id)
        (theirs,) = await store.cells(other.id)
    assert emulator.stats().creates == before + 2  # both cells sent: neither was found
    ids = {cell.prediction_id for cell in cells}
    assert theirs.prediction_id not in ids
    assert [c.status for c in cells] == ["succeeded"] * 2


@pytest.mark.anyio
async def test_a_store_claims_an_id_once(tmp_path: Path) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        spec = [(0, 0, LLAMA, "a", {"prompt": "a"})]
        one = await store.create_run(service="api", models=[LLAMA], cells=spec, settings={})
        two = await store.create_run(service="api", models=[LLAMA], cells=spec, settings={})
        assert await store.record_sent(one.id, 0, "p-1")
        assert not await store.record_sent(two.id, 0, "p-1")  # the database refuses
        assert (await store.cells(two.id))[0].prediction_id is None
        # A cell that only found the id in the listing gives it up to the create's answer.
        three = await store.create_run(service="api", models=[LLAMA], cells=spec, settings={})
        assert await store.record_sent(three.id, 0, "p-2", found=True)
        assert await store.record_sent(two.id, 0, "p-2")
        assert (await store.cells(three.id))[0].state == "sending"
        assert (await store.cells(two.id))[0].prediction_id == "p-2"
        # The end of a prediction another cell holds is not recorded.
        await store.record_end(three.id, 0, status="succeeded", prediction_id="p-2")
        assert (await store.cells(three.id))[0].state == "sending"
    with sqlite3.connect(tmp_path / "runs.db") as database, pytest.raises(sqlite3.IntegrityError):
        database.execute(
            "INSERT INTO claims (prediction_id, run_id, cell, attempt, found) "
            "VALUES ('p-1', 'x', 0, 1, 0)"
        )


def _sample(sent: float, answered: float, created: float) -> ClockSample:
    zero = datetime(2026, 12, 6, tzinfo=timezone.utc)
    return ClockSample(*(zero + timedelta(seconds=s) for s in (sent, answered, created)))


def test_the_clock_difference_is_measured_from_recorded_creates() -> None:
    assert skew_bounds([]) == (-UNMEASURED_SKEW, UNMEASURED_SKEW)
    # The service's clock 5 s ahead: each created_at lies between mark and answer, +5 s.
    low, high = skew_bounds([_sample(0, 0.2, 5.1), _sample(10, 10.1, 15.05)])
    assert low == pytest.approx(4.95 - SKEW_MARGIN)
    assert high == pytest.approx(5.05 + SKEW_MARGIN)
    # Measurements that disagree (a clock stepped): their whole spread, bounded.
    low, high = skew_bounds([_sample(0, 0.1, 2), _sample(0, 0.1, -2)])
    assert low < -2 < 2 < high
    assert skew_bounds([_sample(0, 0.1, 9999)])[1] <= 600


# -- true timings --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_resumed_cells_latency_is_the_services_create_to_end(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=1.0))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await store.create_run(
                service="api",
                models=[LLAMA],
                cells=[(0, 0, LLAMA, "a", {"prompt": "a"}), (1, 0, LLAMA, "b", {"prompt": "b"})],
                settings={},
            )
            await store.record_sending(run.id, 0, deadline=60)
            followed = await client.create(LLAMA, prompt="a")
            await store.record_sent(run.id, 0, followed.id, created_at=followed.created_at)
            await store.record_sending(run.id, 1, deadline=60)
            lost = await client.create(LLAMA, prompt="b")  # its answer never recorded
            await anyio.sleep(0.5)  # the scenario: resumed half-way through the predictions
            await resume_comparison(client, store, run.id)
            ended = [await client.get(p.id) for p in (followed, lost)]
        cells = await store.cells(run.id)
    assert cells[1].prediction_id == lost.id
    assert cells[1].sent_at is not None
    assert datetime.fromisoformat(cells[1].sent_at) == lost.created_at  # the service's
    for cell, prediction in zip(cells, ended, strict=True):
        assert prediction.created_at is not None
        assert prediction.completed_at is not None
        expected = (prediction.completed_at - prediction.created_at).total_seconds()
        assert cell.latency == pytest.approx(expected, abs=0.25)
        assert cell.latency is not None
        assert cell.latency > 0.75  # not from the resume (half-way)


# -- retry by status -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retry_re_runs_exactly_the_cells_of_those_statuses_as_new_attempts(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.1))
    emulator.script("broken", Scenario(duration=0.1, outcome="failed"), model=LLAMA)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(client, store, ["fine", "broken"], [LLAMA, FLUX])
            first = await store.cells(run.id)
            with pytest.raises(ValueError, match="end statuses"):
                await resume_comparison(client, store, run.id, retry=["broke"])
            assert emulator.stats().creates == 4
            await resume_comparison(client, store, run.id, retry=["failed", "timeout"])
            assert emulator.stats().creates == 5  # the one failed cell
            await resume_comparison(client, store, run.id, retry=["failed"])
            page = await write_report(store, run.id, tmp_path / "report.html")
        cells = await store.cells(run.id)
        earlier = await store.attempts(run.id)
    html = page.read_text(encoding="utf-8")
    assert html.count('data-attempts="3"') == 1  # the report shows the latest, and how many
    assert "3 attempts, the latest shown" in html
    assert [c.status for c in first] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert emulator.stats().creates == 6
    assert [c.attempt for c in cells] == [1, 1, 3, 1]
    assert [(a.cell, a.attempt, a.status) for a in earlier] == [(2, 1, "failed"), (2, 2, "failed")]
    ids = [a.prediction_id for a in earlier] + [cells[2].prediction_id]
    assert len(set(ids)) == 3  # every attempt its own prediction, each kept


def test_cli_retry_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", str(tmp_path / "runs.db")]
    argv = ["compare", "--emulator", "--service", "api", "--json", *db]
    assert main([*argv, "--name", "r", "-p", "a", "-m", LLAMA, "-m", FLUX]) == 0
    capsys.readouterr()
    assert main([*argv, "--resume", "r", "--retry", "failed,canceled,in doubt"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert [c["attempts"] for c in cells] == [1, 1]  # nothing failed: nothing re-run
    assert main([*argv, "--resume", "r", "--retry", "succeeded"]) == 0
    assert [c["attempts"] for c in json.loads(capsys.readouterr().out)] == [2, 2]
    assert main([*argv, "--resume", "r", "--retry", "bogus"]) == 2
    assert "--retry takes end statuses" in capsys.readouterr().err
    assert main([*argv, "--retry", "failed", "-p", "a", "-m", LLAMA]) == 2
    assert "--retry goes with --resume" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_lost_create_must_carry_the_runs_webhook(tmp_path: Path) -> None:
    hook = "http://127.0.0.1:9/hooks/replicate"
    emulator = Emulator(Scenario(duration=0.2))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await store.create_run(
                service="api",
                models=[LLAMA],
                cells=[(0, 0, LLAMA, "w", {"prompt": "w"})],
                settings={"webhook": hook, "webhook_events_filter": None},
            )
            await store.record_sending(run.id, 0, deadline=60)
            # Inside the cell's window: another program's create of the same input, with
            # no webhook, then the run's own (lost) create, with the run's webhook.
            foreign = await client.create(LLAMA, prompt="w")
            ours = await client.create(LLAMA, prompt="w", webhook=hook)
            assert ours.webhook == hook  # the service shows it
            await resume_comparison(client, store, run.id)
        (cell,) = await store.cells(run.id)
    assert emulator.stats().creates == 2  # found, not sent again
    assert cell.prediction_id == ours.id != foreign.id


@pytest.mark.anyio
async def test_a_resume_waits_for_another_runs_create_in_flight(tmp_path: Path) -> None:
    # Run X marked its cell first, but its create (slow to leave) was created after run
    # Y's lost one: handed out in order of marks, X's prediction would go to Y. X's
    # process is alive and records its answer: the resume waits for it, then takes Y's.
    emulator = Emulator(Scenario(duration=0.2))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            spec = [(0, 0, LLAMA, "p", {"prompt": "p"})]
            bound = {"origin": emulator.base_url, "emulator": False}
            x = await store.create_run(
                service="api", models=[LLAMA], cells=spec, settings={}, **bound
            )
            y = await store.create_run(
                service="api", models=[LLAMA], cells=spec, settings={}, **bound
            )
            await store.record_sending(x.id, 0, deadline=60)
            await store.record_sending(y.id, 0, deadline=60)
            lost = await client.create(LLAMA, prompt="p")  # Y's, never recorded
            slow = await client.create(LLAMA, prompt="p")  # X's, its answer on its way
            asked = anyio.Event()
            open_sends = store.open_sends

            async def spied() -> list[CellRecord]:
                asked.set()
                return await open_sends()

            store.open_sends = spied  # type: ignore[method-assign]
            async with anyio.create_task_group() as group:
                group.start_soon(resume_comparison, client, store, y.id)
                await asked.wait()  # the resume looks at the store: X's create is in flight
                assert await store.record_sent(x.id, 0, slow.id, created_at=slow.created_at)
        (mine,) = await store.cells(y.id)
        (theirs,) = await store.cells(x.id)
    assert mine.prediction_id == lost.id
    assert theirs.prediction_id == slow.id
    assert emulator.stats().creates == 2
