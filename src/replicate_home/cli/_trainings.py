"""``replicate-home trainings create | list | get | wait | cancel``: trainings on the
official API from the command line (a summary, or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._replicate_api import ReplicateAPI
from .._trainings import Training
from ._common import (
    EXIT_OK,
    Writer,
    add_api_options,
    api_command,
    format_table,
    plain,
    positive_int,
)
from ._plan import parse_inputs

__all__ = ["add_trainings_parser", "run_trainings", "trainings_command"]

#: ``trainings list`` shows this many by default.
DEFAULT_LIMIT = 20


def add_trainings_parser(
    commands: Any, epilog: str, formatter: type[argparse.HelpFormatter]
) -> None:
    """The ``trainings`` command and its five actions (api service only)."""
    trainings = commands.add_parser(
        "trainings",
        help="create, list, show, wait for or cancel trainings on the official API",
        description="Fine-tune a model version into a model of your own, and follow it.",
        epilog=epilog,
        formatter_class=formatter,
    )
    actions = trainings.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="start a training (then --wait for it)")
    create.add_argument("model", metavar="OWNER/NAME:VERSION", help="what to train")
    create.add_argument(
        "--destination",
        required=True,
        metavar="OWNER/NAME",
        help="the model of yours the training makes a version of",
    )
    create.add_argument(
        "-i",
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training input; repeatable (VALUE may be JSON; @FILE uploads that file)",
    )
    create.add_argument(
        "--wait", action="store_true", help="follow it to its end (Ctrl-C cancels it)"
    )
    listing = actions.add_parser("list", help="the account's trainings, newest first")
    listing.add_argument(
        "--limit", type=positive_int, default=DEFAULT_LIMIT, help="at most (default: 20)"
    )
    for name, text in (
        ("get", "show a training's current state"),
        ("wait", "wait for a training to end, then show it"),
        ("cancel", "cancel a training"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("training_id", metavar="ID")
    for action in actions.choices.values():
        add_api_options(action)


async def run_trainings(client: ReplicateAPI, args: argparse.Namespace, out: Writer) -> int:
    """Run one ``trainings`` action; a failed ``wait`` raises (exit status 1)."""
    if args.action == "list":
        shown: list[Training] = []
        async for training in client.trainings.list():
            shown.append(training)
            if len(shown) >= args.limit:
                break
        if args.json:
            out.write(json.dumps(plain(shown), indent=2) + "\n")
        else:
            rows = [(t.id, t.model, t.status, t.new_version or "") for t in shown]
            out.write(format_table([("ID", "MODEL", "STATUS", "NEW VERSION"), *rows]))
        return EXIT_OK
    if args.action == "create":
        options = {"destination": args.destination, "input": parse_inputs(args.inputs) or {}}
        if args.wait:
            training = await client.trainings.run(args.model, timeout=args.timeout, **options)
        else:
            training = await client.trainings.create(args.model, **options)
    elif args.action == "get":
        training = await client.trainings.get(args.training_id)
    elif args.action == "cancel":
        training = await client.trainings.cancel(args.training_id)
    else:
        training = await client.trainings.wait(args.training_id, timeout=args.timeout)
    out.write(json.dumps(plain(training), indent=2) + "\n" if args.json else _details(training))
    return EXIT_OK


def _details(training: Training) -> str:
    fields = [
        ("id", training.id),
        ("model", training.model),
        ("version", training.version or ""),
        ("status", training.status),
        ("new version", training.new_model or training.new_version or ""),  # what runs
        ("weights", training.weights or ""),
        ("error", "" if training.error is None else str(training.error)),
        ("web", training.urls.get("web", "")),
    ]
    return "".join(f"{name + ':':<13}{value}\n" for name, value in fields if value)


trainings_command = api_command(run_trainings)
