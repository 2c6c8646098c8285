"""``replicate-home models search QUERY | show OWNER/NAME``, ``collections [SLUG]`` and
``hardware``: finding models on the official API from the command line (a table, or
``--json``). ``models`` with no action still lists this library's own catalog."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .._api_records import Model
from .._replicate_api import ReplicateAPI
from ._common import (
    EXIT_OK,
    Writer,
    add_api_options,
    api_command,
    format_table,
    plain,
    positive_int,
)

__all__ = ["add_catalogue_parsers", "catalogue_command", "input_names", "run_catalogue"]

#: How much of a description a table shows.
DESCRIPTION_WIDTH = 60


def add_catalogue_parsers(
    commands: Any, epilog: str, formatter: type[argparse.HelpFormatter]
) -> None:
    """``models`` (with its ``search`` and ``show`` actions), ``collections`` and
    ``hardware``."""
    models = commands.add_parser(
        "models",
        help="list this library's models; search or show models on the official API",
        description="With no action: the models this library knows, their kinds and aliases "
        "(no network). search and show ask Replicate's official API.",
        epilog=epilog,
        formatter_class=formatter,
    )
    actions = models.add_subparsers(dest="action", required=False, metavar="ACTION")
    search = actions.add_parser("search", help="search public models (official API)")
    search.add_argument("query", metavar="QUERY")
    search.add_argument(
        "--limit", type=positive_int, default=20, help="models at most, 1-50 (default: 20)"
    )
    show = actions.add_parser("show", help="a model: description, versions, inputs")
    show.add_argument("model", metavar="OWNER/NAME")
    for action in (search, show):
        add_api_options(action)

    collections = commands.add_parser(
        "collections",
        help="Replicate's collections of models, or one collection's models",
        epilog=epilog,
        formatter_class=formatter,
    )
    collections.add_argument("slug", metavar="SLUG", nargs="?", help="show this collection")
    add_api_options(collections)

    hardware = commands.add_parser(
        "hardware",
        help="the hardware models and deployments run on (SKUs)",
        epilog=epilog,
        formatter_class=formatter,
    )
    add_api_options(hardware)


async def run_catalogue(client: ReplicateAPI, args: argparse.Namespace, out: Writer) -> int:
    """Run one of the catalogue commands and print what it found."""
    data: Any
    if args.command == "hardware":
        hardware = await client.hardware.list()
        data = hardware
        text = format_table([("SKU", "NAME"), *((h.sku, h.name or "") for h in hardware)])
    elif args.command == "collections" and args.slug is None:
        listed = [collection async for collection in client.collections.list()]
        data = listed
        rows = [(c.slug, c.name, _short(c.description)) for c in listed]
        text = format_table([("SLUG", "NAME", "DESCRIPTION"), *rows])
    elif args.command == "collections":
        collection = await client.collections.get(args.slug)
        data = collection
        text = f"{collection.name} ({collection.slug})\n"
        if collection.description:
            text += f"{collection.description}\n"
        text += "\n" + _models_table(collection.models)
    elif args.action == "search":
        found = await client.search(args.query, limit=min(args.limit, 50))
        data = found
        hits = [
            (
                hit.model.full_name,
                "" if hit.score is None else f"{hit.score:.3f}",
                _runs(hit.model),
                _short(hit.model.description),
            )
            for hit in found.models
        ]
        text = format_table([("MODEL", "SCORE", "RUNS", "DESCRIPTION"), *hits])
        if found.collections:
            text += "\ncollections: " + ", ".join(c.slug for c in found.collections) + "\n"
    else:
        model = await client.models.get(args.model)
        data = model
        text = _model_details(model)
    out.write(json.dumps(plain(data), indent=2) + "\n" if args.json else text)
    return EXIT_OK


def _short(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= DESCRIPTION_WIDTH else line[: DESCRIPTION_WIDTH - 1] + "…"


def _runs(model: Model) -> str:
    return "" if model.run_count is None else str(model.run_count)


def _models_table(models: Sequence[Model]) -> str:
    rows = [(m.full_name, _runs(m), _short(m.description)) for m in models]
    return format_table([("MODEL", "RUNS", "DESCRIPTION"), *rows])


def input_names(model: Model) -> list[str] | None:
    """The input names of the model's latest version, from its OpenAPI schema
    (``components.schemas.Input.properties``); ``None`` when the schema does not say."""
    version = model.latest_version
    schema = version.openapi_schema if version is not None else None
    try:
        properties = schema["components"]["schemas"]["Input"]["properties"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return [str(name) for name in properties] if isinstance(properties, dict) else None


def _model_details(model: Model) -> str:
    version = model.latest_version
    inputs = input_names(model)
    fields = [
        ("model", model.full_name),
        ("description", model.description or ""),
        ("visibility", model.visibility or ""),
        ("official", "yes" if model.is_official else ""),
        ("runs", _runs(model)),
        ("version", version.id if version is not None else "(none)"),
        ("inputs", ", ".join(inputs) if inputs else ""),
        ("url", model.url or ""),
        ("github", model.github_url or ""),
        ("paper", model.paper_url or ""),
        ("license", model.license_url or ""),
    ]
    return "".join(f"{name + ':':<13}{value}\n" for name, value in fields if value)


catalogue_command = api_command(run_catalogue)
