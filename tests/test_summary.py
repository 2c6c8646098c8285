"""Per-model summaries of a run's cells, and the CI thresholds over them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home.comparisons import CellRecord, ErrorGroup, summarize, threshold_failures
from replicate_home.comparisons._summary import percentile


def cell(
    number: int,
    model: str,
    status: str | None,
    *,
    text: str | None = None,
    images: tuple[str, ...] = (),
    error: str | None = None,
    latency: float | None = None,
    predict_time: float | None = None,
) -> CellRecord:
    return CellRecord(
        run_id="r",
        cell=number,
        prompt_index=number // 2,
        model_index=0,
        model=model,
        prompt="p",
        input={"prompt": "p"},
        state="pending" if status is None else "done",
        status=status,
        output_text=text,
        images=images,
        error=error,
        latency=latency,
        predict_time=predict_time,
    )


@dataclass(frozen=True)
class Score:
    cell: int
    score: float | None


def test_a_summary_per_model_with_latency_lengths_scores_and_errors() -> None:
    cells = [
        cell(0, "text", "succeeded", text="abcd", latency=1.0, predict_time=0.5),
        cell(1, "image", "succeeded", images=("u1", "u2"), latency=4.0, predict_time=3.0),
        cell(2, "text", "succeeded", text="ab", latency=3.0, predict_time=1.5),
        cell(3, "image", "failed", error="NSFW content", latency=2.0),
        cell(4, "text", "failed", error="NSFW content", latency=2.0),
        cell(5, "image", "failed", error="NSFW content"),
        cell(6, "text", "timeout", error=None),
        cell(7, "image", None),
    ]
    checks = {0: True, 2: False, 4: False}
    scores = [Score(0, 8.0), Score(2, None), Score(2, 6.0), Score(1, 9.0)]
    text, image, other = summarize(
        cells, checks=checks, scores=scores, models=["text", "image", "x"]
    )
    assert (text.model, text.cells, text.succeeded, text.failed, text.pending) == (
        "text",
        4,
        2,
        2,
        0,
    )
    assert text.latency_p50 == 2.0
    assert text.latency_p95 == pytest.approx(2.9)
    assert text.predict_time_p50 == 1.0
    assert text.predict_time_total == 2.0
    assert text.output_chars_mean == 3.0
    assert (text.checked, text.passed, text.pass_rate) == (3, 1, pytest.approx(1 / 3))
    assert (text.judged, text.unscored, text.score_mean) == (3, 1, 7.0)
    assert text.errors == (ErrorGroup("NSFW content", 1), ErrorGroup("timeout", 1))
    assert (image.succeeded, image.failed, image.pending, image.images) == (1, 2, 1, 2)
    assert image.errors == (ErrorGroup("NSFW content", 2),)
    assert image.output_chars_mean is None
    assert image.pass_rate is None
    assert image.score_mean == 9.0
    assert other.cells == 0
    assert other.latency_p50 is None


def test_thresholds_name_each_model_that_misses_them() -> None:
    cells = [cell(0, "good", "succeeded", text="a"), cell(1, "bad", "succeeded", text="b")]
    cells += [cell(2, "unscored", "succeeded", text="c"), cell(3, "image", "succeeded")]
    summaries = summarize(
        cells, checks={0: True, 1: False}, scores=[Score(0, 9), Score(1, 4), Score(2, None)]
    )
    assert threshold_failures(summaries) == []
    assert threshold_failures(summaries, fail_under=5) == [
        "bad: judge mean 4.00 is under 5",
        "unscored: no judged output scored (fail-under 5)",
    ]  # the image model was never judged: left out
    assert threshold_failures(summaries, min_pass_rate=0.5) == [
        "bad: assertion pass rate 0% is under 50%"
    ]
    assert threshold_failures(summaries[:1], fail_under=9, min_pass_rate=1) == []
    # Nothing to measure at all: a threshold is never met by default.
    assert threshold_failures(summaries[3:], fail_under=1, min_pass_rate=0) == [
        "no output was judged (fail-under 1)",
        "no cell was checked by an assertion",
    ]


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0, 1))
def test_percentiles_lie_within_the_values_and_grow_with_q(values: list[float], q: float) -> None:
    value = percentile(values, q)
    assert value is not None
    assert min(values) <= value <= max(values)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 1) == max(values)
    assert value <= (percentile(values, min(1.0, q + 0.1)) or 0.0) + 1e-6 * max(values)
    assert percentile([], q) is None
