"""The results store: one SQLite database holds every run, cell by cell.

Standard-library ``sqlite3`` in WAL mode, one connection used from a worker thread at a
time (``anyio.to_thread.run_sync`` behind a one-slot limiter), so the event loop never
waits on the disk and the database sees one writer. Every write is its own committed
transaction: a process killed at any point loses nothing already written. A cell is
marked ``sending`` right before its create leaves, its prediction id is written as soon
as the create answers, and its result when it ends.

The database carries a schema version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`).
Version 1 added no column, only values: the state ``sending`` and the status ``in
doubt``; a database from before (version 0) opens as it is and is marked version 1. A
database written by a newer version of this library fails to open with a clear
:class:`ValueError` rather than being misread.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

__all__ = ["IN_DOUBT", "SCHEMA", "SCHEMA_VERSION", "CellRecord", "ResultsStore", "RunRecord"]

#: The version of :data:`SCHEMA` this library writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1

#: The status of a cell whose create may have been sent but whose answer was never
#: recorded, on a service with no listing to check (the homepage service).
IN_DOUBT = "in doubt"

#: The database's tables. ``cells.state`` is ``pending`` (never sent), ``sending`` (its
#: create may have left; no answer recorded), ``running`` (its create answered:
#: ``prediction_id`` is known), ``interrupted`` (the run was left and its prediction
#: cancelled: sent again on resume) or ``done`` (``status`` is its end). A model column
#: that is a deployment is named ``deployment:owner/name``; the run's ``settings`` hold
#: its webhook (``webhook``, ``webhook_events_filter``) when it has one.
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,   -- the run's name, e.g. 20261125-231500-3f9a
    created_at  TEXT NOT NULL,      -- ISO 8601, UTC
    service     TEXT NOT NULL,      -- 'home' or 'api'
    models      TEXT NOT NULL,      -- JSON list, in column order
    settings    TEXT NOT NULL       -- JSON: timeout, limit
);
CREATE TABLE IF NOT EXISTS cells (
    run_id        TEXT NOT NULL REFERENCES runs(id),
    cell          INTEGER NOT NULL, -- prompt_index * len(models) + model_index
    prompt_index  INTEGER NOT NULL,
    model_index   INTEGER NOT NULL,
    model         TEXT NOT NULL,
    prompt        TEXT,             -- the row's prompt text, if it has one
    input         TEXT NOT NULL,    -- JSON: the input sent (prompt included)
    state         TEXT NOT NULL,    -- pending | sending | running | interrupted | done
    prediction_id TEXT,
    status        TEXT,             -- succeeded, failed, canceled, aborted, timeout,
                                    -- not sent, in doubt, error (when state = 'done')
    output_text   TEXT,             -- a text model's output
    images        TEXT,             -- JSON list of image URLs
    error         TEXT,
    error_type    TEXT,             -- the exception's class name
    latency       REAL,             -- seconds from the create to the end
    predict_time  REAL,             -- the service's metrics.predict_time
    sent_at       TEXT,             -- ISO 8601, UTC: when the create answered
    ended_at      TEXT,
    PRIMARY KEY (run_id, cell)
);
CREATE INDEX IF NOT EXISTS cells_by_state ON cells (run_id, state);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRecord:
    """One run: its name, when it began, on which service, its models and settings."""

    id: str
    created_at: datetime
    service: str
    models: tuple[str, ...]
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class CellRecord:
    """One cell (a prompt on a model) as the database holds it."""

    run_id: str
    cell: int
    prompt_index: int
    model_index: int
    model: str
    prompt: str | None
    input: Mapping[str, Any]
    state: str
    prediction_id: str | None = None
    status: str | None = None
    output_text: str | None = None
    images: tuple[str, ...] = ()
    error: str | None = None
    error_type: str | None = None
    latency: float | None = None
    predict_time: float | None = None
    sent_at: str | None = None
    ended_at: str | None = None


def _cell(row: sqlite3.Row) -> CellRecord:
    return CellRecord(
        run_id=row["run_id"],
        cell=row["cell"],
        prompt_index=row["prompt_index"],
        model_index=row["model_index"],
        model=row["model"],
        prompt=row["prompt"],
        input=json.loads(row["input"]),
        state=row["state"],
        prediction_id=row["prediction_id"],
        status=row["status"],
        output_text=row["output_text"],
        images=tuple(json.loads(row["images"])) if row["images"] else (),
        error=row["error"],
        error_type=row["error_type"],
        latency=row["latency"],
        predict_time=row["predict_time"],
        sent_at=row["sent_at"],
        ended_at=row["ended_at"],
    )


class _Database:
    """The synchronous side: runs in a worker thread, one call at a time."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._connection.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a process crash (kill -9); only a power loss
            # may lose the last commits.
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA busy_timeout=5000")
            (version,) = self._connection.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                self._connection.close()
                raise ValueError(
                    f"{path} is a results database of schema version {version}, written by "
                    f"a newer replicate-home (this one reads up to {SCHEMA_VERSION}): upgrade"
                )
            self._connection.executescript(SCHEMA)
            if version < SCHEMA_VERSION:  # 0 -> 1: new values only, nothing to convert
                self._connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                self._connection.executemany(sql, rows)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")


class ResultsStore:
    """A results database (SQLite), opened with ``async with ResultsStore.open(path)``.

    Every method runs off the event loop. Query the file with any SQLite tool too: see
    :data:`SCHEMA`.
    """

    def __init__(self, database: _Database) -> None:
        self._database = database
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncIterator[ResultsStore]:
        """Open (creating if needed) the database at ``path``."""
        database = await anyio.to_thread.run_sync(_Database, Path(path))
        try:
            yield cls(database)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(database.close)

    async def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await anyio.to_thread.run_sync(
            self._database.execute, sql, parameters, limiter=self._limiter
        )

    # -- runs ---------------------------------------------------------------------

    async def create_run(
        self,
        *,
        service: str,
        models: Sequence[str],
        cells: Sequence[tuple[int, int, str, str | None, Mapping[str, Any]]],
        settings: Mapping[str, Any],
        run_id: str | None = None,
    ) -> RunRecord:
        """Record a new run and its cells (``(prompt_index, model_index, model, prompt,
        input)``, in cell order), every cell ``pending``."""
        created = datetime.now(timezone.utc)
        name = run_id or f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        rows = [
            (name, number, p, m, model, prompt, json.dumps(dict(values), sort_keys=True))
            for number, (p, m, model, prompt, values) in enumerate(cells)
        ]
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a run's name must be a non-empty string")
        if await self._run("SELECT 1 FROM runs WHERE id = ?", (name,)):
            raise ValueError(f"a run named {name!r} already exists: resume it, or pick another")
        await self._run(
            "INSERT INTO runs (id, created_at, service, models, settings) VALUES (?,?,?,?,?)",
            (
                name,
                created.isoformat(timespec="milliseconds"),
                service,
                json.dumps(list(models)),
                json.dumps(dict(settings)),
            ),
        )
        await anyio.to_thread.run_sync(
            self._database.execute_many,
            "INSERT INTO cells (run_id, cell, prompt_index, model_index, model, prompt, input,"
            " state) VALUES (?,?,?,?,?,?,?,'pending')",
            rows,
            limiter=self._limiter,
        )
        return RunRecord(name, created, service, tuple(models), dict(settings))

    async def run(self, run_id: str) -> RunRecord:
        """The run named ``run_id``; ``KeyError`` if there is none."""
        rows = await self._run("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(run_id)
        row = rows[0]
        return RunRecord(
            row["id"],
            datetime.fromisoformat(row["created_at"]),
            row["service"],
            tuple(json.loads(row["models"])),
            json.loads(row["settings"]),
        )

    async def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        rows = await self._run("SELECT id FROM runs ORDER BY created_at, id")
        return [await self.run(row["id"]) for row in rows]

    async def cells(self, run_id: str) -> list[CellRecord]:
        """The run's cells, in cell order (prompt-major)."""
        rows = await self._run("SELECT * FROM cells WHERE run_id = ? ORDER BY cell", (run_id,))
        return [_cell(row) for row in rows]

    # -- cells --------------------------------------------------------------------

    async def record_sending(self, run_id: str, cell: int) -> None:
        """The cell's create is about to leave (a cell marked so and never answered is
        "in doubt" when resumed: it may have been created)."""
        await self._run(
            "UPDATE cells SET state = 'sending', status = NULL, error = NULL,"
            " error_type = NULL, ended_at = NULL WHERE run_id = ? AND cell = ?"
            " AND (state != 'done' OR status = ?)",
            (run_id, cell, IN_DOUBT),
        )

    async def record_sent(self, run_id: str, cell: int, prediction_id: str) -> None:
        """The cell's create answered with ``prediction_id``."""
        await self._run(
            "UPDATE cells SET state = 'running', prediction_id = ?, sent_at = ? "
            "WHERE run_id = ? AND cell = ? AND state != 'done'",
            (prediction_id, _now(), run_id, cell),
        )

    async def record_end(
        self,
        run_id: str,
        cell: int,
        *,
        status: str,
        prediction_id: str | None = None,
        output_text: str | None = None,
        images: Sequence[str] = (),
        error: str | None = None,
        error_type: str | None = None,
        latency: float | None = None,
        predict_time: float | None = None,
    ) -> None:
        """The cell ended (``status`` is its outcome)."""
        await self._run(
            "UPDATE cells SET state = 'done', status = ?,"
            " prediction_id = COALESCE(?, prediction_id), output_text = ?, images = ?,"
            " error = ?, error_type = ?, latency = ?, predict_time = ?, ended_at = ?"
            " WHERE run_id = ? AND cell = ?",
            (
                status,
                prediction_id,
                output_text,
                json.dumps(list(images)),
                error,
                error_type,
                latency,
                predict_time,
                _now(),
                run_id,
                cell,
            ),
        )

    async def record_interrupted(self, run_id: str, cells: Sequence[int]) -> None:
        """The run was left while these cells ran: their predictions were cancelled."""
        await anyio.to_thread.run_sync(
            self._database.execute_many,
            "UPDATE cells SET state = 'interrupted' WHERE run_id = ? AND cell = ? "
            "AND state != 'done'",
            [(run_id, cell) for cell in cells],
            limiter=self._limiter,
        )
