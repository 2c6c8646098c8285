"""The results store: one SQLite database holds every run, cell by cell.

Standard-library ``sqlite3`` in WAL mode, one connection used from a worker thread at a
time (``anyio.to_thread.run_sync`` behind a one-slot limiter), so the event loop never
waits on the disk and the database sees one writer. Every write is committed before its
caller goes on (writes queued at once are committed together, each in a savepoint of
its own: :mod:`._commits`): a process killed at any point loses nothing already written. A cell is
marked ``sending`` right before its create leaves, its prediction id is written as soon
as the create answers, and its result when it ends.

A prediction id is *claimed* by at most one cell in the whole store (the ``claims``
table's primary key, checked by SQLite itself in the transaction that records it), so
two runs, or two processes sharing the file, never record one prediction twice.

A cell's output files are recorded with its end, then kept in the archive beside the
database (:attr:`ResultsStore.archive`; the ``files`` table, :mod:`._file_store`).

The database carries a schema version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`);
an older one is brought up to date step by step when opened (:mod:`._schema`), a newer
one is refused with a clear :class:`ValueError` rather than misread.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._exceptions import RunNotFound
from ._commits import Write, WriteQueue, commit_writes
from ._file_store import FileTables, file_rows
from ._records import (
    END_STATUSES,
    IN_DOUBT,
    AttemptRecord,
    CellRecord,
    ClockSample,
    RunRecord,
    cell_from_row,
    images_from_json,
    iso_text,
    moment_from,
    run_from_row,
    utc_now,
)
from ._schema import SCHEMA, SCHEMA_VERSION, migrate
from ._score_store import ScoreTables

__all__ = [
    "END_STATUSES",
    "IN_DOUBT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "AttemptRecord",
    "CellRecord",
    "ClockSample",
    "ResultsStore",
    "RunRecord",
]

_T = TypeVar("_T")

#: How long the database waits for another connection's lock: SQLite's busy timeout,
#: and the switch to WAL, which SQLite does not wait for itself.
_BUSY_WAIT = 5.0


def _enter_wal(connection: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting (up to :data:`_BUSY_WAIT`) while another
    process does the same: SQLite answers that switch "database is locked" at once,
    without its busy handler, so two processes opening a new file together would
    otherwise see one of them fail."""
    deadline = time.monotonic() + _BUSY_WAIT
    pause = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        else:
            return
        time.sleep(pause)  # the database's worker thread, not the event loop
        pause = min(pause * 2, 0.1)


class _Database:
    """The synchronous side: runs in a worker thread, one call at a time."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(
            path, timeout=_BUSY_WAIT, check_same_thread=False, isolation_level=None
        )
        self._connection.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            try:
                _enter_wal(self._connection)
                # In WAL mode NORMAL survives a process crash (kill -9); only a power loss
                # may lose the last commits.
                self._connection.execute("PRAGMA synchronous=NORMAL")
                migrate(self._connection, path)
            except BaseException:
                self._connection.close()
                raise

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.transaction(lambda connection: connection.executemany(sql, rows))

    def commit(self, writes: list[Write[Any]]) -> None:
        """Several callers' writes in one transaction (see :mod:`._commits`)."""
        with self._lock:
            commit_writes(self._connection, writes)

    def transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(connection)`` in one ``BEGIN IMMEDIATE`` transaction (the write lock
        taken first: what it reads stays true until it commits)."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
            return result


class ResultsStore(ScoreTables, FileTables):
    """A results database (SQLite), opened with ``async with ResultsStore.open(path)``.

    Every method runs off the event loop. Query the file with any SQLite tool too: see
    :data:`SCHEMA`. Output files are kept in :attr:`archive`, a directory beside it
    (:meth:`files` says where each is).
    """

    def __init__(self, database: _Database, path: Path) -> None:
        self._database = database
        self._limiter = anyio.CapacityLimiter(1)
        self._writes = WriteQueue(self._limiter, database.commit)
        #: The database file.
        self.path = path
        #: The directory that keeps the runs' output files, beside the database
        #: (``results.db`` keeps them in ``results.db-archive/``), each named by the
        #: SHA-256 of its bytes.
        self.archive = path.with_name(path.name + "-archive")

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncIterator[ResultsStore]:
        """Open (creating if needed) the database at ``path``, bringing an older one up
        to the current schema."""
        where = Path(path)
        database = await anyio.to_thread.run_sync(_Database, where)
        try:
            yield cls(database, where)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(database.close)

    async def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await anyio.to_thread.run_sync(
            self._database.execute, sql, parameters, limiter=self._limiter
        )

    async def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(connection)`` committed, with the other writes queued at the moment
        (one hop, one transaction, a savepoint each: :mod:`._commits`)."""
        return await self._writes.submit(work)

    # -- runs ---------------------------------------------------------------------

    async def create_run(
        self,
        *,
        service: str,
        models: Sequence[str],
        cells: Sequence[tuple[int, int, str, str | None, Mapping[str, Any]]],
        settings: Mapping[str, Any],
        run_id: str | None = None,
        origin: str | None = None,
        emulator: bool | None = None,
    ) -> RunRecord:
        """Record a new run and its cells (``(prompt_index, model_index, model, prompt,
        input)``, in cell order), every cell ``pending``, bound to ``service`` at
        ``origin`` (``emulator``: an emulator started for the run). Without ``origin``
        and ``emulator`` it is bound by its first resume."""
        created = utc_now()
        name = run_id or f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a run's name must be a non-empty string")
        rows = [
            (name, number, p, m, model, prompt, json.dumps(dict(values), sort_keys=True))
            for number, (p, m, model, prompt, values) in enumerate(cells)
        ]

        def insert(connection: sqlite3.Connection) -> bool:
            if connection.execute("SELECT 1 FROM runs WHERE id = ?", (name,)).fetchall():
                return False
            connection.execute(
                "INSERT INTO runs (id, created_at, service, models, settings, origin, emulator)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    name,
                    iso_text(created),
                    service,
                    json.dumps(list(models)),
                    json.dumps(dict(settings)),
                    origin,
                    None if emulator is None else int(emulator),
                ),
            )
            connection.executemany(
                "INSERT INTO cells (run_id, cell, prompt_index, model_index, model, prompt,"
                " input, state) VALUES (?,?,?,?,?,?,?,'pending')",
                rows,
            )
            return True

        if not await self._transaction(insert):
            raise ValueError(f"a run named {name!r} already exists: resume it, or pick another")
        return RunRecord(name, created, service, tuple(models), dict(settings), origin, emulator)

    async def bind_run(self, run_id: str, *, origin: str | None, emulator: bool) -> None:
        """Bind a run recorded before runs were bound to the service it resumes on."""
        await self._run(
            "UPDATE runs SET origin = ?, emulator = ? WHERE id = ? AND emulator IS NULL",
            (origin, int(emulator), run_id),
        )

    async def run(self, run_id: str) -> RunRecord:
        """The run named ``run_id``; :class:`~replicate_home.RunNotFound` (a
        ``KeyError``) if there is none."""
        rows = await self._run("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RunNotFound(run_id)
        return run_from_row(rows[0])

    async def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        rows = await self._run("SELECT * FROM runs ORDER BY created_at, id")
        return [run_from_row(row) for row in rows]

    async def cells(self, run_id: str) -> list[CellRecord]:
        """The run's cells, in cell order (prompt-major), each as its latest attempt."""
        rows = await self._run("SELECT * FROM cells WHERE run_id = ? ORDER BY cell", (run_id,))
        return [cell_from_row(row) for row in rows]

    async def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The run's earlier attempts (every cell's but its latest), by cell and attempt."""
        rows = await self._run(
            "SELECT * FROM attempts WHERE run_id = ? ORDER BY cell, attempt", (run_id,)
        )
        return [
            AttemptRecord(
                row["run_id"],
                row["cell"],
                row["attempt"],
                row["prediction_id"],
                row["status"],
                row["output_text"],
                images_from_json(row["images"]),
                row["error"],
                row["error_type"],
                row["latency"],
                row["predict_time"],
                row["sent_at"],
                row["ended_at"],
            )
            for row in rows
        ]

    # -- what a resume needs to know of the whole store ------------------------------

    async def open_sends(self) -> list[CellRecord]:
        """Cells of every run in the store marked ``sending`` with no answer recorded."""
        rows = await self._run(
            "SELECT * FROM cells WHERE state = 'sending' AND prediction_id IS NULL"
            " AND sending_at IS NOT NULL"
        )
        return [cell_from_row(row) for row in rows]

    async def claimed(self, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` some cell of the store has claimed."""
        return await self._ids_in("claims", prediction_ids)

    async def clock_samples(self, run_ids: Sequence[str], limit: int = 200) -> list[ClockSample]:
        """The latest recorded creates of these runs that show both clocks."""
        marks = ",".join("?" * len(run_ids))
        rows = await self._run(
            "SELECT sending_at, answered_at, created_at FROM claims"
            f" WHERE found = 0 AND run_id IN ({marks}) AND sending_at IS NOT NULL"
            " AND answered_at IS NOT NULL AND created_at IS NOT NULL"
            " ORDER BY rowid DESC LIMIT ?",
            (*run_ids, limit),
        )
        samples = []
        for row in rows:
            sending, answered, created = (
                moment_from(row["sending_at"]),
                moment_from(row["answered_at"]),
                moment_from(row["created_at"]),
            )
            if sending is not None and answered is not None and created is not None:
                samples.append(ClockSample(sending, answered, created))
        return samples

    # -- cells --------------------------------------------------------------------

    async def record_sending(self, run_id: str, cell: int, *, deadline: float) -> datetime:
        """The cell's create is about to leave, and may be answered for ``deadline``
        seconds (a cell marked so and never answered may have been created: a resume
        looks for it in that window); return the mark's time."""
        now = utc_now()
        until = datetime.fromtimestamp(now.timestamp() + deadline, timezone.utc)
        values = (iso_text(now), iso_text(until), run_id, cell, IN_DOUBT)

        def mark(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE cells SET state = 'sending', status = NULL, error = NULL,"
                " error_type = NULL, ended_at = NULL, sending_at = ?, sending_until = ?"
                " WHERE run_id = ? AND cell = ? AND (state != 'done' OR status = ?)",
                values,
            )

        await self._transaction(mark)
        return now

    async def record_sent(
        self,
        run_id: str,
        cell: int,
        prediction_id: str,
        *,
        created_at: datetime | None = None,
        found: bool = False,
    ) -> bool:
        """The cell's create answered with ``prediction_id`` (``found``: the prediction was
        found in the service's listing instead); the service's ``created_at`` when it
        said. The cell claims the id: ``False`` (nothing recorded) if another cell of the
        store holds it, unless this is the create's own answer and the other only found
        it in the listing: the answer is proof, the listing a match, so the id moves
        here and the other cell is marked ``sending`` again, to be looked for anew."""
        answered = utc_now()
        sent_at = created_at if found else answered

        def claim(connection: sqlite3.Connection) -> bool:
            rows = connection.execute(
                "SELECT state, attempt, sending_at FROM cells WHERE run_id = ? AND cell = ?",
                (run_id, cell),
            ).fetchall()
            if not rows or rows[0]["state"] == "done":
                return False
            attempt, sending_at = rows[0]["attempt"], rows[0]["sending_at"]
            holder = connection.execute(
                "SELECT run_id, cell, attempt, found FROM claims WHERE prediction_id = ?",
                (prediction_id,),
            ).fetchall()
            if holder:
                other = holder[0]
                if (other["run_id"], other["cell"], other["attempt"]) == (run_id, cell, attempt):
                    pass  # this cell's already
                elif found or not other["found"]:
                    return False
                else:
                    connection.execute(
                        "UPDATE cells SET state = 'sending', prediction_id = NULL,"
                        " sent_at = NULL, created_at = NULL WHERE run_id = ? AND cell = ?"
                        " AND prediction_id = ? AND state != 'done'",
                        (other["run_id"], other["cell"], prediction_id),
                    )
                    connection.execute(
                        "DELETE FROM claims WHERE prediction_id = ?", (prediction_id,)
                    )
                    holder = []
            if not holder:
                connection.execute(
                    "INSERT INTO claims (prediction_id, run_id, cell, attempt, found,"
                    " sending_at, answered_at, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        prediction_id,
                        run_id,
                        cell,
                        attempt,
                        int(found),
                        sending_at,
                        None if found else iso_text(answered),
                        iso_text(created_at),
                    ),
                )
            connection.execute(
                "UPDATE cells SET state = 'running', prediction_id = ?, sent_at = ?,"
                " created_at = ? WHERE run_id = ? AND cell = ?",
                (prediction_id, iso_text(sent_at), iso_text(created_at), run_id, cell),
            )
            return True

        return await self._transaction(claim)

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
        created_at: datetime | None = None,
        completed_at: datetime | None = None,
        files: Sequence[str] = (),
        keep_files: bool = True,
    ) -> None:
        """The cell ended (``status`` is its outcome). The end of a prediction another
        cell holds (its claim moved to the cell that created it) is not recorded. The
        output ``files`` (URLs) are recorded in the same transaction, ``pending`` (to be
        kept in the archive) or, without ``keep_files``, ``not kept``."""
        values = (
            status,
            prediction_id,
            output_text,
            json.dumps(list(images)),
            error,
            error_type,
            latency,
            predict_time,
            iso_text(utc_now()),
            iso_text(created_at),
            iso_text(completed_at),
            run_id,
            cell,
            prediction_id,
            prediction_id,
        )

        def end(connection: sqlite3.Connection) -> None:
            ended = connection.execute(
                "UPDATE cells SET state = 'done', status = ?,"
                " prediction_id = COALESCE(?, prediction_id), output_text = ?, images = ?,"
                " error = ?, error_type = ?, latency = ?, predict_time = ?, ended_at = ?,"
                " created_at = COALESCE(?, created_at), completed_at = ?"
                " WHERE run_id = ? AND cell = ? AND (? IS NULL OR NOT EXISTS (SELECT 1 FROM"
                " claims WHERE prediction_id = ? AND (run_id != cells.run_id"
                " OR cell != cells.cell)))",
                values,
            )
            if ended.rowcount:
                connection.execute(
                    "DELETE FROM files WHERE run_id = ? AND cell = ? AND attempt ="
                    " (SELECT attempt FROM cells WHERE run_id = ? AND cell = ?)",
                    (run_id, cell, run_id, cell),
                )
                file_rows(connection, run_id, cell, files, keep_files)

        await self._transaction(end)

    async def record_interrupted(self, run_id: str, cells: Sequence[int]) -> None:
        """The run was left while these cells ran: their predictions were cancelled."""
        await anyio.to_thread.run_sync(
            self._database.execute_many,
            "UPDATE cells SET state = 'interrupted' WHERE run_id = ? AND cell = ? "
            "AND state != 'done'",
            [(run_id, cell) for cell in cells],
            limiter=self._limiter,
        )

    async def retry(self, run_id: str, statuses: Sequence[str]) -> list[int]:
        """Open a new attempt of every cell of the run that ended with one of
        ``statuses``: its latest attempt is kept in ``attempts``, the cell is ``pending``
        again (sent by the next resume). Return those cells."""
        wanted = list(dict.fromkeys(statuses))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))

        def reopen(connection: sqlite3.Connection) -> list[int]:
            rows = connection.execute(
                "SELECT cell FROM cells WHERE run_id = ? AND state = 'done'"
                f" AND status IN ({marks}) ORDER BY cell",
                (run_id, *wanted),
            ).fetchall()
            cells = [row["cell"] for row in rows]
            for cell in cells:
                connection.execute(
                    "INSERT INTO attempts (run_id, cell, attempt, prediction_id, status,"
                    " output_text, images, error, error_type, latency, predict_time, sent_at,"
                    " ended_at) SELECT run_id, cell, attempt, prediction_id, status,"
                    " output_text, images, error, error_type, latency, predict_time, sent_at,"
                    " ended_at FROM cells WHERE run_id = ? AND cell = ?",
                    (run_id, cell),
                )
                connection.execute(
                    "UPDATE cells SET state = 'pending', attempt = attempt + 1,"
                    " prediction_id = NULL, status = NULL, output_text = NULL, images = NULL,"
                    " error = NULL, error_type = NULL, latency = NULL, predict_time = NULL,"
                    " sent_at = NULL, ended_at = NULL, sending_at = NULL,"
                    " sending_until = NULL, created_at = NULL, completed_at = NULL"
                    " WHERE run_id = ? AND cell = ?",
                    (run_id, cell),
                )
            return cells

        return await self._transaction(reopen)
