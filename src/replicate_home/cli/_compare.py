"""``replicate-home compare`` with one prompt: several models at once, a live line per
model on a terminal, then a table, Markdown or JSON (see the output views)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from .._fanout import ComparisonResult, Failed, Finished, ResultCollector
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    Interrupt,
    Plan,
    is_terminal,
    open_client,
    webhook_options,
)
from ._save import save_result
from ._text_view import markdown_report, result_json

if TYPE_CHECKING:
    from ._terminal_view import LiveView

__all__ = ["compare_command", "print_results"]

#: The status the table and JSON give a model that had not ended at Ctrl-C.
INTERRUPTED = "interrupted"

#: ``-v``: each model's end in ``compare`` (the library's requests log on ``replicate_home.http``).
logger = logging.getLogger("replicate_home.cli")


async def compare_command(plan: Plan, interrupt: Interrupt) -> int:
    args, models = plan.args, plan.models
    names = [str(model) for model in models]
    collector = ResultCollector(names)
    live = None if args.json else _live_view(names)
    saved = False
    with interrupt.scope:
        async with open_client(plan) as client:
            events = client.fan_out(
                models,
                prompt=args.prompt,
                input=plan.inputs,
                limit=args.limit,
                progress=True,
                **webhook_options(plan),
            )
            async with events as stream:
                with live if live is not None else nullcontext():
                    async for event in stream:
                        collector.add(event)
                        if live is not None:
                            live.update(event)
                        if isinstance(event, (Finished, Failed)):
                            status = collector.result(event.index).status
                            logger.debug("%d %s: %s", event.index, event.model, status)
            if args.save is not None:
                # While the client is open: through its connection pool, and before an
                # emulator started for this command stops serving the files.
                saved = True
                await _save(collector.results(unfinished=INTERRUPTED), args.save)
    results = collector.results(unfinished=INTERRUPTED)
    print_results(results, as_json=args.json)
    if args.save is not None and not saved:  # interrupted: what ended before is saved
        await _save(results, args.save)
    if interrupt.happened or args.allow_failures or all(result.ok for result in results):
        return EXIT_OK
    return EXIT_FAILED


async def _save(results: Sequence[ComparisonResult], directory: Path) -> None:
    for result in results:
        await save_result(result, directory)


def _live_view(models: Sequence[str]) -> LiveView | None:
    """The live lines on stderr when it is a terminal and rich is installed, else None."""
    if not is_terminal(sys.stderr) or importlib.util.find_spec("rich") is None:
        return None
    from rich.console import Console

    from ._terminal_view import LiveView

    return LiveView(models, Console(stderr=True))


def print_results(results: Sequence[ComparisonResult], *, as_json: bool) -> None:
    """JSON; else rich's table on a terminal (with the ``cli`` extra); else Markdown with
    every model's whole output (a pipe or a file gets everything, at any width)."""
    if as_json:
        json.dump([result_json(result) for result in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif is_terminal(sys.stdout) and importlib.util.find_spec("rich") is not None:
        from rich.console import Console

        from ._terminal_view import ResultsView

        Console().print(ResultsView(results))
    else:
        sys.stdout.write(markdown_report(results))
    sys.stdout.flush()
