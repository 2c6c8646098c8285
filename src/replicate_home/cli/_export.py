"""``replicate-home export``: a recorded run's cells, scores and votes as CSV or JSON
Lines (the rows: :mod:`replicate_home.comparisons._export`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..comparisons._export import cell_rows, model_rows, vote_rows, write_rows
from ._common import UsageError
from ._runs import check_database, open_store

__all__ = ["export_command"]


async def export_command(args: argparse.Namespace) -> None:
    """Write the run's table to ``--output`` (or stdout)."""
    check_database(args.db, "export")
    async with open_store(args.db) as store:
        try:
            run = await store.run(args.run)
        except KeyError:
            raise UsageError(f"no run {args.run!r} in {args.db}") from None
        rows: list[dict[str, Any]]
        if args.table == "votes":
            rows = vote_rows(await store.votes(run.id))
        else:
            cells = await store.cells(run.id)
            checks = await store.checks(run.id)
            judgements = await store.judgements(run.id)
            votes = await store.votes(run.id)
            if args.table == "models":
                rows = model_rows(cells, run.models, checks, judgements, votes)
            else:
                rows = cell_rows(cells, checks, judgements, votes, await store.thumbs(run.id))
    if args.output is None:
        write_rows(rows, sys.stdout, args.format)
        sys.stdout.flush()
        return
    with args.output.open("w", encoding="utf-8", newline="") as stream:
        write_rows(rows, stream, args.format)
    print(f"replicate-home: {len(rows)} rows written to {args.output}", file=sys.stderr)
