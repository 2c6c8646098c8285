"""``replicate-home predictions list | get ID | wait ID | cancel ID``: prediction handles
on the official API from the command line (a table, or ``--json``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._api import API_IMAGE_MODELS
from .._models import Prediction
from .._replicate_api import ReplicateAPI
from .._run import Output
from ._common import (
    Writer,
    add_api_options,
    api_command,
    format_table,
    positive_int,
)

__all__ = [
    "add_predictions_parser",
    "prediction_json",
    "predictions_command",
    "run_predictions",
]

#: ``predictions list`` shows this many by default (the account may have thousands).
DEFAULT_LIMIT = 20


def add_predictions_parser(
    commands: Any, epilog: str, formatter: type[argparse.HelpFormatter]
) -> None:
    """The ``predictions`` command and its four subcommands (api service only)."""
    predictions = commands.add_parser(
        "predictions",
        help="list, show, wait for or cancel predictions on the official API",
        description="Prediction handles on Replicate's official API: a prediction started "
        "anywhere (another process, the website) is read, waited for or cancelled by id.",
        epilog=epilog,
        formatter_class=formatter,
    )
    actions = predictions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the account's predictions, newest first")
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        help="show at most this many (default: %(default)s)",
    )
    for name, text in (
        ("get", "show a prediction's current state"),
        ("wait", "wait for a prediction to end, then show it (its output, or --json)"),
        ("cancel", "cancel a prediction (one that already ended stays as it is)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("prediction_id", metavar="ID")
    for action in actions.choices.values():
        add_api_options(action)


async def run_predictions(client: ReplicateAPI, args: argparse.Namespace, out: Writer) -> int:
    """Run one ``predictions`` action; a failed ``wait`` raises (exit status 1)."""
    if args.action == "list":
        shown: list[Prediction] = []
        async for prediction in client.list():
            shown.append(prediction)
            if len(shown) >= args.limit:
                break
        if args.json:
            out.write(json.dumps([prediction_json(p) for p in shown], indent=2) + "\n")
        else:
            out.write(_table(shown))
        return 0
    if args.action == "get":
        prediction = await client.get(args.prediction_id)
    elif args.action == "cancel":
        prediction = await client.cancel(args.prediction_id)
    else:
        prediction = await client.wait(args.prediction_id)
        if not args.json:
            out.write(_output_text(prediction))
            return 0
    if args.json:
        out.write(json.dumps(prediction_json(prediction), indent=2) + "\n")
    else:
        out.write(_details(prediction))
    return 0


def prediction_json(prediction: Prediction) -> dict[str, Any]:
    """A prediction's whole record as plain JSON data (timestamps in ISO 8601)."""

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": prediction.id,
        "model": prediction.model,
        "version": prediction.version,
        "deployment": prediction.deployment,
        "status": prediction.status,
        "input": dict(prediction.input),
        "output": prediction.output,
        "error": prediction.error,
        "logs": prediction.logs,
        "metrics": dict(prediction.metrics),
        "created_at": moment(prediction.created_at),
        "started_at": moment(prediction.started_at),
        "completed_at": moment(prediction.completed_at),
        "deadline": moment(prediction.deadline),
        "source": prediction.source,
        "data_removed": prediction.data_removed,
        "urls": dict(prediction.urls),
    }


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _table(predictions: Sequence[Prediction]) -> str:
    rows = [("ID", "MODEL", "STATUS", "CREATED", "SOURCE")]
    rows += [
        (p.id, p.deployment or p.model, p.status, _when(p.created_at), p.source or "")
        for p in predictions
    ]
    return format_table(rows)


def _details(prediction: Prediction) -> str:
    progress = prediction.progress
    fields = [
        ("id", prediction.id),
        ("model", prediction.model),
        ("version", prediction.version or ""),
        ("deployment", prediction.deployment or ""),
        ("status", prediction.status),
        ("progress", "" if progress is None else f"{progress.percentage:.0%}"),
        ("created", _when(prediction.created_at)),
        ("started", _when(prediction.started_at)),
        ("completed", _when(prediction.completed_at)),
        (
            "predict time",
            "" if prediction.predict_time is None else f"{prediction.predict_time:.2f}s",
        ),
        ("error", "" if prediction.error is None else str(prediction.error)),
        ("web", prediction.urls.get("web", "")),
    ]
    lines = [f"{name + ':':<14}{value}" for name, value in fields if value]
    output = _output_text(prediction)
    if output:
        lines.append("output:")
        lines.append(output.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _output_text(prediction: Prediction) -> str:
    """The output as the terminal shows it: text as it is, image URLs one a line
    (``data:`` URIs cut short), anything else as JSON."""
    output = prediction.output
    if output is None:
        return ""
    text = prediction.text
    if text is not None and prediction.model not in API_IMAGE_MODELS and not _urls(output):
        return text if text.endswith("\n") else text + "\n"
    if _urls(output):
        items = [output] if isinstance(output, str) else list(output)
        return "".join(
            (url if not url.startswith("data:") else url[:60] + "…") + "\n" for url in items
        )
    return json.dumps(output) + "\n"


def _urls(output: Output | object) -> bool:
    items = [output] if isinstance(output, str) else output
    return (
        isinstance(items, list)
        and bool(items)
        and all(
            isinstance(item, str) and item.startswith(("http://", "https://", "data:"))
            for item in items
        )
    )


predictions_command = api_command(run_predictions)
