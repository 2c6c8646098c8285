"""Where a run stands: its per-model summaries (with assertion and judge scores), the
people's leaderboard from pairwise votes, and thumbs per model, read from the store.

The one place that puts the stored scores together for a reader (the viewer's
leaderboard page, the HTML report): the numbers themselves come from the pure modules,
:func:`~._summary.summarize` and :func:`~._ranking.leaderboard`; nothing is computed a
second way here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._ranking import Leaderboard, leaderboard
from ._store import ResultsStore, RunRecord
from ._summary import ModelSummary, summarize

__all__ = ["Standings", "Thumbs", "standings"]


@dataclass(frozen=True)
class Thumbs:
    """A model's thumbs up and down from people, over all its cells."""

    model: str
    up: int
    down: int


@dataclass(frozen=True)
class Standings:
    """A run's summaries (one per model, in column order), its leaderboard and thumbs."""

    run: RunRecord
    summaries: tuple[ModelSummary, ...]
    board: Leaderboard
    thumbs: tuple[Thumbs, ...]

    @property
    def judged(self) -> bool:
        """Whether any output of the run was judged."""
        return any(summary.judged for summary in self.summaries)

    @property
    def checked(self) -> bool:
        """Whether any output of the run was checked by an assertion."""
        return any(summary.checked for summary in self.summaries)

    def summary(self, model: str) -> ModelSummary | None:
        """The summary of ``model``, if the run has it."""
        return next((item for item in self.summaries if item.model == model), None)


async def standings(
    store: ResultsStore, run_id: str, *, rounds: int = 200, seed: int = 0
) -> Standings:
    """The standings of run ``run_id`` (``KeyError`` if there is none); the leaderboard's
    intervals from ``rounds`` bootstrap resamples drawn with ``seed``."""
    run = await store.run(run_id)
    cells = await store.cells(run_id)
    passed: dict[int, bool] = {}
    for check in await store.checks(run_id):
        passed[check.cell] = passed.get(check.cell, True) and check.outcome == "passed"
    verdicts = [item for item in await store.judgements(run_id) if item.state == "done"]
    summaries = summarize(cells, checks=passed, scores=verdicts, models=run.models)
    votes = [record.vote for record in await store.votes(run_id)]
    board = leaderboard(votes, run.models, rounds=rounds, seed=seed)
    model_of = {cell.cell: cell.model for cell in cells}
    counts = {model: [0, 0] for model in run.models}
    for thumb in await store.thumbs(run_id):
        model = model_of.get(thumb.cell)
        if model is not None:
            counts.setdefault(model, [0, 0])[0 if thumb.value > 0 else 1] += 1
    thumbs = tuple(Thumbs(model, up, down) for model, (up, down) in counts.items())
    return Standings(run, tuple(summaries), board, thumbs)
