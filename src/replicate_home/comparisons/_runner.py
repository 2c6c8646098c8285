"""Running a prompt set across models, and resuming a run, with every cell recorded.

A run is prompts x models cells driven through the fan-out (events as they happen,
``limit``, one cell's failure stays that cell's, leaving early cancels what the run owns).
A cell is marked ``sending`` in the store right before its create leaves, its
prediction id is committed as soon as the create answers, and its result when it ends,
so a run interrupted at any point (Ctrl-C, a crash, ``kill -9``) is resumed without
paying twice: finished cells are kept, predictions still running on the service are
followed by id, and cells never sent are sent. A cell caught between its create and the
commit of the answer (marked ``sending``, no id) is looked for in the account's
predictions on the official API (re-attached when found: the listing holds every
prediction the service created); the homepage service has no listing, so such a cell
ends "in doubt" rather than being sent a second time, unless the caller asks for it
(``resend_in_doubt``).

Columns are models or deployments (:class:`~replicate_home.Deployment`, stored as
``deployment:owner/name``); a run's webhook goes with every create, resumed ones too.

A run is bound to its service (:mod:`._binding`); a resume can also open a new attempt
of the cells that ended with given statuses (``retry``). A cell's latency runs from its
create to its end: the service's ``created_at`` to its ``completed_at`` where it gives
them, else from the recorded ``sending`` mark, so a resume never restarts it.

A cell's output files are kept in the archive beside the database as the cell ends
(:mod:`._archive`), downloaded while the run goes on; the run returns once they are
kept. A resume tries again the files a run meant to keep and has not.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio

from .._client import BaseClient
from .._exceptions import PredictionNotSent
from .._fanout import Chunk, Failed, Finished, Image, Progress, failure_prediction, failure_status
from .._models import Deployment, Prediction
from .._provider import ReplicateHome
from .._replicate_api import ReplicateAPI
from .._service import PredictionCall
from ._archive import (
    ARCHIVE_DOWNLOADS,
    DEFAULT_MAX_FILE_BYTES,
    RETRIED,
    ArchivePolicy,
    fetch_files,
    keep_cell_files,
    output_files,
)
from ._assertions import Assertion
from ._binding import check_binding, origin_of
from ._judging import Judge
from ._lost import column, find_lost_creates
from ._prompts import PromptRow, prompt_rows
from ._records import RunProgress
from ._scoring import score_run, scoring_settings
from ._store import END_STATUSES, IN_DOUBT, CellRecord, ResultsStore, RunRecord

__all__ = ["RunProgress", "TextListener", "resume_comparison", "run_comparison"]

#: ``on_text(run_id, cell, chunk)``: a cell's text output as it arrives, chunk by chunk.
TextListener = Callable[[str, int, str], object]

#: How long recording an interruption may take while the run is being cancelled.
RECORD_GRACE = 5.0

_IN_DOUBT_ERROR = (
    "its create may have been sent before the run stopped, and the homepage service "
    "can't list predictions to check: not sent again (resume with resend_in_doubt=True, "
    "or --resend-in-doubt, to send it)"
)


def _origin(client: BaseClient) -> str:
    """The client's service URL as a run is bound to it."""
    if not isinstance(client, (ReplicateAPI, ReplicateHome)):
        raise TypeError("a comparison runs on a ReplicateAPI or a ReplicateHome client")
    return origin_of(client.base_url)


async def run_comparison(
    client: BaseClient,
    store: ResultsStore,
    prompts: Sequence[str | PromptRow | Mapping[str, Any]],
    models: Sequence[str | Deployment],
    *,
    input: Mapping[str, Any] | None = None,
    limit: int | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    on_progress: Callable[[RunProgress], object] | None = None,
    webhook: str | None = None,
    webhook_events_filter: Sequence[str] | None = None,
    emulator: bool = False,
    assertions: Sequence[str | Mapping[str, Any] | Assertion] = (),
    judges: Sequence[Judge] = (),
    on_text: TextListener | None = None,
    keep_files: bool = True,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> RunRecord:
    """Run every prompt on every model, recording each cell in ``store``; return the run.

    ``prompts`` are strings, :class:`PromptRow` or mappings (``{"prompt": ..., other
    inputs}``); ``input`` is merged under every row's own inputs. ``models`` are model
    names or :class:`~replicate_home.Deployment` values (official API), mixed.
    ``webhook`` and ``webhook_events_filter`` (official API) go with every create and
    are recorded with the run, so a resumed run sends them too. The run is bound to the
    client's service and base URL; ``emulator`` says the client talks to an emulator
    started for this run (its address changes from one run to the next; a resume on a
    real service is then refused, as is one on an emulator of a run made on a real
    service). Every call is validated before the run is recorded or anything is sent.
    A cell's failure is its result, never an exception; ``on_progress`` sees a
    :class:`RunProgress` after every change, ``on_text`` each text chunk as it arrives
    (the run's name, the cell's number, the chunk: the viewer streams them). Cancelled
    (Ctrl-C), the run cancels its predictions still running and marks them
    ``interrupted``: :func:`resume_comparison` sends those again.

    ``assertions`` (specs, :class:`~._assertions.Assertion` values, callables) are
    checked on every output, with each prompt row's own; ``judges`` score every output
    of their kind that succeeded, once the cells have ended
    (:func:`~._scoring.score_run`). Both are stored with the run (callables aside), so
    a resume scores with them too.

    Each cell's output files (images, audio, video, any file) are kept in the store's
    archive as the cell ends (:meth:`ResultsStore.files` says where, or why not), each
    up to ``max_file_bytes`` (``None``: no cap); with ``keep_files=False`` none is kept
    (their URLs are recorded ``not kept``; :func:`~._archive.fetch_files` can keep them
    later, while the service still has them).
    """
    policy = ArchivePolicy(keep_files, max_file_bytes)
    rows = prompt_rows(prompts)
    checks = tuple(Assertion.parse(spec) for spec in assertions)
    judges = tuple(judges)
    for judge in judges:  # a judge the service can't run fails here, before anything
        client._prepare_call(judge.model, "x", None)
    if isinstance(models, (str, Deployment)) or not models:
        raise ValueError("models must be a non-empty list of model names or deployments")
    origin = _origin(client)
    hook, events = client._webhook_options(webhook, webhook_events_filter)
    base = dict(input or {})
    specs: list[tuple[int, int, str, str | None, Mapping[str, Any]]] = []
    calls: list[PredictionCall] = []
    for p, row in enumerate(rows):
        for m, model in enumerate(models):
            values = {**base, **row.input}
            call = client._prepare_call(model, row.prompt, values or None)
            if hook is not None:
                call = replace(call, webhook=hook, webhook_events_filter=events)
            calls.append(call)
            specs.append((p, m, str(model), row.prompt, call.input))
    settings: dict[str, Any] = {"timeout": timeout, "limit": limit, "archive": policy.settings()}
    settings.update(scoring_settings(checks, [row.assertions for row in rows], judges))
    if hook is not None:
        settings["webhook"] = hook
        settings["webhook_events_filter"] = None if events is None else list(events)
    run = await store.create_run(
        service=client._service.name,
        models=[str(model) for model in models],
        cells=specs,
        settings=settings,
        run_id=run_id,
        origin=origin,
        emulator=emulator,
    )
    cells = await store.cells(run.id)
    work = list(zip(cells, calls, strict=True))
    await _drive(client, store, run, work, limit, timeout, on_progress, 0, policy, on_text)
    callables = [check for check in checks if check.kind == "python"]
    await score_run(
        client,
        store,
        run.id,
        assertions=callables,
        limit=limit,
        timeout=timeout,
        on_progress=on_progress,
    )
    return run


def _retry_statuses(retry: Sequence[str]) -> tuple[str, ...]:
    if isinstance(retry, str):
        raise ValueError("retry must be a list of statuses, not one string")
    unknown = [status for status in retry if status not in END_STATUSES]
    if unknown:
        raise ValueError(
            f"retry takes end statuses ({', '.join(END_STATUSES)}), not {', '.join(unknown)}"
        )
    return tuple(retry)


async def resume_comparison(
    client: BaseClient,
    store: ResultsStore,
    run_id: str,
    *,
    limit: int | None = None,
    timeout: float | None = None,
    on_progress: Callable[[RunProgress], object] | None = None,
    resend_in_doubt: bool = False,
    retry: Sequence[str] = (),
    emulator: bool = False,
    assertions: Sequence[str | Mapping[str, Any] | Assertion] = (),
    judges: Sequence[Judge] = (),
    on_text: TextListener | None = None,
) -> RunRecord:
    """Finish the run ``run_id``: cells done are kept; a cell whose create answered is
    followed by its prediction id (never created again); a cell never sent (or
    ``interrupted``) is sent.

    The client must be on the service the run was recorded on (its kind and base URL;
    ``emulator`` as the run was made): else :class:`~replicate_home.RunBoundElsewhere`,
    before anything is sent.

    A cell marked ``sending`` with no id (the process stopped between its create and
    the commit of the answer) may have been created. On :class:`ReplicateAPI` it is
    looked for in the account's listing (see :mod:`._lost`: created inside the cell's
    own window, same model or deployment, version and input, claimed by no other cell
    of the store): re-attached when found, sent when not. On the homepage service,
    which can't list, it ends with the status ``"in doubt"`` (:data:`IN_DOUBT`) and is
    not sent again, unless ``resend_in_doubt``: then it, and cells that ended "in
    doubt" before, are sent.

    ``retry`` (end statuses, e.g. ``["failed", "timeout"]``; any of
    :data:`END_STATUSES`) sends the cells that ended with one of them again, each as a
    new attempt (the store keeps the earlier ones: :meth:`ResultsStore.attempts`).
    The run is then scored (:func:`~._scoring.score_run`) with its stored assertions
    and judges and the ``assertions`` and ``judges`` given (added to the run's); judge
    predictions follow the same rules as cells. ``on_text`` sees each text chunk as it
    arrives, as for :func:`run_comparison`. The output files the run meant to keep and
    has not (``pending``, ``failed``) are downloaded again, while the service still has
    them. :class:`~replicate_home.RunNotFound` (a ``KeyError``) if there is no such run,
    ``ValueError`` for an unknown status."""
    statuses = _retry_statuses(retry)
    origin = _origin(client)
    run = await store.run(run_id)
    if check_binding(run, client._service.name, origin, emulator):
        await store.bind_run(run_id, origin=origin, emulator=emulator)
        run = replace(run, origin=origin, emulator=emulator)
    if IN_DOUBT in statuses:
        resend_in_doubt = True
    if statuses:
        await store.retry(run_id, statuses)
    cells = await store.cells(run_id)
    hook = run.settings.get("webhook")
    events = run.settings.get("webhook_events_filter")
    webhook = client._webhook_options(hook, events) if hook is not None else (None, None)

    def reopened(cell: CellRecord) -> bool:
        return cell.state != "done" or (resend_in_doubt and cell.status == IN_DOUBT)

    open_cells = [cell for cell in cells if reopened(cell)]
    lost = [c for c in open_cells if c.state == "sending" and c.prediction_id is None]
    found: dict[int, Prediction] = {}
    lookup = isinstance(client, ReplicateAPI)
    if lost and isinstance(client, ReplicateAPI):
        found = await find_lost_creates(client, store, run, lost)
    work: list[tuple[CellRecord, PredictionCall]] = []
    for cell in open_cells:
        text = cell.input.get("prompt")
        rest = {key: value for key, value in cell.input.items() if key != "prompt"}
        call = client._prepare_call(
            column(cell.model), text if isinstance(text, str) else None, rest or None
        )
        if webhook[0] is not None:
            call = replace(call, webhook=webhook[0], webhook_events_filter=webhook[1])
        if cell.state == "running" and cell.prediction_id is not None:
            call = replace(call, existing=cell.prediction_id)
        elif cell.cell in found:
            prediction = found[cell.cell]
            if await store.record_sent(
                run_id, cell.cell, prediction.id, created_at=prediction.created_at, found=True
            ):
                cell = replace(cell, prediction_id=prediction.id, state="running")
                call = replace(call, existing=prediction.id)
        elif cell.state == "sending" and not lookup and not resend_in_doubt:
            await store.record_end(
                run_id, cell.cell, status=IN_DOUBT, error=_IN_DOUBT_ERROR, error_type=None
            )
            continue
        work.append((cell, call))
    done = len(cells) - len(work)
    policy = ArchivePolicy.of(run.settings)
    async with anyio.create_task_group() as group:
        if policy.keep:
            keep = partial(fetch_files, client=client, max_file_bytes=policy.max_file_bytes)
            group.start_soon(partial(keep, store, run_id, states=RETRIED))
        if work:
            await _drive(
                client, store, run, work, limit, timeout, on_progress, done, policy, on_text
            )
    await score_run(
        client,
        store,
        run_id,
        assertions=assertions,
        judges=judges,
        limit=limit,
        timeout=timeout,
        resend_in_doubt=resend_in_doubt,
        on_progress=on_progress,
    )
    return run


def _service_latency(prediction: Prediction | None) -> float | None:
    """Seconds from the service's ``created_at`` to its ``completed_at``, if it says both."""
    if prediction is None or prediction.created_at is None or prediction.completed_at is None:
        return None
    seconds = (prediction.completed_at - prediction.created_at).total_seconds()
    return seconds if seconds >= 0 else None


class _Tally:
    """Counts for :class:`RunProgress`, and the estimate of the time left."""

    def __init__(self, client: BaseClient, run_id: str, total: int, done: int) -> None:
        self.client = client
        self.run_id = run_id
        self.total = total
        self.done = done
        self.failed = 0
        self.running = 0
        self.started = anyio.current_time()
        self.latencies = 0.0
        self.ended = 0

    def snapshot(self) -> RunProgress:
        waiting = self.total - self.done - self.running
        return RunProgress(
            self.run_id,
            self.total,
            self.done,
            self.running,
            waiting,
            self.failed,
            self._remaining(waiting),
        )

    def _remaining(self, waiting: int) -> float | None:
        if self.done + self.running == self.total and self.running == 0:
            return 0.0
        latency = self.latencies / self.ended if self.ended else None
        if isinstance(self.client, ReplicateAPI):
            rate = self.client.budget.creates.allowed_per_minute / 60.0
            if latency is None:
                return None
            return waiting / rate + latency
        elapsed = anyio.current_time() - self.started
        if not self.ended or elapsed <= 0:
            return None
        left = self.total - self.done
        return left * elapsed / self.ended if math.isfinite(elapsed) else None


async def _drive(
    client: BaseClient,
    store: ResultsStore,
    run: RunRecord,
    work: list[tuple[CellRecord, PredictionCall]],
    limit: int | None,
    timeout: float | None,
    on_progress: Callable[[RunProgress], object] | None,
    already_done: int,
    policy: ArchivePolicy,
    on_text: TextListener | None = None,
) -> None:
    total = already_done + len(work)
    tally = _Tally(client, run.id, total, already_done)
    # What a cell in flight holds (its text so far, its images), dropped as it ends: the
    # run's memory follows the cells in flight, not the cells ended.
    texts: dict[int, list[str]] = {}
    images: dict[int, list[str]] = {}
    running: set[int] = set()  # created, not ended
    # When each cell's create was about to leave (this machine's clock): recorded by an
    # earlier process for a cell followed by id, else marked below.
    sending: list[datetime | None] = [cell.sending_at for cell, _ in work]
    deadline = client._timeout if timeout is None else timeout

    def report() -> None:
        if on_progress is not None:
            on_progress(tally.snapshot())

    def mark(index: int) -> Callable[[], Awaitable[None]]:
        async def before_create() -> None:
            cell = work[index][0]
            sending[index] = await store.record_sending(run.id, cell.cell, deadline=deadline)

        return before_create

    def latency(index: int, prediction: Prediction | None, fallback: float) -> float:
        """From the service's own times, else from the recorded mark, else as measured."""
        measured = _service_latency(prediction)
        if measured is not None:
            return measured
        mark_time = sending[index]
        if mark_time is not None:
            return (datetime.now(timezone.utc) - mark_time).total_seconds()
        return fallback

    report()
    # Marked "sending" right before each create leaves: a cell caught between its create
    # and the commit of the answer is then known to be in doubt, never silently re-sent.
    calls = [replace(call, before_create=mark(index)) for index, (_, call) in enumerate(work)]
    downloads = anyio.CapacityLimiter(ARCHIVE_DOWNLOADS)
    try:
        # The files of each ended cell download in this group while the run goes on.
        async with (
            anyio.create_task_group() as archiving,
            client._fan_out_calls(calls, limit=limit, timeout=timeout) as events,
        ):
            async for event in events:
                index = event.index
                cell = work[index][0]
                if isinstance(event, Progress):
                    if index not in running:
                        running.add(index)
                        tally.running += 1
                        if cell.prediction_id != event.prediction.id:
                            await store.record_sent(
                                run.id,
                                cell.cell,
                                event.prediction.id,
                                created_at=event.prediction.created_at,
                            )
                        report()
                elif isinstance(event, Chunk):
                    texts.setdefault(index, []).append(event.text)
                    if on_text is not None:
                        on_text(run.id, cell.cell, event.text)
                elif isinstance(event, Image):
                    images.setdefault(index, []).extend(event.image.images)
                elif isinstance(event, Finished):
                    prediction = event.prediction
                    cell_text, cell_images = texts.pop(index, []), images.pop(index, [])
                    files = prediction.files if output_files(prediction.output) else []
                    # Text stays in the database; an output that is only files has none.
                    only_files = files and not isinstance(prediction.output, dict)
                    text = None if cell_images or only_files else "".join(cell_text)
                    seconds = latency(index, prediction, prediction.elapsed)
                    await store.record_end(
                        run.id,
                        cell.cell,
                        status=prediction.status,
                        prediction_id=prediction.id,
                        output_text=text,
                        images=cell_images,
                        latency=seconds,
                        predict_time=prediction.predict_time,
                        created_at=prediction.created_at,
                        completed_at=prediction.completed_at,
                        files=[file.url for file in files],
                        keep_files=policy.keep,
                    )
                    if files and policy.keep:
                        archiving.start_soon(
                            keep_cell_files, store, run.id, cell.cell, files, policy, downloads
                        )
                    tally.running -= index in running
                    running.discard(index)
                    tally.done += 1
                    tally.ended += 1
                    tally.latencies += seconds
                    report()
                elif isinstance(event, Failed):
                    error = event.error
                    last = failure_prediction(error)
                    prediction_id = getattr(error, "prediction_id", None)
                    if isinstance(error, PredictionNotSent):
                        seconds = event.elapsed  # nothing was created: no create to count from
                    else:
                        seconds = latency(index, last, event.elapsed)
                    await store.record_end(
                        run.id,
                        cell.cell,
                        status=failure_status(error),
                        prediction_id=prediction_id if isinstance(prediction_id, str) else None,
                        output_text="".join(texts.pop(index, [])) or None,
                        error=str(error),
                        error_type=type(error).__name__,
                        latency=seconds,
                        predict_time=None if last is None else last.predict_time,
                        created_at=None if last is None else last.created_at,
                        completed_at=None if last is None else last.completed_at,
                    )
                    images.pop(index, None)
                    tally.running -= index in running
                    running.discard(index)
                    tally.done += 1
                    tally.failed += 1
                    report()
    except BaseException:
        # Leaving cancelled the predictions still running: resume sends them again.
        left = [work[i][0].cell for i in sorted(running)]
        if left:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + RECORD_GRACE):
                await store.record_interrupted(run.id, left)
        raise
