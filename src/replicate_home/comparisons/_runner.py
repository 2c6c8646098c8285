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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any

import anyio

from .._client import BaseClient
from .._fanout import Chunk, Failed, Finished, Image, Progress, failure_prediction, failure_status
from .._models import Deployment, Prediction
from .._replicate_api import ReplicateAPI
from .._service import PredictionCall
from ._prompts import PromptRow, prompt_rows
from ._store import IN_DOUBT, CellRecord, ResultsStore, RunRecord

__all__ = ["RunProgress", "resume_comparison", "run_comparison"]

#: How far before a run's recorded start the service's listing is searched for creates
#: whose answer the run never recorded (clocks differ).
CLOCK_SLACK = timedelta(minutes=5)

#: How long recording an interruption may take while the run is being cancelled.
RECORD_GRACE = 5.0

#: How a deployment column is named in the store (``deployment:owner/name``, as events
#: and results name it): no model name has a colon before its slash.
_DEPLOYMENT = "deployment:"

_IN_DOUBT_ERROR = (
    "its create may have been sent before the run stopped, and the homepage service "
    "can't list predictions to check: not sent again (resume with resend_in_doubt=True, "
    "or --resend-in-doubt, to send it)"
)


def _column(model: str) -> str | Deployment:
    """A stored column name as the client takes it."""
    if model.startswith(_DEPLOYMENT):
        return Deployment(model[len(_DEPLOYMENT) :])
    return model


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: cells ``done`` (of which ``failed`` did not succeed),
    ``running`` (created, not ended), ``waiting`` (not created yet: for the rate budget
    or ``limit``), out of ``total``; ``remaining`` estimates the seconds left (``None``
    until it can), from the create rate the budget allows and the latency so far."""

    run_id: str
    total: int
    done: int
    running: int
    waiting: int
    failed: int
    remaining: float | None


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True)


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
) -> RunRecord:
    """Run every prompt on every model, recording each cell in ``store``; return the run.

    ``prompts`` are strings, :class:`PromptRow` or mappings (``{"prompt": ..., other
    inputs}``); ``input`` is merged under every row's own inputs. ``models`` are model
    names or :class:`~replicate_home.Deployment` values (official API), mixed.
    ``webhook`` and ``webhook_events_filter`` (official API) go with every create and
    are recorded with the run, so a resumed run sends them too. Every call is validated
    before the run is recorded or anything is sent. A cell's failure is its result,
    never an exception; ``on_progress`` sees a :class:`RunProgress` after every change.
    Cancelled (Ctrl-C), the run cancels its predictions still running and marks them
    ``interrupted``: :func:`resume_comparison` sends those again.
    """
    rows = prompt_rows(prompts)
    if isinstance(models, (str, Deployment)) or not models:
        raise ValueError("models must be a non-empty list of model names or deployments")
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
    settings: dict[str, Any] = {"timeout": timeout, "limit": limit}
    if hook is not None:
        settings["webhook"] = hook
        settings["webhook_events_filter"] = None if events is None else list(events)
    run = await store.create_run(
        service=client._service.name,
        models=[str(model) for model in models],
        cells=specs,
        settings=settings,
        run_id=run_id,
    )
    cells = await store.cells(run.id)
    await _drive(
        client, store, run, list(zip(cells, calls, strict=True)), limit, timeout, on_progress, 0
    )
    return run


async def resume_comparison(
    client: BaseClient,
    store: ResultsStore,
    run_id: str,
    *,
    limit: int | None = None,
    timeout: float | None = None,
    on_progress: Callable[[RunProgress], object] | None = None,
    resend_in_doubt: bool = False,
) -> RunRecord:
    """Finish the run ``run_id``: cells done are kept; a cell whose create answered is
    followed by its prediction id (never created again); a cell never sent (or
    ``interrupted``) is sent.

    A cell marked ``sending`` with no id (the process stopped between its create and
    the commit of the answer) may have been created. On :class:`ReplicateAPI` it is
    looked for in the account's predictions created since the run began (same model or
    deployment, same input): re-attached when found, sent when not (the listing holds
    every prediction the service created). On the homepage service, which can't list,
    it ends with the status ``"in doubt"`` (:data:`IN_DOUBT`) and is not sent again,
    unless ``resend_in_doubt``: then it, and cells that ended "in doubt" before, are
    sent. ``KeyError`` if there is no such run."""
    run = await store.run(run_id)
    cells = await store.cells(run_id)
    hook = run.settings.get("webhook")
    events = run.settings.get("webhook_events_filter")
    webhook = client._webhook_options(hook, events) if hook is not None else (None, None)
    lookup = isinstance(client, ReplicateAPI)

    def reopened(cell: CellRecord) -> bool:
        return cell.state != "done" or (resend_in_doubt and cell.status == IN_DOUBT)

    open_cells = [cell for cell in cells if reopened(cell)]
    unsent = [cell for cell in open_cells if cell.prediction_id is None]
    found = await _find_unrecorded(client, run, cells, unsent) if unsent and lookup else {}
    work: list[tuple[CellRecord, PredictionCall]] = []
    for cell in open_cells:
        text = cell.input.get("prompt")
        rest = {key: value for key, value in cell.input.items() if key != "prompt"}
        call = client._prepare_call(
            _column(cell.model), text if isinstance(text, str) else None, rest or None
        )
        if webhook[0] is not None:
            call = replace(call, webhook=webhook[0], webhook_events_filter=webhook[1])
        if cell.state == "running" and cell.prediction_id is not None:
            call = replace(call, existing=cell.prediction_id)
        elif cell.cell in found:
            prediction = found[cell.cell]
            await store.record_sent(run_id, cell.cell, prediction.id)
            cell = replace(cell, prediction_id=prediction.id, state="running")
            call = replace(call, existing=prediction.id)
        elif cell.state == "sending" and not lookup and not resend_in_doubt:
            await store.record_end(
                run_id, cell.cell, status=IN_DOUBT, error=_IN_DOUBT_ERROR, error_type=None
            )
            continue
        work.append((cell, call))
    done = len(cells) - len(work)
    if work:
        await _drive(client, store, run, work, limit, timeout, on_progress, done)
    return run


async def _find_unrecorded(
    client: BaseClient, run: RunRecord, cells: Sequence[CellRecord], unsent: Sequence[CellRecord]
) -> dict[int, Prediction]:
    """Predictions the service created for ``unsent`` cells whose answer the run never
    recorded: matched by model and input, oldest first, each claimed once."""
    if not isinstance(client, ReplicateAPI):
        return {}
    known = {cell.prediction_id for cell in cells if cell.prediction_id is not None}
    candidates: list[Prediction] = []
    async for prediction in client.list(created_after=run.created_at - CLOCK_SLACK):
        if prediction.id not in known:
            candidates.append(prediction)
    candidates.reverse()  # the listing is newest first
    found: dict[int, Prediction] = {}
    claimed: set[str] = set()
    for cell in unsent:
        if cell.state == "interrupted":
            continue  # its prediction was cancelled when the run was left
        wanted = _canonical(cell.input)
        column = _column(cell.model)
        for prediction in candidates:
            if isinstance(column, Deployment):
                same = prediction.deployment == column.name
            else:  # a model's own prediction, not a deployment's of the same model
                same = (
                    prediction.deployment is None
                    and prediction.model.split(":", 1)[0] == column.split(":", 1)[0]
                )
            if prediction.id not in claimed and same and _canonical(prediction.input) == wanted:
                claimed.add(prediction.id)
                found[cell.cell] = prediction
                break
    return found


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
) -> None:
    total = already_done + len(work)
    tally = _Tally(client, run.id, total, already_done)
    texts: list[list[str]] = [[] for _ in work]
    images: list[list[str]] = [[] for _ in work]
    created: list[bool] = [False] * len(work)
    ended: list[bool] = [False] * len(work)

    def report() -> None:
        if on_progress is not None:
            on_progress(tally.snapshot())

    report()
    # Marked "sending" right before each create leaves: a cell caught between its create
    # and the commit of the answer is then known to be in doubt, never silently re-sent.
    calls = [
        replace(call, before_create=partial(store.record_sending, run.id, cell.cell))
        for cell, call in work
    ]
    try:
        async with client._fan_out_calls(calls, limit=limit, timeout=timeout) as events:
            async for event in events:
                index = event.index
                cell = work[index][0]
                if isinstance(event, Progress):
                    if not created[index]:
                        created[index] = True
                        tally.running += 1
                        if cell.prediction_id != event.prediction.id:
                            await store.record_sent(run.id, cell.cell, event.prediction.id)
                        report()
                elif isinstance(event, Chunk):
                    texts[index].append(event.text)
                elif isinstance(event, Image):
                    images[index].extend(event.image.images)
                elif isinstance(event, Finished):
                    prediction = event.prediction
                    text = "".join(texts[index]) if not images[index] else None
                    await store.record_end(
                        run.id,
                        cell.cell,
                        status=prediction.status,
                        prediction_id=prediction.id,
                        output_text=text,
                        images=images[index],
                        latency=prediction.elapsed,
                        predict_time=prediction.predict_time,
                    )
                    ended[index] = True
                    tally.running -= created[index]
                    tally.done += 1
                    tally.ended += 1
                    tally.latencies += prediction.elapsed
                    report()
                elif isinstance(event, Failed):
                    error = event.error
                    last = failure_prediction(error)
                    prediction_id = getattr(error, "prediction_id", None)
                    await store.record_end(
                        run.id,
                        cell.cell,
                        status=failure_status(error),
                        prediction_id=prediction_id if isinstance(prediction_id, str) else None,
                        output_text="".join(texts[index]) or None,
                        error=str(error),
                        error_type=type(error).__name__,
                        latency=event.elapsed,
                        predict_time=None if last is None else last.predict_time,
                    )
                    ended[index] = True
                    tally.running -= created[index]
                    tally.done += 1
                    tally.failed += 1
                    report()
    except BaseException:
        # Leaving cancelled the predictions still running: resume sends them again.
        left = [work[i][0].cell for i in range(len(work)) if created[i] and not ended[i]]
        if left:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + RECORD_GRACE):
                await store.record_interrupted(run.id, left)
        raise
