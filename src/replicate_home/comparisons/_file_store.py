"""The results database's ``files`` table: each output file of a cell's attempt, where
its bytes are kept in the archive beside the database or why they are not, as methods
of :class:`~._store.ResultsStore` (a mixin).

A cell's files are written ``pending`` in the transaction that records its end (see
:meth:`~._store.ResultsStore.record_end`), so a process stopped before they are kept
leaves them to be kept by the next resume: a file is never silently missing. The
downloads themselves are :mod:`._archive`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["FILE_STATES", "NOT_KEPT", "ArchivedFile", "FileTables", "file_rows"]

#: The states of an output file: ``pending`` (recorded when its cell ended, not in the
#: archive yet), ``kept`` (in the archive), ``failed`` (its download failed: ``error``
#: says why; tried again by a resume and by ``report --fetch``), ``too large`` (over the
#: run's size cap) and ``not kept`` (the run keeps no files).
FILE_STATES = ("pending", "kept", "failed", "too large", "not kept")

#: Why a file of a run that keeps none is not kept.
NOT_KEPT = "the run keeps no output files (keep_files=False)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ArchivedFile:
    """One output file of a cell, as the archive holds it.

    ``state`` is one of :data:`FILE_STATES`. A ``kept`` file's bytes are at ``path`` (in
    the archive beside the database, named by their SHA-256), ``content_type`` and
    ``size`` describe them; any other file has ``path`` ``None`` and ``error`` says why.
    ``url`` is where the service served it (a kept ``data:`` URI keeps only its header:
    its bytes are in the archive). ``attempt`` is the cell's attempt that made it."""

    run_id: str
    cell: int
    attempt: int
    position: int
    url: str
    state: str
    path: Path | None = None
    sha256: str | None = None
    content_type: str | None = None
    size: int | None = None
    error: str | None = None


def file_rows(
    connection: sqlite3.Connection, run_id: str, cell: int, urls: Sequence[str], keep: bool
) -> None:
    """Record the output ``urls`` of the cell's current attempt (in the caller's
    transaction), ``pending`` or, without ``keep``, ``not kept``."""
    state, reason = ("pending", None) if keep else ("not kept", NOT_KEPT)
    now = _now()
    connection.executemany(
        "INSERT OR REPLACE INTO files (run_id, cell, attempt, position, url, state, error,"
        " updated_at) SELECT run_id, cell, attempt, ?, ?, ?, ?, ? FROM cells"
        " WHERE run_id = ? AND cell = ?",
        [(position, url, state, reason, now, run_id, cell) for position, url in enumerate(urls)],
    )


class FileTables:
    """The output-file methods of the results store."""

    #: The directory that keeps the runs' output files (the store's own).
    archive: Path

    async def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError  # the store's own

    async def files(self, run_id: str, cell: int | None = None) -> list[ArchivedFile]:
        """The output files of run ``run_id`` (of one ``cell`` if given), each cell's
        latest attempt, in cell order then output order: where each is kept, or why it
        is not."""
        sql = (
            "SELECT files.* FROM files JOIN cells ON cells.run_id = files.run_id"
            " AND cells.cell = files.cell AND cells.attempt = files.attempt"
            " WHERE files.run_id = ?"
        )
        parameters: list[Any] = [run_id]
        if cell is not None:
            sql += " AND files.cell = ?"
            parameters.append(cell)
        rows = await self._run(sql + " ORDER BY files.cell, files.position", parameters)
        return [self._file(row) for row in rows]

    def _file(self, row: sqlite3.Row) -> ArchivedFile:
        name = row["name"]
        return ArchivedFile(
            run_id=row["run_id"],
            cell=row["cell"],
            attempt=row["attempt"],
            position=row["position"],
            url=row["url"],
            state=row["state"],
            path=self.archive / name if row["state"] == "kept" and name else None,
            sha256=row["sha256"],
            content_type=row["content_type"],
            size=row["size"],
            error=row["error"],
        )

    async def record_file_kept(
        self, file: ArchivedFile, *, name: str, sha256: str, content_type: str, size: int
    ) -> None:
        """``file``'s bytes are in the archive as ``name`` (relative to it). A ``data:``
        URI keeps only its header in the database from now on."""
        await self._run(
            "UPDATE files SET state = 'kept', name = ?, sha256 = ?, content_type = ?,"
            " size = ?, error = NULL, updated_at = ?,"
            " url = CASE WHEN lower(substr(url, 1, 5)) = 'data:'"
            " THEN substr(url, 1, instr(url, ',')) ELSE url END"
            " WHERE run_id = ? AND cell = ? AND attempt = ? AND position = ?",
            (name, sha256, content_type, size, _now(), *_key(file)),
        )

    async def record_file_problem(self, file: ArchivedFile, *, state: str, error: str) -> None:
        """``file`` could not be kept: ``state`` (``failed`` or ``too large``) and why."""
        if state not in ("failed", "too large"):
            raise ValueError(f"not a state for a file that could not be kept: {state!r}")
        await self._run(
            "UPDATE files SET state = ?, error = ?, updated_at = ?"
            " WHERE run_id = ? AND cell = ? AND attempt = ? AND position = ?"
            " AND state != 'kept'",
            (state, error, _now(), *_key(file)),
        )


def _key(file: ArchivedFile) -> tuple[str, int, int, int]:
    return (file.run_id, file.cell, file.attempt, file.position)
