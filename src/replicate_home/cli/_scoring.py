"""Scoring on the command line: ``compare``'s ``--assert``, ``--judge``,
``--image-judge``, ``--rubric``, ``--fail-under`` and ``--min-pass-rate``, the per-model
summary a scored run ends with, and the exit status its thresholds set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import UsageError, one_line

if TYPE_CHECKING:  # the comparisons package (the results database) loads only when used
    from .._client import BaseClient
    from ..comparisons import Assertion, Judge, ModelSummary

__all__ = [
    "add_scoring_options",
    "check_judges",
    "is_scored",
    "scoring_from_args",
    "summary_json",
    "summary_lines",
    "threshold_lines",
]


def _share(text: str) -> float:
    """A pass rate: ``0.9`` or ``90%``."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (0.9 or 90%)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (or 0% and 100%), not {text}")
    return value


def _score(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a score: {text!r}") from None


def add_scoring_options(command: argparse.ArgumentParser) -> None:
    """The scoring options of ``compare`` (a run scored is a recorded prompt set)."""
    group = command.add_argument_group(
        "scoring (a recorded prompt set; docs/judging.md)",
        "Each output is checked by assertions and scored by judge models; the run ends with "
        "a summary per model, and --fail-under / --min-pass-rate make it exit 1 below them.",
    )
    group.add_argument(
        "--assert",
        dest="assertions",
        action="append",
        default=[],
        metavar="SPEC",
        help="check every output: contains:TEXT, not-contains:TEXT, regex:PATTERN, "
        "equals:TEXT, json, json-schema:SCHEMA (JSON, or @FILE), min-length:N, "
        "max-length:N; repeatable (a prompt file's 'assert' key adds a row's own)",
    )
    group.add_argument(
        "--judge",
        dest="judges",
        action="append",
        default=[],
        metavar="MODEL",
        help="a text model that scores every text output by --rubric; repeatable",
    )
    group.add_argument(
        "--image-judge",
        dest="image_judges",
        action="append",
        default=[],
        metavar="MODEL",
        help="a vision model that scores every image output by --rubric; repeatable",
    )
    group.add_argument(
        "--rubric",
        metavar="TEXT|@FILE",
        help="what makes an output good, for the judges (@FILE reads it from a file)",
    )
    group.add_argument(
        "--fail-under",
        type=_score,
        metavar="SCORE",
        help="exit 1 when a model's mean judge score is under SCORE (1-10 scale)",
    )
    group.add_argument(
        "--min-pass-rate",
        type=_share,
        metavar="RATE",
        help="exit 1 when a model's assertion pass rate is under RATE (0.9 or 90%%)",
    )


def is_scored(args: argparse.Namespace) -> bool:
    """Any scoring option given (the run is then a recorded prompt set)."""
    return bool(
        args.assertions
        or args.judges
        or args.image_judges
        or args.rubric is not None
        or args.fail_under is not None
        or args.min_pass_rate is not None
    )


def _text_or_file(value: str, what: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{what} {value}: {one_line(error)}") from None


def _assertion(spec: str) -> Assertion:
    from ..comparisons import Assertion

    kind, colon, value = spec.partition(":")
    if kind.strip() == "json-schema" and value.startswith("@"):
        spec = f"{kind}{colon}{_text_or_file(value, '--assert json-schema:')}"
    try:
        return Assertion.parse(spec)
    except (ValueError, ImportError) as error:
        raise UsageError(f"--assert {spec}: {one_line(error)}") from None


def scoring_from_args(args: argparse.Namespace) -> tuple[list[Assertion], list[Judge]]:
    """The run's assertions and judges from the options (a :class:`UsageError` for a
    bad spec, a judge without a rubric, a rubric without a judge, a threshold with
    nothing to measure)."""
    from ..comparisons import Judge

    assertions = [_assertion(spec) for spec in args.assertions]
    models = [(model, False) for model in args.judges]
    models += [(model, True) for model in args.image_judges]
    if models and args.rubric is None:
        raise UsageError("--judge and --image-judge need --rubric TEXT (or @FILE)")
    if args.rubric is not None and not models:
        raise UsageError("--rubric goes with --judge MODEL or --image-judge MODEL")
    judges: list[Judge] = []
    if models:
        rubric = _text_or_file(args.rubric, "--rubric")
        try:
            judges = [Judge(model, rubric, images=images) for model, images in models]
        except ValueError as error:
            raise UsageError(one_line(error)) from None
    if args.fail_under is not None and not judges and not args.resume:
        raise UsageError("--fail-under compares judge scores: give --judge or --image-judge")
    return assertions, judges


def check_judges(client: BaseClient, judges: Sequence[Judge]) -> None:
    """A ``ValueError`` for a judge model the service can't run (before anything)."""
    for judge in judges:
        client._prepare_call(judge.model, "x", None)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _printable(message: str, limit: int = 160) -> str:
    """An error a service sent, as one bounded line a terminal prints as it is (no
    control characters: no escape sequence of the service's reaches the terminal)."""
    text = " ".join(message.split())[:limit]
    return "".join(char if char.isprintable() else "?" for char in text)


def summary_lines(summary: ModelSummary) -> list[str]:
    """A model's numbers in a run's end summary: a line, and its commonest errors."""
    s = summary
    parts = [f"latency p50 {_seconds(s.latency_p50)} p95 {_seconds(s.latency_p95)}"]
    if s.predict_time_total is not None:
        median, total = _seconds(s.predict_time_p50), _seconds(s.predict_time_total)
        parts.append(f"predict_time p50 {median} total {total}")
    if s.output_chars_mean is not None:
        parts.append(f"{s.output_chars_mean:.0f} chars")
    if s.images:
        parts.append(f"{s.images} images")
    if s.pass_rate is not None:
        parts.append(f"assertions {s.passed}/{s.checked} passed ({s.pass_rate:.0%})")
    if s.judged:
        mean = "-" if s.score_mean is None else f"{s.score_mean:.2f}"
        parts.append(f"judge mean {mean} ({s.unscored} unscored of {s.judged})")
    lines = [", ".join(parts)]
    lines.extend(f"{group.count}x {_printable(group.message)}" for group in s.errors[:3])
    return lines


def threshold_lines(summaries: Sequence[ModelSummary], args: argparse.Namespace) -> list[str]:
    """Why the run misses ``--fail-under`` / ``--min-pass-rate`` (empty: it meets them)."""
    from ..comparisons import threshold_failures

    return threshold_failures(
        summaries, fail_under=args.fail_under, min_pass_rate=args.min_pass_rate
    )


def summary_json(summary: ModelSummary) -> dict[str, Any]:
    """A model's summary as JSON."""
    return asdict(summary)
