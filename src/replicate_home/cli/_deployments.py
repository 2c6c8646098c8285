"""``replicate-home deployments list | show | create | update | delete``: managing
deployments on the official API from the command line (a summary, or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._models import Deployment
from .._replicate_api import ReplicateAPI
from ._common import (
    EXIT_OK,
    Writer,
    add_api_options,
    api_command,
    format_table,
    plain,
)

__all__ = ["add_deployments_parser", "deployments_command", "run_deployments"]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def add_deployments_parser(
    commands: Any, epilog: str, formatter: type[argparse.HelpFormatter]
) -> None:
    """The ``deployments`` command and its five actions (api service only)."""
    deployments = commands.add_parser(
        "deployments",
        help="list, show, create, update or delete deployments on the official API",
        description="Deployments of the account: a model version on hardware you choose, "
        "scaled between a minimum and a maximum of instances. Run one with -d OWNER/NAME.",
        epilog=epilog,
        formatter_class=formatter,
    )
    actions = deployments.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the account's deployments")
    show = actions.add_parser("show", help="a deployment and its current release")
    create = actions.add_parser("create", help="create a deployment")
    create.add_argument("name", metavar="NAME", help="its name (in the token's account)")
    create.add_argument("--model", required=True, metavar="OWNER/NAME:VERSION")
    create.add_argument("--hardware", required=True, metavar="SKU", help="see: hardware")
    update = actions.add_parser("update", help="change its version or instance settings")
    update.add_argument("--version", metavar="VERSION", help="a version id of its model")
    update.add_argument("--hardware", metavar="SKU")
    delete = actions.add_parser("delete", help="delete a deployment")
    for action in (show, update, delete):
        action.add_argument("deployment", metavar="OWNER/NAME")
    for action, low, high in ((create, 0, 1), (update, None, None)):
        action.add_argument("--min-instances", type=_count, default=low, metavar="N", help="0-5")
        action.add_argument("--max-instances", type=_count, default=high, metavar="N", help="0-20")
    for action in actions.choices.values():
        add_api_options(action)


async def run_deployments(client: ReplicateAPI, args: argparse.Namespace, out: Writer) -> int:
    """Run one ``deployments`` action and print what it answered."""
    api = client.deployments
    if args.action == "list":
        listed = [deployment async for deployment in api.list()]
        if args.json:
            out.write(json.dumps(plain(listed), indent=2) + "\n")
        else:
            rows = [_row(deployment) for deployment in listed]
            header = ("DEPLOYMENT", "MODEL", "HARDWARE", "INSTANCES", "RELEASE")
            out.write(format_table([header, *rows]))
        return EXIT_OK
    if args.action == "delete":
        await api.delete(args.deployment)
        out.write(json.dumps({"deleted": args.deployment}) + "\n" if args.json else "deleted\n")
        return EXIT_OK
    if args.action == "show":
        deployment = await api.get(args.deployment)
    elif args.action == "create":
        deployment = await api.create(
            args.name,
            model=args.model,
            hardware=args.hardware,
            min_instances=args.min_instances,
            max_instances=args.max_instances,
        )
    else:
        deployment = await api.update(
            args.deployment,
            version=args.version,
            hardware=args.hardware,
            min_instances=args.min_instances,
            max_instances=args.max_instances,
        )
    out.write(json.dumps(plain(deployment), indent=2) + "\n" if args.json else _details(deployment))
    return EXIT_OK


def _row(deployment: Deployment) -> tuple[str, str, str, str, str]:
    release = deployment.release
    if release is None:
        return deployment.name, "", "", "", ""
    instances = f"{release.min_instances}-{release.max_instances}"
    return (
        deployment.name,
        release.model or "",
        release.hardware or "",
        instances,
        "" if release.number is None else str(release.number),
    )


def _details(deployment: Deployment) -> str:
    _, model, hardware, instances, number = _row(deployment)
    release = deployment.release
    fields = [
        ("deployment", deployment.name),
        ("model", model),
        ("version", (release.version if release is not None else None) or ""),
        ("hardware", hardware),
        ("instances", instances),
        ("release", number),
    ]
    return "".join(f"{name + ':':<12}{value}\n" for name, value in fields if value)


deployments_command = api_command(run_deployments)
