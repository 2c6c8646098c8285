"""Comparisons at scale: prompt sets, the results store, resume without a duplicate
prediction (even after kill -9), and the command line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from replicate_home import Deployment, ReplicateAPI, ReplicateHome
from replicate_home.cli import main
from replicate_home.comparisons import (
    IN_DOUBT,
    SCHEMA,
    SCHEMA_VERSION,
    PromptRow,
    ResultsStore,
    RunProgress,
    load_prompts,
    parse_prompts,
    resume_comparison,
    run_comparison,
    write_report,
)
from replicate_home.emulator import Emulator, Scenario, serve_asgi
from replicate_home.webhooks import WebhookReceiver

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_comparisons"


# -- prompt sets -------------------------------------------------------------------------


def test_prompt_files_jsonl_csv_and_lines(tmp_path: Path) -> None:
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text('{"prompt": "a", "seed": 3}\n\n"b"\n{"width": 512}\n', encoding="utf-8")
    assert load_prompts(jsonl) == [
        PromptRow("a", {"seed": 3}),
        PromptRow("b"),
        PromptRow(None, {"width": 512}),
    ]
    table = tmp_path / "set.csv"
    table.write_text('prompt,seed,style\n"a, b",7,plain\nc,,\n', encoding="utf-8")
    assert load_prompts(table) == [PromptRow("a, b", {"seed": 7, "style": "plain"}), PromptRow("c")]
    lines = tmp_path / "set.txt"
    lines.write_text("one\n\n  two  \n", encoding="utf-8")
    assert load_prompts(lines) == [PromptRow("one"), PromptRow("two")]


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ("{not json\n", "jsonl", "line 1"),
        ("[1, 2]\n", "jsonl", "row 1"),
        ('{"prompt": 3}\n', "jsonl", "prompt must be a string"),
        ("{}\n", "jsonl", "a prompt or an input"),
        ("seed\n1\n", "csv", "'prompt' column"),
        ("\n\n", "lines", "at least one prompt"),
        ("a", "yaml", "format"),
    ],
)
def test_bad_prompt_files_are_value_errors(text: str, format: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_prompts(text, format)


@given(st.lists(st.text(min_size=1).filter(lambda s: s.strip() and "\r" not in s), max_size=20))
def test_plain_lines_keep_every_prompt(prompts: list[str]) -> None:
    lines = [" ".join(p.split()) for p in prompts]
    lines = [line for line in lines if line]
    text = "\n".join(lines)
    if not lines:
        with pytest.raises(ValueError, match="at least one prompt"):
            parse_prompts(text, "lines")
        return
    assert [row.prompt for row in parse_prompts(text, "lines")] == lines


# -- runs and the store --------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_run_records_every_cell(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.2))
    emulator.script("broken", Scenario(duration=0.1, outcome="failed"), model=LLAMA)
    seen: list[RunProgress] = []
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(
                client,
                store,
                ["a cat", {"prompt": "broken", "seed": 2}],
                [LLAMA, FLUX],
                input={"seed": 1},
                limit=3,
                on_progress=seen.append,
            )
        cells = await store.cells(run.id)
    assert emulator.stats().creates == 4
    assert [(c.prompt_index, c.model_index, c.model) for c in cells] == [
        (0, 0, LLAMA),
        (0, 1, FLUX),
        (1, 0, LLAMA),
        (1, 1, FLUX),
    ]
    assert [c.status for c in cells] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert all(c.state == "done" and c.prediction_id for c in cells)
    assert cells[0].output_text
    assert not cells[0].images
    assert cells[1].images
    assert cells[1].output_text is None
    assert cells[2].error_type == "PredictionFailed"
    assert cells[0].input == {"prompt": "a cat", "seed": 1}
    assert cells[2].input == {"prompt": "broken", "seed": 2}  # the row's input wins
    assert all(c.latency is not None and c.latency > 0 for c in cells)
    assert seen[-1].done == 4
    assert seen[-1].failed == 1
    assert max(p.running for p in seen) <= 3
    # The database is plain SQLite (WAL): any tool can query it.
    with sqlite3.connect(tmp_path / "runs.db") as db:
        rows = db.execute(
            "SELECT model, status, COUNT(*) FROM cells WHERE run_id = ? GROUP BY model, status "
            "ORDER BY model, status",
            (run.id,),
        ).fetchall()
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert rows == [(FLUX, "succeeded", 2), (LLAMA, "failed", 1), (LLAMA, "succeeded", 1)]


@pytest.mark.anyio
async def test_bad_input_raises_before_anything_is_recorded(tmp_path: Path) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateHome("http://127.0.0.1:9") as client:
            with pytest.raises(ValueError, match="model"):
                await run_comparison(client, store, ["a"], ["no-such-model"])
            with pytest.raises(ValueError, match="at least one prompt"):
                await run_comparison(client, store, [], ["gemma-2b"])
        assert await store.runs() == []


@pytest.mark.anyio
async def test_resume_follows_by_id_finds_unrecorded_creates_and_sends_the_rest(
    tmp_path: Path,
) -> None:
    # A run that died: cell 0 finished, cell 1's create answered and was recorded, cell 2's
    # create answered but the process died before recording it, cell 3 was never sent (an
    # identical create of another program must not be taken for it).
    emulator = Emulator(Scenario(duration=0.5))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            prompts = ["p0", "p1", "p2", "p3"]
            run = await store.create_run(
                service="api",
                models=[LLAMA],
                cells=[(i, 0, LLAMA, p, {"prompt": p}) for i, p in enumerate(prompts)],
                settings={},
            )
            await store.record_end(run.id, 0, status="succeeded", output_text="kept")
            await store.record_sending(run.id, 1, deadline=60)
            recorded = await client.create(LLAMA, prompt="p1")
            await store.record_sent(run.id, 1, recorded.id)
            await store.record_sending(run.id, 2, deadline=60)
            unrecorded = await client.create(LLAMA, prompt="p2")
            await client.create(LLAMA, prompt="p3")  # not the run's: cell 3 is pending
            assert emulator.stats().creates == 3
            await resume_comparison(client, store, run.id)
        cells = await store.cells(run.id)
    assert emulator.stats().creates == 4  # only the cell never sent
    assert [c.status for c in cells] == ["succeeded"] * 4
    assert cells[0].output_text == "kept"
    assert cells[1].prediction_id == recorded.id
    assert cells[2].prediction_id == unrecorded.id
    assert all(c.output_text for c in cells)


@pytest.mark.anyio
async def test_leaving_a_run_marks_running_cells_interrupted_and_resume_resends_them(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=30))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            names: list[str] = []

            def cancel_once_running(progress: RunProgress) -> None:
                names.append(progress.run_id)
                if progress.running == 2:
                    scope.cancel()

            with anyio.CancelScope() as scope:
                await run_comparison(
                    client, store, ["a"], [LLAMA, LLAMA], on_progress=cancel_once_running
                )
        cells = await store.cells(names[0])
        assert [c.state for c in cells] == ["interrupted"] * 2
    assert emulator.stats().cancels == 2


@pytest.mark.anyio
async def test_home_runs_too(tmp_path: Path, emulator: Emulator) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateHome(emulator.base_url) as client:
            run = await run_comparison(client, store, ["a", "b"], ["gemma-2b", "sd-3"])
        cells = await store.cells(run.id)
    assert run.service == "home"
    assert [c.status for c in cells] == ["succeeded"] * 4


# -- the command line ----------------------------------------------------------------------


def test_cli_prompt_set_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "set.jsonl"
    prompts.write_text('{"prompt": "a fox", "seed": 1}\n', encoding="utf-8")
    db = tmp_path / "runs.db"
    argv = ["compare", "--emulator", "--service", "api", "--json", "--db", str(db)]
    argv += ["--prompts", str(prompts), "-p", "a boat", "-m", LLAMA, "-m", FLUX]
    argv += ["--report", str(tmp_path / "report.html")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    cells = json.loads(out)
    assert [(c["prompt"], c["model"], c["status"]) for c in cells] == [
        ("a boat", LLAMA, "succeeded"),
        ("a boat", FLUX, "succeeded"),
        ("a fox", LLAMA, "succeeded"),
        ("a fox", FLUX, "succeeded"),
    ]
    assert cells[2]["input"] == {"prompt": "a fox", "seed": 1}
    run_id = err.split("run ", 1)[1].split(":", 1)[0]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert run_id in page
    assert len(list((tmp_path / "report_files").glob("*.png"))) == 2
    assert main(["report", run_id, "--db", str(db), "-o", str(tmp_path / "again.html")]) == 0
    assert main(["report", "nope", "--db", str(db)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_cli_prompt_set_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    db = ["--db", str(tmp_path / "runs.db")]
    assert main(["compare", "--emulator", *db, "--prompts", str(bad), "-m", "gemma-2b"]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["compare", "--emulator", *db, "-p", "a"])
    assert caught.value.code == 2
    assert main(["compare", "--emulator", *db, "--resume", "x", "-m", "gemma-2b"]) == 2
    assert main(["compare", "--emulator", *db, "--resume", "nope"]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err
    assert "-m/--model" in err
    assert "--resume takes" in err
    assert "no results database at" in err


# -- kill -9 and resume ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_run_killed_with_sigkill_resumes_without_creating_anything_twice(
    tmp_path: Path, anyio_backend: str
) -> None:
    emulator = Emulator(Scenario(duration=1.5))
    prompts = [f"prompt {n}" for n in range(5)]
    models = [LLAMA, FLUX]
    cells = len(prompts) * len(models)
    db = tmp_path / "runs.db"
    env = {
        **os.environ,
        "REPLICATE_API_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    async with emulator.serve():
        base = [sys.executable, "-m", "replicate_home", "compare", "--service", "api"]
        base += ["--base-url", emulator.base_url, "--backend", anyio_backend, "--db", str(db)]
        argv = [*base, "--limit", "4", "--json"]
        for prompt in prompts:
            argv += ["-p", prompt]
        for model in models:
            argv += ["-m", model]
        process = await anyio.open_process(argv, env=env, stdout=subprocess.DEVNULL)
        try:
            # Killed once some predictions run and none has finished.
            with anyio.fail_after(60):
                await emulator.wait_for(lambda e: e.stats().creates >= 3)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        finally:
            await process.aclose()
        assert process.returncode == -signal.SIGKILL
        with sqlite3.connect(db) as database:
            (run_id,) = database.execute("SELECT id FROM runs").fetchone()
            states = [row[0] for row in database.execute("SELECT state FROM cells")]
        assert states.count("done") < cells  # it was killed mid-way
        sent_before = emulator.stats().creates
        done = await anyio.run_process([*base, "--resume", run_id, "--json"], env=env)
    results = json.loads(done.stdout)
    assert len(results) == cells
    assert [r["status"] for r in results] == ["succeeded"] * cells
    assert all(r["text"] or r["images"] for r in results)
    # Every prediction created before the kill was followed, not created again.
    assert emulator.stats().creates == cells
    assert sent_before >= 3


# -- deployments and webhooks ----------------------------------------------------------------


@asynccontextmanager
async def _receiving(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """The receiver served on loopback; its webhook URL."""
    app = Starlette(routes=[Route("/hooks/replicate", receiver, methods=["POST"])])
    async with serve_asgi(app) as base_url:
        yield f"{base_url}/hooks/replicate?token=secret"


def _deployed(duration: float) -> Emulator:
    return Emulator(
        Scenario(duration=duration), deployments={"acme/chat": LLAMA, "acme/pictures": FLUX}
    )


@pytest.mark.anyio
async def test_deployments_beside_models_with_a_webhook_run_resume_and_report(
    tmp_path: Path,
) -> None:
    columns = [LLAMA, Deployment("acme/chat"), Deployment("acme/pictures")]
    async with _deployed(0.2).serve() as emu, ResultsStore.open(tmp_path / "runs.db") as store:
        receiver = WebhookReceiver(emu.webhook_secret)
        async with (
            _receiving(receiver) as url,
            ReplicateAPI(TOKEN, base_url=emu.base_url) as client,
        ):
            # Left as soon as two cells run: those are cancelled, the rest never sent.
            names: list[str] = []

            def leave_once_two_run(progress: RunProgress) -> None:
                names.append(progress.run_id)
                if progress.running == 2:
                    scope.cancel()

            with anyio.CancelScope() as scope:
                await run_comparison(
                    client,
                    store,
                    ["a", "b"],
                    columns,
                    limit=2,
                    webhook=url,
                    webhook_events_filter=["completed"],
                    on_progress=leave_once_two_run,
                )
            run = await resume_comparison(client, store, names[0])
            with anyio.fail_after(10):
                await emu.wait_for(lambda e: receiver.delivered >= 6)
        cells = await store.cells(run.id)
        page = await write_report(store, run.id, tmp_path / "report.html")
    assert run.models == (LLAMA, "deployment:acme/chat", "deployment:acme/pictures")
    assert run.settings["webhook"] == url
    assert run.settings["webhook_events_filter"] == ["completed"]
    assert [c.model for c in cells] == [str(column) for column in columns] * 2
    assert [c.status for c in cells] == ["succeeded"] * 6
    assert cells[1].output_text == cells[0].output_text  # the same model underneath
    assert len(cells[2].images) == 1
    posts = [r for r in emu.requests if r.method == "POST" and r.status_code == 201]
    by_path = Counter(r.path for r in posts)
    # Two creates cancelled when the run was left, sent again on resume; every create
    # of the run and of its resume carried the webhook.
    assert sum(by_path.values()) == 8
    assert by_path["/v1/deployments/acme/chat/predictions"] >= 2
    assert by_path["/v1/deployments/acme/pictures/predictions"] >= 2
    delivered = {d.prediction_id for d in emu.webhook_deliveries if d.event == "completed"}
    assert {c.prediction_id for c in cells} <= delivered
    text = page.read_text(encoding="utf-8")
    assert "deployment:acme/chat" in text
    assert "hooks/replicate?…" in text
    assert "token=secret" not in text  # a webhook's query may carry a secret


@pytest.mark.anyio
async def test_resume_attaches_a_deployments_unrecorded_create_not_a_models(
    tmp_path: Path,
) -> None:
    # Same input on a model and on a deployment of that model: each cell was marked
    # "sending"; only the deployment's create left before the process died.
    async with _deployed(0.3).serve() as emu, ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emu.base_url) as client:
            run = await store.create_run(
                service="api",
                models=["deployment:acme/chat", LLAMA],
                cells=[
                    (0, 0, "deployment:acme/chat", "p", {"prompt": "p"}),
                    (0, 1, LLAMA, "p", {"prompt": "p"}),
                ],
                settings={},
            )
            await store.record_sending(run.id, 0, deadline=60)
            await store.record_sending(run.id, 1, deadline=60)
            lost = await client.create(Deployment("acme/chat"), prompt="p")
            await resume_comparison(client, store, run.id)
        cells = await store.cells(run.id)
    assert emu.stats().creates == 2  # the model's cell, sent now; the deployment's, once
    assert cells[0].prediction_id == lost.id
    assert cells[1].prediction_id != lost.id
    assert [c.status for c in cells] == ["succeeded"] * 2


@pytest.mark.anyio
async def test_home_resume_leaves_a_cell_in_doubt_unless_asked_to_resend(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateHome(emulator.base_url) as client:
            run = await store.create_run(
                service="home",
                models=["gemma-2b"],
                cells=[(i, 0, "gemma-2b", p, {"prompt": p}) for i, p in enumerate("ab")],
                settings={},
            )
            # Cell 0's create left (and was paid for); the answer was never recorded.
            await store.record_sending(run.id, 0, deadline=60)
            await client.predict("gemma-2b", prompt="a")
            await resume_comparison(client, store, run.id)
            first = await store.cells(run.id)
            assert emulator.stats().creates == 2  # cell 1 only: cell 0 not sent again
            await resume_comparison(client, store, run.id)  # still in doubt: kept
            assert emulator.stats().creates == 2
            await resume_comparison(client, store, run.id, resend_in_doubt=True)
        cells = await store.cells(run.id)
    assert [c.status for c in first] == [IN_DOUBT, "succeeded"]
    assert "resend_in_doubt" in (first[0].error or "")
    assert emulator.stats().creates == 3
    assert [c.status for c in cells] == ["succeeded"] * 2


def test_a_database_from_a_newer_version_is_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as database:
        database.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")

    async def open_it() -> None:
        async with ResultsStore.open(path):
            pass

    with pytest.raises(ValueError, match="newer replicate-home"):
        anyio.run(open_it)
    assert main(["report", "x", "--db", str(path)]) == 2
    assert "newer replicate-home" in capsys.readouterr().err


#: The tables of results databases of schema versions 0 and 1, as they were written.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, service TEXT NOT NULL,
    models TEXT NOT NULL, settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL REFERENCES runs(id), cell INTEGER NOT NULL,
    prompt_index INTEGER NOT NULL, model_index INTEGER NOT NULL, model TEXT NOT NULL,
    prompt TEXT, input TEXT NOT NULL, state TEXT NOT NULL, prediction_id TEXT, status TEXT,
    output_text TEXT, images TEXT, error TEXT, error_type TEXT, latency REAL,
    predict_time REAL, sent_at TEXT, ended_at TEXT, PRIMARY KEY (run_id, cell)
);
CREATE INDEX IF NOT EXISTS cells_by_state ON cells (run_id, state);
"""


@pytest.mark.anyio
@pytest.mark.parametrize("version", [0, 1])
async def test_an_older_database_is_migrated_and_its_runs_resume(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as database:
        database.executescript(_SCHEMA_V1)
        database.execute(f"PRAGMA user_version={version}")
        database.execute(
            "INSERT INTO runs VALUES ('old', '2026-11-25T00:00:00+00:00', 'home',"
            " '[\"gemma-2b\"]', '{}')"
        )
        cell = "INSERT INTO cells (run_id, cell, prompt_index, model_index, model, prompt,"
        cell += " input, state, prediction_id, status, output_text)"
        cell += " VALUES ('old',?,?,0,'gemma-2b',?,?,?,?,?,?)"
        database.executemany(
            cell,
            [
                (0, 0, "a", '{"prompt": "a"}', "done", "p-1", "succeeded", "kept"),
                # The same id twice (a resume of an older version could do that).
                (1, 1, "b", '{"prompt": "b"}', "done", "p-1", "succeeded", "kept"),
                (2, 2, "c", '{"prompt": "c"}', "pending", None, None, None),
            ],
        )
    async with Emulator(Scenario(duration=0.1)).serve() as emu:
        async with ResultsStore.open(path) as store:
            (run,) = await store.runs()
            assert (run.id, run.origin, run.emulator) == ("old", None, None)
            async with ReplicateHome(emu.base_url) as client:
                await resume_comparison(client, store, "old")
            cells = await store.cells("old")
            assert (await store.run("old")).origin == emu.base_url  # bound by its resume
    assert [(c.status, c.output_text) for c in cells[:2]] == [("succeeded", "kept")] * 2
    assert cells[2].status == "succeeded"
    assert [c.attempt for c in cells] == [1, 1, 1]
    assert emu.stats().creates == 1
    with sqlite3.connect(path) as database:
        assert database.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        claims = database.execute("SELECT prediction_id, cell FROM claims ORDER BY cell").fetchall()
    assert claims[0] == ("p-1", 0)  # the first cell keeps the claim of a doubled id
    assert [cell for _, cell in claims] == [0, 2]


def test_a_new_database_and_a_migrated_one_have_the_same_tables(tmp_path: Path) -> None:
    def tables(path: Path) -> dict[str, list[str]]:
        async def open_it() -> None:
            async with ResultsStore.open(path):
                pass

        anyio.run(open_it)
        with sqlite3.connect(path) as database:
            names = [row[0] for row in database.execute("SELECT name FROM sqlite_master")]
            return {
                name: [col[1] for col in database.execute(f"PRAGMA table_info('{name}')")]
                for name in sorted(names)
            }

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as database:
        database.executescript(_SCHEMA_V1)
    fresh = tables(tmp_path / "new.db")
    assert tables(old) == fresh
    assert {"claims", "attempts"} <= set(fresh)
    with sqlite3.connect(tmp_path / "script.db") as database:  # SCHEMA is the same text
        database.executescript(SCHEMA)
    assert tables(tmp_path / "script.db") == fresh


def test_connections_opening_a_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    """SQLite answers the switch to WAL "database is locked" at once, without waiting:
    two processes starting runs in one new file must both get in (a CI run lost one).
    Threads with a connection each race the same way, and faster."""
    openers = 4

    async def open_it(path: Path) -> None:
        async with ResultsStore.open(path) as store:
            assert await store.runs() == []

    def opener(path: Path, start: threading.Barrier, errors: list[BaseException]) -> None:
        start.wait()
        try:
            anyio.run(open_it, path)
        except BaseException as error:  # reported below, whatever it is
            errors.append(error)

    for attempt in range(15):  # each attempt a new file, opened by all at once
        path = tmp_path / f"{attempt}.db"
        start = threading.Barrier(openers)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=opener, args=(path, start, errors)) for _ in range(openers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with sqlite3.connect(path) as database:
            assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- killed between a create's answer and its commit ----------------------------------------

#: A child that runs the CLI and kills itself (SIGKILL) the moment the first create has
#: answered, before the answer is recorded: the window a resume must survive without
#: sending that cell twice.
_KILLED_AFTER_CREATE = """
import os, signal, sys
from replicate_home.comparisons import _store
from replicate_home.cli import main

async def killed(self, run_id, cell, prediction_id, **options):
    os.kill(os.getpid(), signal.SIGKILL)

_store.ResultsStore.record_sent = killed
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("service", ["home", "api"])
async def test_killed_between_a_creates_answer_and_its_commit_it_is_never_sent_twice(
    tmp_path: Path, anyio_backend: str, service: str
) -> None:
    emulator = Emulator(Scenario(duration=0.3))
    models = ["gemma-2b", "sd-3"] if service == "home" else [LLAMA, FLUX]
    prompts = ["one", "two"]
    cells = len(prompts) * len(models)
    db = tmp_path / "runs.db"
    env = {**os.environ, "REPLICATE_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    async with emulator.serve():
        options = ["--service", service, "--base-url", emulator.base_url]
        options += ["--backend", anyio_backend, "--db", str(db), "--json"]
        argv = ["compare", *options, "--limit", "1"]
        for prompt in prompts:
            argv += ["-p", prompt]
        for model in models:
            argv += ["-m", model]
        killed = await anyio.run_process(
            [sys.executable, "-c", _KILLED_AFTER_CREATE, *argv], env=env, check=False
        )
        assert killed.returncode == -signal.SIGKILL
        assert emulator.stats().creates == 1
        with sqlite3.connect(db) as database:
            (run_id,) = database.execute("SELECT id FROM runs").fetchone()
            states = [row[0] for row in database.execute("SELECT state FROM cells ORDER BY cell")]
        assert sorted(states) == ["pending"] * (cells - 1) + ["sending"]
        resume = [sys.executable, "-m", "replicate_home", "compare", *options, "--resume", run_id]
        done = await anyio.run_process(resume, env=env, check=False)
        results = json.loads(done.stdout)
        if service == "api":
            # Found in the account's predictions and followed: created once.
            assert done.returncode == 0
            assert [r["status"] for r in results] == ["succeeded"] * cells
            assert emulator.stats().creates == cells
            return
        # The homepage service can't list: that cell is in doubt, not sent again.
        assert done.returncode == 1
        statuses = [r["status"] for r in results]
        assert sorted(statuses) == [IN_DOUBT] + ["succeeded"] * (cells - 1)
        assert results[states.index("sending")]["status"] == IN_DOUBT
        assert emulator.stats().creates == cells
        again = await anyio.run_process([*resume, "--resend-in-doubt"], env=env, check=False)
    assert again.returncode == 0
    assert [r["status"] for r in json.loads(again.stdout)] == ["succeeded"] * cells
    assert emulator.stats().creates == cells + 1  # only when asked


@pytest.mark.slow
def test_cli_prompt_set_with_deployments_and_a_webhook(
    emulator_in_subprocess: Callable[..., AbstractContextManager[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with emulator_in_subprocess("--duration", "0.2", "--deploy", f"acme/chat={LLAMA}") as url:
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        monkeypatch.setenv("REPLICATE_BASE_URL", url)
        db = ["--db", str(tmp_path / "runs.db")]
        hook = ["--webhook", "http://127.0.0.1:9/hook", "--webhook-events", "completed"]
        argv = ["compare", "--json", *db, *hook, "--name", "mixed", "-p", "a", "-p", "b"]
        assert main([*argv, "-m", LLAMA, "-d", "acme/chat"]) == 0
        cells = json.loads(capsys.readouterr().out)
        assert [(c["prompt"], c["model"], c["status"]) for c in cells] == [
            ("a", LLAMA, "succeeded"),
            ("a", "deployment:acme/chat", "succeeded"),
            ("b", LLAMA, "succeeded"),
            ("b", "deployment:acme/chat", "succeeded"),
        ]
        assert main(["compare", *db, "--resume", "mixed", *hook]) == 2
        assert "webhook recorded with the run" in capsys.readouterr().err
        assert main(["compare", *db, "--resend-in-doubt", "-p", "a", "-m", LLAMA]) == 2
        assert "--resend-in-doubt goes with --resume" in capsys.readouterr().err
        assert main(["compare", "--json", *db, "--resume", "mixed"]) == 0  # nothing left
    with sqlite3.connect(tmp_path / "runs.db") as database:
        (settings,) = database.execute("SELECT settings FROM runs").fetchone()
    assert json.loads(settings)["webhook_events_filter"] == ["completed"]
