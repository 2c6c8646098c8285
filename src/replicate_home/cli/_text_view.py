"""``replicate-home compare``'s output for scripts and files: JSON, and Markdown with
every model's whole output (no terminal, so no width to fit and nothing cut)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._fanout import ComparisonResult

__all__ = ["markdown_report", "result_json"]


def result_json(result: ComparisonResult) -> dict[str, Any]:
    """A comparison result as plain JSON data: every model, failed ones included."""
    prediction = result.prediction
    return {
        "index": result.index,
        "model": result.model,
        "status": result.status,
        "prediction_id": None if prediction is None else prediction.id,
        "latency": result.latency,
        "polls": result.polls,
        "timings": {
            "latency": result.latency,
            "predict_time": None if prediction is None else prediction.predict_time,
            "total_time": None if prediction is None else prediction.total_time,
            "created_at": _iso(None if prediction is None else prediction.created_at),
            "started_at": _iso(None if prediction is None else prediction.started_at),
            "completed_at": _iso(None if prediction is None else prediction.completed_at),
        },
        "text": result.text,
        "images": list(result.images),
        "error": None if result.error is None else str(result.error),
        "error_type": None if result.error is None else type(result.error).__name__,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_report(results: Sequence[ComparisonResult]) -> str:
    """A summary table, then one section per model with its whole output (the text as
    the model wrote it, the image URLs, or the error)."""
    lines = [
        "| # | model | status | latency | polls | prediction |",
        "|--:|---|---|--:|--:|---|",
    ]
    for result in results:
        prediction_id = "" if result.prediction is None else result.prediction.id
        lines.append(
            f"| {result.index} | {_cell(result.model)} | {_cell(result.status)} | "
            f"{'' if result.latency is None else f'{result.latency:.2f} s'} | "
            f"{'' if result.polls is None else result.polls} | {_cell(prediction_id)} |"
        )
    for result in results:
        lines += ["", f"## {result.index}. {result.model}: {result.status}", ""]
        if result.images:
            lines += [f"- {url}" for url in result.images]
        if result.text:
            lines.append(result.text.rstrip("\n"))
        if result.error is not None:
            if result.text:
                lines.append("")
            lines.append(f"> {type(result.error).__name__}: {' '.join(str(result.error).split())}")
        if not (result.images or result.text or result.error is not None):
            lines.append("_(no output)_")
    return "\n".join(lines) + "\n"
