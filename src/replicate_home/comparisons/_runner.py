"""Running a prompt set across models, and resuming a run, with every cell recorded.

A run is prompts x models cells driven through the fan-out (events as they happen,
``limit``, one cell's failure stays that cell's, leaving early cancels what the run owns).
Each cell's prediction id is committed to the store as soon as its create answers and
its result when it ends, so a run interrupted at any point (Ctrl-C, a crash, ``kill -9``)
is resumed without paying twice: finished cells are kept, predictions still running on
the service are followed by id, and cells never sent are sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import anyio

from .._client import BaseClient
from .._exceptions import PredictionCanceled, PredictionFailed, PredictionNotSent, PredictionTimeout
from .._fanout import Chunk, Failed, Finished, Image, Progress
from .._models import Prediction
from .._replicate_api import ReplicateAPI
from .._service import PredictionCall
from ._prompts import PromptRow, prompt_rows
from ._store import CellRecord, ResultsStore, RunRecord

__all__ = ["RunProgress", "resume_comparison", "run_comparison"]

#: How far before a run's recorded start the service's listing is searched for creates
#: whose answer the run never recorded (clocks differ).
CLOCK_SLACK = timedelta(minutes=5)

#: How long recording an interruption may take while the run is being cancelled.
RECORD_GRACE = 5.0


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


def _failure_status(error: Exception) -> str:
    if isinstance(error, PredictionFailed):
        return "failed"
    if isinstance(error, PredictionCanceled):
        return error.status
    if isinstance(error, PredictionTimeout):
        return "timeout"
    if isinstance(error, PredictionNotSent):
        return "not sent"
    return "error"


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True)


async def run_comparison(
    client: BaseClient,
    store: ResultsStore,
    prompts: Sequence[str | PromptRow | Mapping[str, Any]],
    models: Sequence[str],
    *,
    input: Mapping[str, Any] | None = None,
    limit: int | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    on_progress: Callable[[RunProgress], object] | None = None,
) -> RunRecord:
    """Run every prompt on every model, recording each cell in ``store``; return the run.

    ``prompts`` are strings, :class:`PromptRow` or mappings (``{"prompt": ..., other
    inputs}``); ``input`` is merged under every row's own inputs. Every call is
    validated before the run is recorded or anything is sent. A cell's failure is its
    result, never an exception; ``on_progress`` sees a :class:`RunProgress` after every
    change. Cancelled (Ctrl-C), the run cancels its predictions still running and marks
    them ``interrupted``: :func:`resume_comparison` sends those again.
    """
    rows = prompt_rows(prompts)
    if isinstance(models, str) or not models:
        raise ValueError("models must be a non-empty list of model names")
    base = dict(input or {})
    specs: list[tuple[int, int, str, str | None, Mapping[str, Any]]] = []
    calls: list[PredictionCall] = []
    for p, row in enumerate(rows):
        for m, model in enumerate(models):
            values = {**base, **row.input}
            call = client._prepare_call(model, row.prompt, values or None)
            calls.append(call)
            specs.append((p, m, model, row.prompt, call.input))
    run = await store.create_run(
        service=client._service.name,
        models=list(models),
        cells=specs,
        settings={"timeout": timeout, "limit": limit},
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
) -> RunRecord:
    """Finish the run ``run_id``: cells done are kept; a cell whose create answered is
    followed by its prediction id (never created again); a cell never sent (or
    ``interrupted``) is sent. On :class:`ReplicateAPI`, a cell with no recorded id is
    first looked for in the account's predictions created since the run began (same
    model, same input), in case the process died between its create's answer and the
    commit. ``KeyError`` if there is no such run."""
    run = await store.run(run_id)
    cells = await store.cells(run_id)
    open_cells = [cell for cell in cells if cell.state != "done"]
    unsent = [cell for cell in open_cells if cell.prediction_id is None]
    found = await _find_unrecorded(client, run, cells, unsent) if unsent else {}
    work: list[tuple[CellRecord, PredictionCall]] = []
    for cell in open_cells:
        text = cell.input.get("prompt")
        rest = {key: value for key, value in cell.input.items() if key != "prompt"}
        call = client._prepare_call(
            cell.model, text if isinstance(text, str) else None, rest or None
        )
        if cell.state == "running" and cell.prediction_id is not None:
            call = replace(call, existing=cell.prediction_id)
        elif cell.cell in found:
            prediction = found[cell.cell]
            await store.record_sent(run_id, cell.cell, prediction.id)
            cell = replace(cell, prediction_id=prediction.id, state="running")
            call = replace(call, existing=prediction.id)
        work.append((cell, call))
    done = len(cells) - len(open_cells)
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
        model = cell.model.split(":", 1)[0]
        for prediction in candidates:
            if (
                prediction.id not in claimed
                and prediction.model.split(":", 1)[0] == model
                and _canonical(prediction.input) == wanted
            ):
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
    calls = [call for _, call in work]
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
                    last = getattr(error, "prediction", None)
                    prediction_id = getattr(error, "prediction_id", None)
                    await store.record_end(
                        run.id,
                        cell.cell,
                        status=_failure_status(error),
                        prediction_id=prediction_id if isinstance(prediction_id, str) else None,
                        output_text="".join(texts[index]) or None,
                        error=str(error),
                        error_type=type(error).__name__,
                        latency=event.elapsed,
                        predict_time=last.predict_time if isinstance(last, Prediction) else None,
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
