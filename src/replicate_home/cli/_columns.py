"""``compare --collection SLUG`` / ``--search QUERY --top N``: a comparison's columns
chosen from one of Replicate's collections or a search, before anything is sent.

A model fits the prompt set when the input schema of its latest version takes every
input the set sends (``prompt`` where a row has one, each ``-i`` key, each row's own
inputs); a model whose schema is unknown is read once to learn it. The chosen models are
listed on stderr before the comparison starts; none fitting is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import anyio

from .._api_records import Model
from .._exceptions import ReplicateHomeError
from .._replicate_api import ReplicateAPI
from ._catalogue import input_names
from ._common import Plan, UsageError, one_line, open_client
from ._plan import choose_target, parse_inputs

__all__ = ["DEFAULT_TOP", "choose_columns", "fits", "needed_inputs", "resolve_columns"]

#: ``--search`` without ``--top``: this many models.
DEFAULT_TOP = 3
#: The most models one search answers (the API's bound).
_SEARCH_LIMIT = 50


def needed_inputs(args: argparse.Namespace) -> set[str]:
    """The inputs a comparison's prompts send: ``prompt`` where a row has one, every
    ``-i`` key, and (from ``--prompts FILE``) every row's own inputs."""
    needed = set((parse_inputs(args.inputs) or {}).keys())
    if args.prompt is not None or args.prompts:
        needed.add("prompt")
    if args.prompts_file is not None:
        from ..comparisons import load_prompts  # a prompt file: only when given

        try:
            rows = load_prompts(args.prompts_file)
        except (OSError, ValueError) as error:
            raise UsageError(f"{args.prompts_file}: {one_line(error)}") from None
        for row in rows:
            if row.prompt is not None:
                needed.add("prompt")
            needed.update(str(key) for key in row.input)
    return needed


def fits(model: Model, needed: set[str]) -> bool | None:
    """Whether the model takes every needed input; ``None`` if its schema doesn't say."""
    names = input_names(model)
    return None if names is None else needed <= set(names)


async def choose_columns(
    client: ReplicateAPI,
    *,
    collection: str | None,
    search: str | None,
    top: int | None,
    needed: set[str],
) -> tuple[list[Model], int]:
    """The models (at most ``top``, in the collection's or the search's order) that fit
    ``needed``, and how many candidates there were."""
    if collection is not None:
        found = await client.collections.get(collection)
        candidates: Sequence[Model | str] = found.models or found.model_names
    else:
        assert search is not None
        limit = min(_SEARCH_LIMIT, max(10, 3 * (top or DEFAULT_TOP)))
        results = await client.search(search, limit=limit)
        candidates = [hit.model for hit in results.models]
    chosen: list[Model] = []
    for candidate in candidates:
        if top is not None and len(chosen) >= top:
            break
        model = candidate if isinstance(candidate, Model) else None
        if model is None or fits(model, needed) is None:  # read it once to learn its inputs
            name = candidate if isinstance(candidate, str) else candidate.full_name
            try:
                model = await client.models.get(name)
            except ReplicateHomeError:
                continue
        if fits(model, needed):
            chosen.append(model)
    return chosen, len(candidates)


def resolve_columns(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """``--collection`` or ``--search``: the models to compare (``owner/name``), listed
    on stderr; :class:`UsageError` when the api service isn't there or none fit."""
    if args.service is None:
        args.service = "api"  # models found on the API run there (--emulator: its /v1)
    target = choose_target(args, environ)
    if target.service != "api":
        raise UsageError("--collection and --search need the api service (a token)")
    needed = needed_inputs(args)
    source = f"collection {args.collection}" if args.collection else f"search {args.search!r}"
    top = args.top if args.top is not None else (None if args.collection else DEFAULT_TOP)

    async def look_up() -> tuple[list[Model], int]:
        async with open_client(Plan(args, target, [], None)) as client:
            assert isinstance(client, ReplicateAPI)
            return await choose_columns(
                client, collection=args.collection, search=args.search, top=top, needed=needed
            )

    try:
        chosen, seen = anyio.run(look_up, backend=args.backend)
    except ValueError as error:
        raise UsageError(one_line(error)) from None
    wanted = ", ".join(sorted(needed)) or "no inputs"
    if not chosen:
        raise UsageError(f"no model of the {source} ({seen} seen) takes {wanted}")
    names = [model.full_name for model in chosen]
    print(
        f"compare: {len(names)} model(s) of the {source} that take {wanted}: {', '.join(names)}",
        file=sys.stderr,
        flush=True,
    )
    return names
