"""``replicate-home compare`` with a prompt set (recorded, resumable, reported) and
``replicate-home report``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from .._exceptions import RunBoundElsewhere
from ..comparisons import (
    END_STATUSES,
    CellRecord,
    PromptRow,
    ResultsStore,
    RunProgress,
    RunRecord,
    load_prompts,
    resume_comparison,
    run_comparison,
    write_report,
)
from ..comparisons._binding import check_binding, origin_of
from ..comparisons._runner import TextListener
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    Interrupt,
    Plan,
    UsageError,
    open_client,
    webhook_options,
)
from ._view import Announcer, served_viewer

__all__ = ["DEFAULT_DB", "check_prompt_set", "comparison_command", "report_command"]

_NEEDS_JINJA = "the report needs Jinja2: pip install 'replicate-home[report]'"

#: The results database when ``--db`` is not given.
DEFAULT_DB = Path("replicate-home.db")


def check_prompt_set(args: argparse.Namespace) -> str:
    """Check a prompt-set ``compare`` before anything starts (a :class:`UsageError`);
    a prompt to validate the models with."""
    if args.resume:
        if args.models or args.prompts or args.prompts_file or args.prompt or args.name:
            raise UsageError("--resume takes the run's prompts and models from the database")
        if args.webhook is not None or args.webhook_events is not None:
            raise UsageError("--resume sends the webhook recorded with the run")
        retry_statuses(args)
        return "x"
    if args.resend_in_doubt:
        raise UsageError("--resend-in-doubt goes with --resume RUN")
    if args.retry is not None:
        raise UsageError("--retry goes with --resume RUN")
    rows = _rows(args)
    if not args.models:
        raise UsageError("compare needs at least one -m MODEL")
    first = rows[0]
    text = first if isinstance(first, str) else first.prompt
    return text or "x"


def retry_statuses(args: argparse.Namespace) -> tuple[str, ...]:
    """The end statuses of ``--retry`` (a :class:`UsageError` for an unknown one)."""
    if args.retry is None:
        return ()
    statuses = tuple(part.strip() for part in args.retry.split(",") if part.strip())
    unknown = [status for status in statuses if status not in END_STATUSES]
    if unknown or not statuses:
        raise UsageError(
            f"--retry takes end statuses, comma-separated ({', '.join(END_STATUSES)}), "
            f"not {args.retry!r}"
        )
    return statuses


def _resume_hint(run: RunRecord) -> str:
    """The options that resume ``run`` on the service it is bound to."""
    if run.emulator:
        return f"--resume {run.id} --emulator --service {run.service}"
    hint = f"--resume {run.id} --service {run.service} --base-url {run.origin}"
    return hint + (" with REPLICATE_API_TOKEN set" if run.service == "api" else "")


def check_bound(run: RunRecord, plan: Plan) -> None:
    """A :class:`UsageError` (before any client or emulator starts) when ``run`` is bound
    to another service than the command's."""
    target = plan.target
    emulator = target.base_url is None
    origin = "" if target.base_url is None else origin_of(target.base_url)
    try:
        check_binding(run, target.service, origin, emulator)
    except RunBoundElsewhere as error:
        raise UsageError(f"{error}: resume it there ({_resume_hint(run)})") from None


def _rows(args: argparse.Namespace) -> list[str | PromptRow]:
    rows: list[str | PromptRow] = []
    if args.prompt is not None:
        rows.append(args.prompt)
    rows.extend(args.prompts)
    if args.prompts_file is not None:
        try:
            rows.extend(load_prompts(args.prompts_file))
        except ValueError as error:
            raise UsageError(f"{args.prompts_file}: {error}") from None
    if not rows:
        raise UsageError("compare needs a PROMPT, -p PROMPT or --prompts FILE")
    return rows


class _Display:
    """The live line while a run goes (on a terminal, with rich), and the run's name
    once it is known (always, on stderr: it is what ``--resume`` needs)."""

    def __init__(self, database: Path, live: bool) -> None:
        self._database = database
        self._live_wanted = live
        self._live: Any = None
        self._last: RunProgress | None = None
        self._announced = False
        self._started = time.monotonic()

    def __enter__(self) -> _Display:
        # The live line is the `cli` extra's; without rich the run goes on without it.
        if self._live_wanted and importlib.util.find_spec("rich") is not None:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            if console.is_terminal:
                self._live = Live(
                    get_renderable=self._render,
                    console=console,
                    refresh_per_second=4,
                    transient=True,
                )
                self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, progress: RunProgress) -> None:
        self._last = progress
        if not self._announced:
            self._announced = True
            print(
                f"replicate-home: run {progress.run_id}: {progress.total} cells, "
                f"recorded in {self._database}",
                file=sys.stderr,
                flush=True,
            )

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        progress = self._last
        if progress is None:
            return Text("starting…")
        left = "" if progress.remaining is None else f" · about {progress.remaining:.0f} s left"
        line = Text(
            f"{progress.done}/{progress.total} done · {progress.running} running · "
            f"{progress.waiting} waiting for the budget · {progress.failed} failed{left} "
            f"· {time.monotonic() - self._started:.0f} s"
        )
        bar = ProgressBar(total=progress.total, completed=progress.done, width=60)
        return Group(bar, line)


def _cell_json(cell: CellRecord) -> dict[str, Any]:
    return {
        "cell": cell.cell,
        "prompt_index": cell.prompt_index,
        "model_index": cell.model_index,
        "model": cell.model,
        "prompt": cell.prompt,
        "input": dict(cell.input),
        "status": cell.status,
        "prediction_id": cell.prediction_id,
        "text": cell.output_text,
        "images": list(cell.images),
        "error": cell.error,
        "error_type": cell.error_type,
        "latency": cell.latency,
        "predict_time": cell.predict_time,
        "attempts": cell.attempt,
    }


def _summary(cells: Sequence[CellRecord], models: Sequence[str]) -> list[str]:
    lines = []
    for index, model in enumerate(models):
        statuses = Counter(cell.status or cell.state for cell in cells if cell.model_index == index)
        counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        lines.append(f"{model}: {counts}")
    return lines


async def comparison_command(plan: Plan, interrupt: Interrupt) -> int:
    """Run (or resume) a recorded prompt set; the exit status."""
    args = plan.args
    database = args.db or DEFAULT_DB
    rows = [] if args.resume else _rows(args)
    run: RunRecord | None = None
    cells: list[CellRecord] | None = None
    emulator = plan.target.base_url is None
    with interrupt.scope:
        async with _open_store(database) as store:
            if args.resume:
                try:
                    check_bound(await store.run(args.resume), plan)
                except KeyError:
                    raise CommandError(f"no run {args.resume!r} in {database}") from None
            async with open_client(plan) as client, AsyncExitStack() as viewing:
                with _Display(database, live=not args.json) as display:
                    on_progress: Callable[[RunProgress], object] = display.update
                    on_text: TextListener | None = None
                    if args.view:  # served while the run goes, texts streamed in memory
                        viewer, url = await viewing.enter_async_context(
                            served_viewer(database, "127.0.0.1", 0)
                        )
                        on_progress, on_text = Announcer(display.update, url), viewer.hub.text
                    if args.resume:
                        run = await resume_comparison(
                            client,
                            store,
                            args.resume,
                            limit=args.limit,
                            on_progress=on_progress,
                            on_text=on_text,
                            resend_in_doubt=args.resend_in_doubt,
                            retry=retry_statuses(args),
                            emulator=emulator,
                        )
                    else:
                        run = await run_comparison(
                            client,
                            store,
                            rows,
                            plan.models,
                            input=plan.inputs,
                            limit=args.limit,
                            run_id=args.name,
                            on_progress=on_progress,
                            on_text=on_text,
                            emulator=emulator,
                            **webhook_options(plan),
                        )
                if args.report is not None:
                    # While the client (and an emulator of this process) serves the images.
                    try:
                        page = await write_report(store, run.id, args.report)
                    except ImportError:
                        raise CommandError(_NEEDS_JINJA) from None
                    print(f"replicate-home: report {page}", file=sys.stderr)
            cells = await store.cells(run.id)
    if run is None or cells is None:  # interrupted: the run's name was printed at its start
        return EXIT_INTERRUPTED
    if args.json:
        json.dump([_cell_json(cell) for cell in cells], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"run {run.id} ({len(cells)} cells, {database})")
        for line in _summary(cells, run.models):
            print(f"  {line}")
    sys.stdout.flush()
    if args.allow_failures or all(cell.status == "succeeded" for cell in cells):
        return EXIT_OK
    return EXIT_FAILED


@asynccontextmanager
async def _open_store(path: Path) -> AsyncIterator[ResultsStore]:
    """The results database, or a :class:`CommandError` saying why it can't be used (a
    newer schema, not a database)."""
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(ResultsStore.open(path))
        except (ValueError, sqlite3.DatabaseError) as error:
            raise CommandError(f"{path}: {error}") from None
        yield store


async def report_command(args: argparse.Namespace) -> None:
    if not args.db.exists():
        raise CommandError(f"no results database at {args.db}")
    async with _open_store(args.db) as store:
        try:
            page = await write_report(store, args.run, args.output)
        except ImportError:
            raise CommandError(_NEEDS_JINJA) from None
        except KeyError:
            raise CommandError(f"no run {args.run!r} in {args.db}") from None
    print(page)
