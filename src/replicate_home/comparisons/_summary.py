"""Per-model summaries of a run: how each model did, in numbers a person compares.

:func:`summarize` takes a run's cell records (as the results store gives them) and,
optionally, their assertion results and judge verdicts, and gives one
:class:`ModelSummary` per model: cells succeeded and failed, latency p50/p95,
``predict_time`` p50 and total, output length, assertion pass rate, judge mean and how
many outputs went unscored, and errors grouped by message. :func:`threshold_failures`
says which models fall below a CI threshold. Pure: records in, numbers out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CellLike",
    "ErrorGroup",
    "ModelSummary",
    "ScoreLike",
    "percentile",
    "summarize",
    "threshold_failures",
]


class CellLike(Protocol):
    """What a summary reads of a cell (the store's ``CellRecord`` has it all)."""

    @property
    def cell(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def status(self) -> str | None: ...
    @property
    def output_text(self) -> str | None: ...
    @property
    def images(self) -> Sequence[str]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def latency(self) -> float | None: ...
    @property
    def predict_time(self) -> float | None: ...


class ScoreLike(Protocol):
    """A judge's verdict on one cell: ``score`` ``None`` is unscored."""

    @property
    def cell(self) -> int: ...
    @property
    def score(self) -> float | None: ...


@dataclass(frozen=True)
class ErrorGroup:
    """One error message and how many of the model's cells ended with it."""

    message: str
    count: int


@dataclass(frozen=True)
class ModelSummary:
    """One model's numbers over a run. Times in seconds; ``None`` where there is
    nothing to measure (no cell ended yet, no assertion, no judge)."""

    model: str
    cells: int
    succeeded: int
    failed: int
    pending: int
    latency_p50: float | None
    latency_p95: float | None
    predict_time_p50: float | None
    predict_time_total: float | None
    output_chars_mean: float | None
    images: int
    checked: int
    passed: int
    pass_rate: float | None
    judged: int
    unscored: int
    score_mean: float | None
    errors: tuple[ErrorGroup, ...]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated between the
    closest ranks (numpy's default); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def summarize(
    cells: Iterable[CellLike],
    *,
    checks: Mapping[int, bool] | None = None,
    scores: Iterable[ScoreLike] = (),
    models: Sequence[str] = (),
) -> list[ModelSummary]:
    """One summary per model, in ``models`` order then first appearance.

    ``checks`` maps a cell number to whether all its assertions passed (cells with no
    entry were not checked); ``scores`` are judge verdicts (several judges on one cell
    each count). A cell counts as failed when it ended with any status but
    ``succeeded``, and as pending while it has not ended.
    """
    by_model: dict[str, list[CellLike]] = {model: [] for model in models}
    for cell in cells:
        by_model.setdefault(cell.model, []).append(cell)
    verdicts: dict[int, list[float | None]] = {}
    for verdict in scores:
        verdicts.setdefault(verdict.cell, []).append(verdict.score)
    checks = checks or {}
    return [_summary(model, group, checks, verdicts) for model, group in by_model.items()]


def _summary(
    model: str,
    cells: Sequence[CellLike],
    checks: Mapping[int, bool],
    verdicts: Mapping[int, list[float | None]],
) -> ModelSummary:
    ended = [cell for cell in cells if cell.state == "done"]
    succeeded = [cell for cell in ended if cell.status == "succeeded"]
    latencies = [cell.latency for cell in ended if cell.latency is not None]
    predict = [cell.predict_time for cell in ended if cell.predict_time is not None]
    lengths = [len(cell.output_text) for cell in succeeded if cell.output_text is not None]
    outcomes = [checks[cell.cell] for cell in cells if cell.cell in checks]
    judged = [score for cell in cells for score in verdicts.get(cell.cell, ())]
    scored = [score for score in judged if score is not None]
    errors = Counter(
        (cell.error or cell.status or "unknown").strip()
        for cell in ended
        if cell.status != "succeeded"
    )
    return ModelSummary(
        model=model,
        cells=len(cells),
        succeeded=len(succeeded),
        failed=len(ended) - len(succeeded),
        pending=len(cells) - len(ended),
        latency_p50=percentile(latencies, 0.5),
        latency_p95=percentile(latencies, 0.95),
        predict_time_p50=percentile(predict, 0.5),
        predict_time_total=math.fsum(predict) if predict else None,
        output_chars_mean=math.fsum(lengths) / len(lengths) if lengths else None,
        images=sum(len(cell.images) for cell in succeeded),
        checked=len(outcomes),
        passed=sum(outcomes),
        pass_rate=sum(outcomes) / len(outcomes) if outcomes else None,
        judged=len(judged),
        unscored=len(judged) - len(scored),
        score_mean=math.fsum(scored) / len(scored) if scored else None,
        errors=tuple(
            ErrorGroup(message, count)
            for message, count in sorted(errors.items(), key=lambda item: (-item[1], item[0]))
        ),
    )


def threshold_failures(
    summaries: Iterable[ModelSummary],
    *,
    fail_under: float | None = None,
    min_pass_rate: float | None = None,
) -> list[str]:
    """Why the run misses a CI threshold, one line per miss (empty: it meets them).

    ``fail_under``: the judge mean of every model that was judged must reach it (a model
    judged whose outputs all went unscored misses it). ``min_pass_rate`` (0..1): the
    assertion pass rate of every model that was checked must reach it. A model never
    judged (an image model among text judges) or never checked is left out, but a run
    with nothing at all to measure misses the threshold: it is never met by default."""
    summaries = list(summaries)
    lines: list[str] = []
    if fail_under is not None:
        judged = [summary for summary in summaries if summary.judged]
        if not judged:
            lines.append(f"no output was judged (fail-under {fail_under:g})")
        for summary in judged:
            if summary.score_mean is None:
                lines.append(
                    f"{summary.model}: no judged output scored (fail-under {fail_under:g})"
                )
            elif summary.score_mean < fail_under:
                lines.append(
                    f"{summary.model}: judge mean {summary.score_mean:.2f} is under {fail_under:g}"
                )
    if min_pass_rate is not None:
        checked = [summary for summary in summaries if summary.pass_rate is not None]
        if not checked:
            lines.append("no cell was checked by an assertion")
        for summary in checked:
            rate = summary.pass_rate or 0.0
            if rate < min_pass_rate:
                lines.append(
                    f"{summary.model}: assertion pass rate {rate:.0%} is under {min_pass_rate:.0%}"
                )
    return lines
