"""Comparisons at scale: a prompt set across many models, recorded cell by cell in a
results database (SQLite), resumable without a duplicate prediction, with an HTML report.

``run_comparison(client, store, prompts, models)`` runs every prompt on every model;
``resume_comparison(client, store, run_id)`` finishes an interrupted run;
``write_report(store, run_id, path)`` (the ``report`` extra: Jinja2) writes a
self-contained page with the outputs side by side and the images saved beside it.
"""

from ._prompts import PromptRow, load_prompts, parse_prompts
from ._report import write_report
from ._runner import RunProgress, resume_comparison, run_comparison
from ._store import IN_DOUBT, SCHEMA, SCHEMA_VERSION, CellRecord, ResultsStore, RunRecord

__all__ = [
    "IN_DOUBT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "CellRecord",
    "PromptRow",
    "ResultsStore",
    "RunProgress",
    "RunRecord",
    "load_prompts",
    "parse_prompts",
    "resume_comparison",
    "run_comparison",
    "write_report",
]
