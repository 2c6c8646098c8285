"""A run's records as flat rows, for CSV and JSON Lines exports. Pure: records in, rows
out; :func:`write_rows` writes them to a text stream the caller opened.

Three tables: ``cells`` (one row a cell: its output, its assertion results and judge
verdicts, the votes it won, lost and tied, its thumbs), ``votes`` (one row a pairwise
vote) and ``models`` (one row a model: its :class:`~._summary.ModelSummary` beside its
Bradley-Terry rating from the votes, so the ranking and the judge scores sit side by
side). In CSV, lists and mappings are written as JSON text.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, TextIO

from ._ranking import leaderboard
from ._records import CellRecord
from ._score_store import CheckRecord, JudgementRecord, ThumbRecord, VoteRecord
from ._summary import summarize

__all__ = ["TABLES", "cell_rows", "model_rows", "vote_rows", "write_rows"]

#: The tables an export can write.
TABLES = ("cells", "votes", "models")


def cell_rows(
    cells: Sequence[CellRecord],
    checks: Iterable[CheckRecord] = (),
    judgements: Iterable[JudgementRecord] = (),
    votes: Iterable[VoteRecord] = (),
    thumbs: Iterable[ThumbRecord] = (),
) -> list[dict[str, Any]]:
    """One row a cell, in cell order."""
    by_cell_checks: dict[int, list[CheckRecord]] = {}
    for check in checks:
        by_cell_checks.setdefault(check.cell, []).append(check)
    by_cell_judgements: dict[int, list[JudgementRecord]] = {}
    for judgement in judgements:
        by_cell_judgements.setdefault(judgement.cell, []).append(judgement)
    record: dict[int, list[int]] = {}  # won, lost, tied
    for vote in votes:
        for number, side in ((vote.cell_a, "a"), (vote.cell_b, "b")):
            counts = record.setdefault(number, [0, 0, 0])
            counts[2 if vote.result == "tie" else 0 if vote.result == side else 1] += 1
    ups: dict[int, list[int]] = {}
    for thumb in thumbs:
        ups.setdefault(thumb.cell, [0, 0])[0 if thumb.value > 0 else 1] += 1
    rows = []
    for cell in cells:
        mine = by_cell_checks.get(cell.cell, [])
        verdicts = by_cell_judgements.get(cell.cell, [])
        scored = [j.score for j in verdicts if j.score is not None]
        won, lost, tied = record.get(cell.cell, [0, 0, 0])
        up, down = ups.get(cell.cell, [0, 0])
        rows.append(
            {
                "run_id": cell.run_id,
                "cell": cell.cell,
                "prompt_index": cell.prompt_index,
                "model": cell.model,
                "prompt": cell.prompt,
                "input": dict(cell.input),
                "status": cell.status,
                "output_text": cell.output_text,
                "images": list(cell.images),
                "error": cell.error,
                "latency": cell.latency,
                "predict_time": cell.predict_time,
                "attempt": cell.attempt,
                "prediction_id": cell.prediction_id,
                "checks_passed": sum(c.outcome == "passed" for c in mine),
                "checks_failed": sum(c.outcome == "failed" for c in mine),
                "checks_error": sum(c.outcome == "error" for c in mine),
                "checks": [
                    {"name": c.name, "outcome": c.outcome, "reason": c.reason} for c in mine
                ],
                "judge_mean": math.fsum(scored) / len(scored) if scored else None,
                "judge_unscored": len(verdicts) - len(scored),
                "judgements": [
                    {
                        "judge": j.model,
                        "status": j.status,
                        "score": j.score,
                        "answer": j.answer,
                        "reason": j.reason,
                        "error": j.error,
                    }
                    for j in verdicts
                ],
                "votes_won": won,
                "votes_lost": lost,
                "votes_tied": tied,
                "thumbs_up": up,
                "thumbs_down": down,
            }
        )
    return rows


def vote_rows(votes: Iterable[VoteRecord]) -> list[dict[str, Any]]:
    """One row a vote, oldest first."""
    return [asdict(vote) for vote in votes]


def model_rows(
    cells: Sequence[CellRecord],
    models: Sequence[str],
    checks: Iterable[CheckRecord] = (),
    judgements: Iterable[JudgementRecord] = (),
    votes: Iterable[VoteRecord] = (),
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row a model: its summary, and its Bradley-Terry rating with the 95 %
    interval (``None`` without votes)."""
    passed: dict[int, bool] = {}
    for check in checks:
        passed[check.cell] = passed.get(check.cell, True) and check.outcome == "passed"
    summaries = summarize(cells, checks=passed, scores=list(judgements), models=models)
    cast = [vote.vote for vote in votes]
    ratings = {r.model: r for r in leaderboard(cast, models, seed=seed).ratings} if cast else {}
    rows = []
    for summary in summaries:
        row = asdict(summary)
        rating = ratings.get(summary.model)
        row["rating"] = None if rating is None else round(rating.rating, 1)
        row["rating_low"] = None if rating is None else round(rating.low, 1)
        row["rating_high"] = None if rating is None else round(rating.high, 1)
        row["votes"] = 0 if rating is None else rating.votes
        rows.append(row)
    return rows


def _flat(value: object) -> object:
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


def write_rows(rows: Sequence[Mapping[str, Any]], stream: TextIO, format: str) -> None:
    """Write ``rows`` to ``stream`` as ``"csv"`` (a header row; nested values as JSON
    text) or ``"jsonl"`` (one JSON object a line)."""
    if format == "jsonl":
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if format != "csv":
        raise ValueError(f"format must be 'csv' or 'jsonl', not {format!r}")
    if not rows:
        return
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _flat(value) for key, value in row.items()})
