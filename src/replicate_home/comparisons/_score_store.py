"""The results database's scoring tables: assertion results, judge predictions, pairwise
votes and per-cell thumbs, as methods of :class:`~._store.ResultsStore` (a mixin).

Judge predictions follow the cells' exactly-once rules: a judgement is marked
``sending`` right before its create leaves, its prediction id is committed as soon as the
create answers, and its end (the judge's raw answer beside the parsed score) when it
ends; a run left while judges ran marks them ``interrupted`` (their predictions were
cancelled) and a resume sends those again, follows the ones with an id, and leaves one
caught between create and answer "in doubt" unless told to send it again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from ._assertions import CellChecks, Outcome
from ._ranking import Vote, VoteResult

_T = TypeVar("_T")

__all__ = [
    "CheckRecord",
    "JudgementRecord",
    "ScoreTables",
    "ThumbRecord",
    "VoteRecord",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class CheckRecord:
    """One assertion's result on one cell, as stored."""

    run_id: str
    cell: int
    position: int
    name: str
    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class JudgementRecord:
    """One judge's verdict on one cell: ``score`` ``None`` is unscored (``reason``
    says why; ``answer`` is the judge's raw answer, ``error`` its failure)."""

    run_id: str
    cell: int
    judge: int
    model: str
    state: str
    attempt: int = 1
    prediction_id: str | None = None
    status: str | None = None
    answer: str | None = None
    score: float | None = None
    reason: str | None = None
    error: str | None = None
    ended_at: str | None = None


@dataclass(frozen=True)
class VoteRecord:
    """One stored pairwise vote: cell ``cell_a`` (``model_a``) against ``cell_b``."""

    id: int
    run_id: str
    prompt_index: int
    cell_a: int
    cell_b: int
    model_a: str
    model_b: str
    result: VoteResult
    voter: str
    voted_at: str

    @property
    def vote(self) -> Vote:
        return Vote(self.model_a, self.model_b, self.result)


@dataclass(frozen=True)
class ThumbRecord:
    """A person's thumbs up (``1``) or down (``-1``) on a cell."""

    run_id: str
    cell: int
    voter: str
    value: int
    rated_at: str


def _judgement(row: sqlite3.Row) -> JudgementRecord:
    return JudgementRecord(**{key: row[key] for key in row.keys()})  # noqa: SIM118


class ScoreTables:
    """The scoring methods of the results store."""

    async def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError  # the store's own

    async def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        raise NotImplementedError  # the store's own

    async def _cell_row(self, run_id: str, cell: int) -> sqlite3.Row:
        rows = await self._run(
            "SELECT cell, prompt_index, model FROM cells WHERE run_id = ? AND cell = ?",
            (run_id, cell),
        )
        if not rows:
            raise KeyError(f"run {run_id!r} has no cell {cell}")
        return rows[0]

    # -- assertions -----------------------------------------------------------------

    async def record_checks(self, run_id: str, checks: Sequence[CellChecks]) -> None:
        """Store the assertion results of these cells (replacing any earlier ones), in
        one transaction."""
        now = _now()
        rows = [
            (run_id, checked.cell, position, result.name, result.outcome, result.reason, now)
            for checked in checks
            for position, result in enumerate(checked.results)
        ]

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "DELETE FROM checks WHERE run_id = ? AND cell = ?",
                [(run_id, checked.cell) for checked in checks],
            )
            connection.executemany(
                "INSERT INTO checks (run_id, cell, position, name, outcome, reason, checked_at)"
                " VALUES (?,?,?,?,?,?,?)",
                rows,
            )

        await self._transaction(write)

    async def checks(self, run_id: str) -> list[CheckRecord]:
        """The run's assertion results, by cell then position."""
        rows = await self._run(
            "SELECT run_id, cell, position, name, outcome, reason FROM checks"
            " WHERE run_id = ? ORDER BY cell, position",
            (run_id,),
        )
        return [CheckRecord(*row) for row in rows]

    # -- judges ---------------------------------------------------------------------

    async def create_judgements(
        self, run_id: str, judge: int, model: str, cells: Sequence[tuple[int, int]]
    ) -> None:
        """Record ``pending`` judgements by the run's judge ``judge`` of these ``(cell,
        attempt)``: a cell it judged is left as it is, unless the cell has been sent
        again since (a retry): its new output is then judged afresh."""

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "INSERT OR IGNORE INTO judgements (run_id, cell, judge, attempt, model, state)"
                " VALUES (?,?,?,?,?,'pending')",
                [(run_id, cell, judge, attempt, model) for cell, attempt in cells],
            )
            connection.executemany(
                "UPDATE judgements SET attempt = ?, state = 'pending', prediction_id = NULL,"
                " status = NULL, answer = NULL, score = NULL, reason = NULL, error = NULL,"
                " ended_at = NULL WHERE run_id = ? AND cell = ? AND judge = ? AND attempt < ?",
                [(attempt, run_id, cell, judge, attempt) for cell, attempt in cells],
            )

        await self._transaction(write)

    async def judgements(self, run_id: str) -> list[JudgementRecord]:
        """The run's judgements of its cells' latest attempts, by cell then judge (those
        of an output a retry replaced stay in the table, unread)."""
        rows = await self._run(
            "SELECT j.run_id, j.cell, j.judge, j.model, j.state, j.attempt, j.prediction_id,"
            " j.status, j.answer, j.score, j.reason, j.error, j.ended_at FROM judgements j"
            " JOIN cells c ON c.run_id = j.run_id AND c.cell = j.cell AND c.attempt = j.attempt"
            " WHERE j.run_id = ? ORDER BY j.cell, j.judge",
            (run_id,),
        )
        return [_judgement(row) for row in rows]

    async def judged(self, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` a judgement of the store (any run) recorded."""
        return await self._ids_in("judgements", prediction_ids)

    async def _ids_in(self, table: str, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` the ``prediction_id`` column of ``table`` holds,
        asked 500 at a time (SQLite bounds a statement's parameters)."""
        found: set[str] = set()
        for start in range(0, len(prediction_ids), 500):
            chunk = list(prediction_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self._run(
                f"SELECT prediction_id FROM {table} WHERE prediction_id IN ({marks})", chunk
            )
            found.update(row["prediction_id"] for row in rows)
        return found

    async def record_judge_sending(self, run_id: str, cell: int, judge: int) -> None:
        """The judgement's create is about to leave."""
        await self._run(
            "UPDATE judgements SET state = 'sending', status = NULL, error = NULL,"
            " ended_at = NULL WHERE run_id = ? AND cell = ? AND judge = ? AND state != 'done'",
            (run_id, cell, judge),
        )

    async def record_judge_sent(
        self, run_id: str, cell: int, judge: int, prediction_id: str
    ) -> None:
        """The judgement's create answered with ``prediction_id``."""
        await self._run(
            "UPDATE judgements SET state = 'running', prediction_id = ?"
            " WHERE run_id = ? AND cell = ? AND judge = ? AND state != 'done'",
            (prediction_id, run_id, cell, judge),
        )

    async def record_judge_end(
        self,
        run_id: str,
        cell: int,
        judge: int,
        *,
        status: str,
        prediction_id: str | None = None,
        answer: str | None = None,
        score: float | None = None,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """The judgement ended: the raw ``answer`` beside the parsed ``score``."""
        await self._run(
            "UPDATE judgements SET state = 'done', status = ?,"
            " prediction_id = COALESCE(?, prediction_id), answer = ?, score = ?, reason = ?,"
            " error = ?, ended_at = ? WHERE run_id = ? AND cell = ? AND judge = ?",
            (status, prediction_id, answer, score, reason, error, _now(), run_id, cell, judge),
        )

    async def record_judges_interrupted(
        self, run_id: str, judgements: Sequence[tuple[int, int]]
    ) -> None:
        """The run was left while these ``(cell, judge)`` judgements ran."""
        for cell, judge in judgements:
            await self._run(
                "UPDATE judgements SET state = 'interrupted' WHERE run_id = ? AND cell = ?"
                " AND judge = ? AND state != 'done'",
                (run_id, cell, judge),
            )

    # -- people's votes -------------------------------------------------------------

    async def record_vote(
        self, run_id: str, cell_a: int, cell_b: int, result: VoteResult, voter: str
    ) -> VoteRecord:
        """Store a pairwise vote between two cells of one prompt on different models
        (``a``: ``cell_a`` won); a ``ValueError`` for any other pair, result or an
        empty voter name, ``KeyError`` for a cell the run does not have."""
        if result not in ("a", "b", "tie"):
            raise ValueError(f"a vote's result is 'a', 'b' or 'tie', not {result!r}")
        if not isinstance(voter, str) or not voter.strip():
            raise ValueError("a vote needs a voter name")
        first = await self._cell_row(run_id, cell_a)
        second = await self._cell_row(run_id, cell_b)
        if first["prompt_index"] != second["prompt_index"]:
            raise ValueError("a vote compares two outputs of the same prompt")
        if first["model"] == second["model"]:
            raise ValueError("a vote compares two different models")
        voted_at = _now()
        values = (
            run_id,
            first["prompt_index"],
            cell_a,
            cell_b,
            first["model"],
            second["model"],
            result,
            voter.strip(),
            voted_at,
        )

        def insert(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "INSERT INTO votes (run_id, prompt_index, cell_a, cell_b, model_a, model_b,"
                " result, voter, voted_at) VALUES (?,?,?,?,?,?,?,?,?)",
                values,
            )
            return cursor.lastrowid or 0

        return VoteRecord(await self._transaction(insert), *values)

    async def votes(self, run_id: str) -> list[VoteRecord]:
        """The run's votes, oldest first."""
        rows = await self._run(
            "SELECT id, run_id, prompt_index, cell_a, cell_b, model_a, model_b, result, voter,"
            " voted_at FROM votes WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [VoteRecord(*row) for row in rows]

    async def record_thumb(self, run_id: str, cell: int, voter: str, value: int) -> None:
        """A thumbs up (``1``) or down (``-1``) on a cell by ``voter`` (their earlier
        one replaced); ``0`` takes it back."""
        if value not in (-1, 0, 1):
            raise ValueError(f"a thumb is 1 (up), -1 (down) or 0 (none), not {value!r}")
        if not isinstance(voter, str) or not voter.strip():
            raise ValueError("a thumb needs a voter name")
        await self._cell_row(run_id, cell)
        if value == 0:
            await self._run(
                "DELETE FROM thumbs WHERE run_id = ? AND cell = ? AND voter = ?",
                (run_id, cell, voter.strip()),
            )
            return
        await self._run(
            "INSERT INTO thumbs (run_id, cell, voter, value, rated_at) VALUES (?,?,?,?,?)"
            " ON CONFLICT (run_id, cell, voter) DO UPDATE SET value = excluded.value,"
            " rated_at = excluded.rated_at",
            (run_id, cell, voter.strip(), value, _now()),
        )

    async def thumbs(self, run_id: str) -> list[ThumbRecord]:
        """The run's thumbs, by cell then voter."""
        rows = await self._run(
            "SELECT run_id, cell, voter, value, rated_at FROM thumbs WHERE run_id = ?"
            " ORDER BY cell, voter",
            (run_id,),
        )
        return [ThumbRecord(*row) for row in rows]

    async def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        """Replace the run's settings (its judges and assertions are among them)."""
        await self._run("UPDATE runs SET settings = ? WHERE id = ?", (json.dumps(settings), run_id))
