"""``replicate-home compare`` with a prompt set (recorded, resumable, reported) and
``replicate-home report``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from .._exceptions import RunBoundElsewhere, RunNotFound
from ..comparisons import (
    END_STATUSES,
    ArchivedFile,
    CellRecord,
    CheckRecord,
    JudgementRecord,
    ModelSummary,
    PromptRow,
    ResultsStore,
    RunProgress,
    RunRecord,
    load_prompts,
    resume_comparison,
    run_comparison,
    summarize,
    write_report,
)
from ..comparisons._binding import check_binding, origin_of
from ..comparisons._prompts import prompt_rows
from ..comparisons._runner import TextListener
from ._common import (
    DEFAULT_FILE_CAP,
    DEFAULT_TIMEOUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Interrupt,
    Plan,
    UsageError,
    open_client,
    webhook_options,
)
from ._run_view import RunDisplay, count
from ._save import nearest_existing
from ._scoring import scoring_from_args, summary_lines, threshold_lines
from ._view import Announcer, served_viewer

__all__ = [
    "DEFAULT_DB",
    "check_database",
    "check_prompt_set",
    "comparison_command",
    "open_store",
    "report_command",
]

_NEEDS_JINJA = "the report needs Jinja2: pip install 'replicate-home[report]'"

#: How many run names an unknown run's error lists (the latest).
_RUNS_NAMED = 5

#: The results database when ``--db`` is not given.
DEFAULT_DB = Path("replicate-home.db")


def check_prompt_set(args: argparse.Namespace) -> list[PromptRow]:
    """Check a prompt-set ``compare`` before anything starts (a :class:`UsageError`):
    its options, the report's extra and file, the database a resume needs; the rows of
    a new run (none for a resume)."""
    if args.report is not None:
        check_report_page(args.report, "--report")
    if args.resume:
        if args.models or args.prompts or args.prompts_file or args.prompt or args.name:
            raise UsageError("--resume takes the run's prompts and models from the database")
        if args.webhook is not None or args.webhook_events is not None:
            raise UsageError("--resume sends the webhook recorded with the run")
        if not args.keep_files or args.max_file_bytes != DEFAULT_FILE_CAP:
            raise UsageError("--resume keeps the output files as the run was told to")
        retry_statuses(args)
        scoring_from_args(args)
        check_database(args.db or DEFAULT_DB, "--resume")
        return []
    if args.resend_in_doubt:
        raise UsageError("--resend-in-doubt goes with --resume RUN")
    if args.retry is not None:
        raise UsageError("--retry goes with --resume RUN")
    rows = _rows(args)
    scoring_from_args(args)
    if not args.models:
        raise UsageError("compare needs at least one -m MODEL")
    return rows


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


def _resume_hint(run: RunRecord, database: Path | None) -> str:
    """The command that resumes ``run`` on the service it is bound to."""
    command = f"replicate-home compare --resume {run.id}"
    if database is not None:
        command += f" --db {database}"
    if run.emulator:
        return f"{command} --emulator --service {run.service}"
    command += f" --service {run.service} --base-url {run.origin}"
    return command + (", with REPLICATE_API_TOKEN set" if run.service == "api" else "")


def check_bound(run: RunRecord, plan: Plan) -> None:
    """A :class:`UsageError` (before any client or emulator starts) when ``run`` is bound
    to another service than the command's."""
    target = plan.target
    emulator = target.base_url is None
    origin = "" if target.base_url is None else origin_of(target.base_url)
    try:
        check_binding(run, target.service, origin, emulator)
    except RunBoundElsewhere as error:
        hint = _resume_hint(run, plan.args.db)
        raise UsageError(f"{error}: resume it there: {hint}") from None


def check_report_page(page: Path, option: str) -> None:
    """The report's extra is installed and ``page`` can be written (not a directory,
    under a directory), or a :class:`UsageError`: found out before a run, not after."""
    if importlib.util.find_spec("jinja2") is None:
        raise UsageError(_NEEDS_JINJA)
    if page.is_dir():
        raise UsageError(
            f"{option} {page} is a directory: give the page's file name ({page / 'report.html'})"
        )
    parent = nearest_existing(page.parent)
    if not parent.is_dir():
        raise UsageError(f"{option} {page}: {parent} is a file, not a directory")


def check_database(database: Path, command: str) -> None:
    """A results database that must already exist (``--resume``, ``report``): never
    created by them, or a :class:`UsageError`."""
    if not database.is_file():
        where = "" if database != DEFAULT_DB else " (the default; --db PATH names another)"
        raise UsageError(
            f"{command}: no results database at {database}{where}: a prompt-set compare "
            "records its runs there"
        )


def _rows(args: argparse.Namespace) -> list[PromptRow]:
    rows: list[str | PromptRow] = []
    if args.prompt is not None:
        rows.append(args.prompt)
    rows.extend(args.prompts)
    if args.prompts_file is not None:
        try:
            rows.extend(load_prompts(args.prompts_file))
        except OSError as error:
            raise UsageError(f"--prompts {args.prompts_file}: {_os_problem(error)}") from None
        except ValueError as error:
            raise UsageError(f"--prompts {args.prompts_file}: {error}") from None
    if not rows:
        raise UsageError("compare needs a PROMPT, -p PROMPT or --prompts FILE")
    try:
        return prompt_rows(rows)
    except ValueError as error:
        raise UsageError(f"the prompt set: {error}") from None


def _os_problem(error: OSError) -> str:
    """What an OS error says, without its number or the file name said already."""
    return (error.strerror or str(error)).lower()


async def _check_run_name(store: ResultsStore, args: argparse.Namespace, database: Path) -> None:
    """The run to resume exists; the name of a new run is free: a :class:`UsageError`
    with the way out, before anything is sent."""
    if args.resume:
        try:
            await store.run(args.resume)
        except RunNotFound:
            raise UsageError(await _no_such_run(store, args.resume, database)) from None
    elif args.name:
        try:
            await store.run(args.name)
        except RunNotFound:
            return
        raise UsageError(
            f"a run named {args.name!r} is already in {database}: --resume {args.name} "
            "finishes it, or give another --name"
        )


async def _no_such_run(store: ResultsStore, name: str, database: Path) -> str:
    """ "No run NAME", and the names there are (the latest few)."""
    runs = [run.id for run in await store.runs()]
    if not runs:
        return f"no run {name!r} in {database}: it holds no run yet"
    latest = ", ".join(runs[-_RUNS_NAMED:])
    more = f" (the latest {_RUNS_NAMED} of {len(runs)})" if len(runs) > _RUNS_NAMED else ""
    return f"no run {name!r} in {database}; its runs{more}: {latest}"


def _file_json(file: ArchivedFile) -> dict[str, Any]:
    return {
        "state": file.state,
        "path": None if file.path is None else str(file.path),
        "content_type": file.content_type,
        "size": file.size,
        "sha256": file.sha256,
        "error": file.error,
    }


def _cell_json(cell: CellRecord, files: Sequence[ArchivedFile]) -> dict[str, Any]:
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
        "files": [_file_json(file) for file in files if file.cell == cell.cell],
    }


def _summary(cells: Sequence[CellRecord], models: Sequence[str]) -> list[str]:
    lines = []
    for index, model in enumerate(models):
        statuses = Counter(cell.status or cell.state for cell in cells if cell.model_index == index)
        counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        lines.append(f"{model}: {counts}")
    return lines


async def comparison_command(plan: Plan, interrupt: Interrupt) -> int:
    """Run (or resume) a recorded prompt set; the exit status. Ctrl-C stops it, prints
    the cells so far as the end would, and the command that finishes it."""
    args = plan.args
    database = args.db or DEFAULT_DB
    run: RunRecord | None = None
    emulator = plan.target.base_url is None
    assertions, judges = scoring_from_args(args)
    async with open_store(database) as store:
        await _check_run_name(store, args, database)
        if args.resume:
            check_bound(await store.run(args.resume), plan)
        with RunDisplay(database, live=not args.json, limit=args.limit) as display, interrupt.scope:
            async with open_client(plan) as client, AsyncExitStack() as viewing:
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
                        assertions=assertions,
                        judges=judges,
                    )
                else:
                    run = await run_comparison(
                        client,
                        store,
                        list(plan.rows),
                        plan.models,
                        input=plan.inputs,
                        limit=args.limit,
                        run_id=args.name,
                        on_progress=on_progress,
                        on_text=on_text,
                        emulator=emulator,
                        assertions=assertions,
                        judges=judges,
                        keep_files=args.keep_files,
                        max_file_bytes=args.max_file_bytes,
                        **webhook_options(plan),
                    )
                if args.report is not None:
                    args.report.parent.mkdir(parents=True, exist_ok=True)
                    page = await write_report(store, run.id, args.report)
                    print(f"replicate-home: report {page}", file=sys.stderr)
        run_id = run.id if run is not None else display.run_id
        if run_id is None:  # stopped before the run was recorded: nothing to resume
            return EXIT_INTERRUPTED
        record = await store.run(run_id)
        cells = await store.cells(run_id)
        files = await store.files(run_id)
        checks = await store.checks(run_id)
        judgements = await store.judgements(run_id)
    passed: dict[int, bool] = {}
    for check in checks:
        passed[check.cell] = passed.get(check.cell, True) and check.outcome == "passed"
    summaries = summarize(cells, checks=passed, scores=judgements, models=record.models)
    if args.json:
        by_cell = _scores_by_cell(checks, judgements)
        rows = [{**_cell_json(cell, files), **by_cell.get(cell.cell, {})} for cell in cells]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        _print_run(record, cells, database, summaries)
    if run is None:
        print(
            f"replicate-home: run {run_id} stopped; to finish it: {resume_command(args, run_id)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    missed = threshold_lines(summaries, args)
    for line in missed:
        print(f"replicate-home: below the threshold: {line}", file=sys.stderr)
    if missed:
        return EXIT_FAILED
    if args.allow_failures or all(cell.status == "succeeded" for cell in cells):
        return EXIT_OK
    return EXIT_FAILED


def _print_run(
    run: RunRecord,
    cells: Sequence[CellRecord],
    database: Path,
    summaries: Sequence[ModelSummary],
) -> None:
    """The run's end summary: a model's statuses, then its numbers and commonest errors."""
    print(f"run {run.id} ({count(len(cells), 'cell')}, {database})")
    numbers = {summary.model: summary for summary in summaries}
    for model, line in zip(run.models, _summary(cells, run.models), strict=True):
        print(f"  {line}")
        for detail in summary_lines(numbers[model]):
            print(f"    {detail}")
    sys.stdout.flush()


def _scores_by_cell(
    checks: Sequence[CheckRecord], judgements: Sequence[JudgementRecord]
) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Each cell's assertion results and judge verdicts, for ``--json``."""
    scores: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for check in checks:
        scores.setdefault(check.cell, {"checks": [], "judgements": []})["checks"].append(
            {"name": check.name, "outcome": check.outcome, "reason": check.reason}
        )
    for judgement in judgements:
        entry = scores.setdefault(judgement.cell, {"checks": [], "judgements": []})
        entry["judgements"].append(
            {
                "judge": judgement.model,
                "status": judgement.status,
                "score": judgement.score,
                "answer": judgement.answer,
                "reason": judgement.reason,
                "error": judgement.error,
            }
        )
    return scores


def resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command line that finishes run ``run_id`` as this one would have: the same
    database, service and options (the prompts and models are the database's)."""
    parts = ["replicate-home", "compare", "--resume", run_id]
    if args.db is not None:
        parts += ["--db", str(args.db)]
    if args.emulator:
        parts.append("--emulator")
    options = (
        ("--service", args.service, None),
        ("--base-url", args.base_url, None),
        ("--limit", args.limit, None),
        ("--timeout", args.timeout, DEFAULT_TIMEOUT),
        ("--poll-interval", args.poll_interval, None),
        ("--backend", args.backend, "asyncio"),
        ("--report", args.report, None),
    )
    for option, value, default in options:
        if value != default:
            parts += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    parts += [
        flag
        for flag, on in (
            ("--json", args.json),
            ("--allow-failures", args.allow_failures),
            ("--view", args.view),
        )
        if on
    ]
    return shlex.join(parts)


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[ResultsStore]:
    """The results database, or a :class:`UsageError` saying why it can't be used (a
    newer schema, not a database)."""
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(ResultsStore.open(path))
        except (ValueError, sqlite3.DatabaseError) as error:
            raise UsageError(f"{path}: {error}") from None
        yield store


async def report_command(args: argparse.Namespace) -> None:
    """``replicate-home report RUN``: every check (the extra, the database, the run, the
    page) before the page is written."""
    check_report_page(args.output, "-o")
    check_database(args.db, "report")
    async with open_store(args.db) as store:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Files the Files API serves from the API's own origin need the token; it
            # goes to the run's recorded origin only.
            token = os.environ.get("REPLICATE_API_TOKEN") if args.fetch else None
            page = await write_report(
                store, args.run, args.output, fetch=args.fetch, api_token=token or None
            )
        except RunNotFound:
            raise UsageError(await _no_such_run(store, args.run, args.db)) from None
    print(page)
