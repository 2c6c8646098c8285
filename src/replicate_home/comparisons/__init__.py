"""Comparisons at scale: a prompt set across many models, recorded cell by cell in a
results database (SQLite), resumable without a duplicate prediction, with an HTML report.

``run_comparison(client, store, prompts, models)`` runs every prompt on every model;
``resume_comparison(client, store, run_id)`` finishes an interrupted run;
``write_report(store, run_id, path)`` (the ``report`` extra: Jinja2) writes a
self-contained page with the outputs side by side, from the run's archive: every output
file is kept beside the database as its cell ends (``store.files(run_id)`` says where,
or why not; ``fetch_files`` tries again for those not kept).

Scoring: :class:`Assertion` checks on each output, :class:`Judge` models that score
outputs by a rubric (:func:`parse_score` reads their answers), :func:`summarize` for
per-model numbers, and :func:`leaderboard` for Bradley-Terry ratings from pairwise
:class:`Vote` values.
"""

from ._archive import DEFAULT_MAX_FILE_BYTES, fetch_files
from ._assertions import Assertion, AssertionResult, CellChecks
from ._file_store import FILE_STATES, ArchivedFile
from ._judging import Judge, Verdict, judge_prompt, parse_score
from ._prompts import PromptRow, load_prompts, parse_prompts
from ._ranking import Leaderboard, PairRecord, Rating, Vote, leaderboard
from ._report import write_report
from ._runner import RunProgress, resume_comparison, run_comparison
from ._score_store import CheckRecord, JudgementRecord, ThumbRecord, VoteRecord
from ._store import (
    END_STATUSES,
    IN_DOUBT,
    SCHEMA,
    SCHEMA_VERSION,
    AttemptRecord,
    CellRecord,
    ResultsStore,
    RunRecord,
)
from ._summary import ErrorGroup, ModelSummary, summarize, threshold_failures

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "END_STATUSES",
    "FILE_STATES",
    "IN_DOUBT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ArchivedFile",
    "Assertion",
    "AssertionResult",
    "AttemptRecord",
    "CellChecks",
    "CellRecord",
    "CheckRecord",
    "ErrorGroup",
    "Judge",
    "JudgementRecord",
    "Leaderboard",
    "ModelSummary",
    "PairRecord",
    "PromptRow",
    "Rating",
    "ResultsStore",
    "RunProgress",
    "RunRecord",
    "ThumbRecord",
    "Verdict",
    "Vote",
    "VoteRecord",
    "fetch_files",
    "judge_prompt",
    "leaderboard",
    "load_prompts",
    "parse_prompts",
    "parse_score",
    "resume_comparison",
    "run_comparison",
    "summarize",
    "threshold_failures",
    "write_report",
]
