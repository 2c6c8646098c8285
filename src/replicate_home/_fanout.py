"""Several predictions at once: events as they happen, ``compare`` and ``race``.

Each model runs in a task of a task group that the ``async with`` owns; events travel to
the caller over one memory stream, so a fast model's events are never held back by a
slow one. Leaving the block cancels whatever still runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._engine import Engine
from ._exceptions import (
    AllPredictionsFailed,
    PredictionCanceled,
    PredictionFailed,
    PredictionNotSent,
    PredictionTimeout,
)
from ._models import Deployment, ImageResponse, Prediction
from ._prompt import Messages
from ._run import Output, follow
from ._schedule import check_seconds
from ._service import PredictionCall, Service

__all__ = [
    "Chunk",
    "ComparisonResult",
    "Event",
    "Failed",
    "FanOut",
    "Finished",
    "Image",
    "Progress",
    "ResultCollector",
    "StatusChanged",
    "compare_results",
    "failure_prediction",
    "failure_status",
    "first_success",
    "open_fan_out",
]


@dataclass(frozen=True)
class Chunk:
    """A new piece of a text model's output."""

    index: int
    model: str
    text: str


@dataclass(frozen=True)
class Image:
    """An image model's result: every image of the prediction."""

    index: int
    model: str
    image: ImageResponse


@dataclass(frozen=True)
class StatusChanged:
    """The prediction's status changed (the first status counts as a change)."""

    index: int
    model: str
    status: str


@dataclass(frozen=True)
class Progress:
    """The prediction's state after a poll (only with ``progress=True``)."""

    index: int
    model: str
    prediction: Prediction


@dataclass(frozen=True)
class Finished:
    """The model's prediction succeeded; its last event."""

    index: int
    model: str
    prediction: Prediction


@dataclass(frozen=True)
class Failed:
    """The model's prediction failed, timed out or could not run; its last event.

    ``elapsed`` is seconds from the model's turn starting to the failure.
    """

    index: int
    model: str
    error: Exception
    elapsed: float = 0.0


#: Any event of a fan-out. Every event has ``index`` (the model's position in
#: ``models``) and ``model`` (its resolved name).
Event = Chunk | Image | StatusChanged | Progress | Finished | Failed


@dataclass
class _Shared:
    """State the model tasks share with the caller's side of the stream."""

    error: Exception | None = None
    error_delivered: bool = False


class FanOut:
    """The events of a fan-out, in the order they happened; iterate with ``async for``."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event], shared: _Shared) -> None:
        self._receive = receive
        self._shared = shared

    def __aiter__(self) -> FanOut:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            error = self._shared.error
            if error is not None and not self._shared.error_delivered:
                self._shared.error_delivered = True
                raise error from None
            raise StopAsyncIteration from None


def check_models(models: object) -> list[str | Deployment]:
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise ValueError("models must be a list of model names or aliases")
    if not models:
        raise ValueError("models must not be empty")
    return list(models)


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1 or None, not {limit!r}")
    return limit


def open_fan_out(
    engine: Engine,
    service: Service,
    models: Sequence[str | Deployment],
    messages: Messages | None = None,
    *,
    prompt: str | None = None,
    input: Mapping[str, Any] | None = None,
    limit: int | None = None,
    timeout: float | None = None,
    fail_fast: bool = False,
    progress: bool = False,
    adjust: Callable[[PredictionCall], PredictionCall] | None = None,
) -> AbstractAsyncContextManager[FanOut]:
    """Validate everything (no request is sent for a bad call), then run the models.
    ``adjust`` completes each prepared call (a client's webhook options, say)."""
    calls = [service.prepare(model, messages, prompt, input) for model in check_models(models)]
    if adjust is not None:
        calls = [adjust(call) for call in calls]
    return _fan_out(
        engine,
        calls,
        limit=check_limit(limit),
        timeout=None if timeout is None else check_seconds(timeout, "timeout"),
        fail_fast=fail_fast,
        progress=progress,
    )


def fan_out_calls(
    engine: Engine,
    calls: Sequence[PredictionCall],
    *,
    limit: int | None = None,
    timeout: float | None = None,
    progress: bool = False,
) -> AbstractAsyncContextManager[FanOut]:
    """Run calls already prepared (each may carry its own input, or follow an existing
    prediction) with the fan-out's guarantees; event ``index`` is the call's position."""
    if not calls:
        raise ValueError("there must be at least one call")
    return _fan_out(
        engine,
        list(calls),
        limit=check_limit(limit),
        timeout=None if timeout is None else check_seconds(timeout, "timeout"),
        fail_fast=False,
        progress=progress,
    )


@asynccontextmanager
async def _fan_out(
    engine: Engine,
    calls: list[PredictionCall],
    *,
    limit: int | None,
    timeout: float | None,
    fail_fast: bool,
    progress: bool,
) -> AsyncIterator[FanOut]:
    shared = _Shared()
    send, receive = anyio.create_memory_object_stream[Event](max(16, 4 * len(calls)))
    settings = _Settings(engine, timeout, fail_fast, progress, limit)
    body_error: BaseException | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(_supervise, settings, calls, send, shared)
        try:
            async with receive:
                yield FanOut(receive, shared)
        except BaseException as error:  # re-raised below, not wrapped by the task group
            body_error = error
        finally:
            group.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
    if shared.error is not None and not shared.error_delivered:
        shared.error_delivered = True
        raise shared.error


@dataclass(frozen=True)
class _Settings:
    """What every model of one fan-out runs with."""

    engine: Engine
    timeout: float | None
    fail_fast: bool
    progress: bool
    limit: int | None


#: Calls of one fan-out without a ``limit`` waiting for their create at once: the next
#: call starts as one of them sends its create (or ends). A fan-out of 10,000 calls under
#: a rate budget holds this many tasks waiting for the budget, not 10,000 (each holding
#: its state until its turn); the budget lets creates out far slower than a call starts.
PENDING_CREATES = 256


async def _supervise(
    settings: _Settings,
    calls: list[PredictionCall],
    send: MemoryObjectSendStream[Event],
    shared: _Shared,
) -> None:
    """Run every model in a task group of its own, so that ``fail_fast`` cancels the
    models and never the caller's block.

    Calls start in turn, so that the tasks alive follow the calls in progress, never the
    calls not yet started: with a ``limit``, a call starts when one of the ``limit``
    running ends (its turn starts then, as it always did); without one, when fewer than
    :data:`PENDING_CREATES` calls wait for their create. Their turn started with the
    fan-out: each gets the deadline to be sent and the ``elapsed`` it would have had
    started at once."""
    limit = settings.limit
    slots = anyio.Semaphore(limit if limit is not None else PENDING_CREATES)
    begun = anyio.current_time()
    timeout = settings.engine._timeout if settings.timeout is None else settings.timeout
    async with send, anyio.create_task_group() as models:
        for index, call in enumerate(calls):
            await slots.acquire()
            slot = _Slot(slots)
            if limit is None:
                call = _released_at_create(call, slot, begun + timeout)
            runner = _ModelRunner(
                settings, index, call, send.clone(), shared, models.cancel_scope, slot
            )
            if limit is None:
                runner.started = begun
            models.start_soon(runner.run)


class _Slot:
    """A started call's place among those :func:`_supervise` lets run at once; given
    back once (at its create without a ``limit``, else at its end), and at its end in
    any case."""

    __slots__ = ("_semaphore",)

    def __init__(self, semaphore: anyio.Semaphore) -> None:
        self._semaphore: anyio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            semaphore, self._semaphore = self._semaphore, None
            semaphore.release()


def _released_at_create(call: PredictionCall, slot: _Slot, send_by: float) -> PredictionCall:
    """``call``, giving its slot back as its create leaves (before the caller's own
    ``before_create``), with the deadline to be sent of a call started with the fan-out."""
    before = call.before_create

    async def before_create() -> None:
        slot.release()
        if before is not None:
            await before()

    return replace(call, before_create=before_create, send_by=send_by)


@dataclass
class _ModelRunner:
    """Runs one model of a fan-out and sends its events."""

    settings: _Settings
    index: int
    call: PredictionCall
    send: MemoryObjectSendStream[Event]
    shared: _Shared
    models_scope: CancelScope
    slot: _Slot
    started: float | None = field(default=None)

    async def run(self) -> None:
        async with self.send:
            try:
                await self._predict()
            except Exception as error:
                elapsed = 0.0 if self.started is None else anyio.current_time() - self.started
                if not self.settings.fail_fast:
                    await self.send.send(Failed(self.index, self.call.model, error, elapsed))
                elif self.shared.error is None:
                    self.shared.error = error
                    self.models_scope.cancel()
            finally:
                self.slot.release()

    async def _predict(self) -> None:
        if self.started is None:
            self.started = anyio.current_time()
        index, model, status = self.index, self.call.model, None
        progress = self.settings.progress
        final: Prediction | None = None
        states = follow(self.settings.engine, self.call, timeout=self.settings.timeout)
        async with aclosing(states):
            async for prediction, outputs in states:
                if self.settings.limit is None:
                    self.slot.release()  # created, or followed by id: no create to wait for
                if prediction.status != status:
                    status = prediction.status
                    await self.send.send(StatusChanged(index, model, status))
                if progress:
                    await self.send.send(Progress(index, model, prediction))
                for output in outputs:
                    await self.send.send(_output_event(index, model, output))
                final = prediction
        assert final is not None  # follow() yields at least once or raises
        await self.send.send(Finished(index, model, final))


def _output_event(index: int, model: str, output: Output) -> Chunk | Image:
    if isinstance(output, ImageResponse):
        return Image(index, model, output)
    return Chunk(index, model, output)


@dataclass(frozen=True)
class ComparisonResult:
    """One model's row in a comparison.

    ``status`` is the terminal status, or ``"timeout"`` / ``"error"`` when the prediction
    did not end on the service's terms, or ``"not sent"`` when the rate budget had no
    create to spare before its deadline (nothing was created). ``latency`` is seconds
    from the model's turn starting to its end; ``polls`` is ``None`` where it is not
    known. ``prediction`` is the prediction as it ended (for a failure, the one the
    error carries, if any).
    """

    index: int
    model: str
    status: str
    text: str | None = None
    images: tuple[str, ...] = ()
    error: Exception | None = None
    latency: float | None = None
    polls: int | None = None
    prediction: Prediction | None = None

    @property
    def ok(self) -> bool:
        """Whether the prediction succeeded."""
        return self.status == "succeeded"


def failure_status(error: Exception) -> str:
    """The status a failed call is reported with (in a :class:`ComparisonResult`, a
    results database): the service's own, or ``timeout``, ``not sent``, ``error``."""
    if isinstance(error, PredictionFailed):
        return "failed"
    if isinstance(error, PredictionCanceled):
        return error.status
    if isinstance(error, PredictionTimeout):
        return "timeout"
    if isinstance(error, PredictionNotSent):
        return "not sent"
    return "error"


def failure_prediction(error: Exception) -> Prediction | None:
    """The last state of the prediction a failure carries, if it carries one."""
    prediction = getattr(error, "prediction", None)
    return prediction if isinstance(prediction, Prediction) else None


class ResultCollector:
    """Folds a fan-out's events into one :class:`ComparisonResult` per model.

    :meth:`results` can be read at any time: a model that has not ended yet gets the
    status given for it (the command line marks them ``"interrupted"`` after Ctrl-C),
    with its output so far and the last state a :class:`Progress` event showed.
    """

    def __init__(self, models: Sequence[str]) -> None:
        self._models = list(models)
        self._texts: list[list[str]] = [[] for _ in self._models]
        self._images: list[list[str]] = [[] for _ in self._models]
        self._latest: list[Prediction | None] = [None] * len(self._models)
        self._results: list[ComparisonResult | None] = [None] * len(self._models)

    def add(self, event: Event) -> None:
        """Take one event into account."""
        index = event.index
        self._models[index] = event.model
        if isinstance(event, Chunk):
            self._texts[index].append(event.text)
        elif isinstance(event, Image):
            self._images[index].extend(event.image.images)
        elif isinstance(event, Progress):
            self._latest[index] = event.prediction
        elif isinstance(event, Finished):
            prediction = event.prediction
            self._results[index] = ComparisonResult(
                index=index,
                model=event.model,
                status=prediction.status,
                text="".join(self._texts[index]) if not self._images[index] else None,
                images=tuple(self._images[index]),
                latency=prediction.elapsed,
                polls=prediction.polls,
                prediction=prediction,
            )
        elif isinstance(event, Failed):
            known = failure_prediction(event.error) or self._latest[index]
            self._results[index] = ComparisonResult(
                index=index,
                model=event.model,
                status=failure_status(event.error),
                text="".join(self._texts[index]) or None,
                error=event.error,
                latency=event.elapsed,
                polls=None if known is None else known.polls,
                prediction=known,
            )

    @property
    def complete(self) -> bool:
        """Whether every model has ended."""
        return all(result is not None for result in self._results)

    def results(self, unfinished: str = "running") -> list[ComparisonResult]:
        """One result per model, in the order of ``models``; ``unfinished`` is the
        status of the models that have not ended."""
        return [self.result(index, unfinished) for index in range(len(self._models))]

    def result(self, index: int, unfinished: str = "running") -> ComparisonResult:
        """The result of the model at ``index`` (see :meth:`results`)."""
        result = self._results[index]
        if result is not None:
            return result
        latest = self._latest[index]
        return ComparisonResult(
            index=index,
            model=self._models[index],
            status=unfinished,
            text="".join(self._texts[index]) or None,
            latency=None if latest is None else latest.elapsed,
            polls=None if latest is None else latest.polls,
            prediction=latest,
        )


async def compare_results(
    fan_out: AbstractAsyncContextManager[FanOut],
    models: int,
    on_event: Callable[[Event], object] | None = None,
) -> list[ComparisonResult]:
    """Collect a fan-out into one result per model, in the order of ``models``.

    ``on_event`` sees every event first (the command line draws its live view with it).
    """
    collector = ResultCollector([""] * models)
    async with fan_out as events:
        async for event in events:
            if on_event is not None:
                on_event(event)
            collector.add(event)
    assert collector.complete  # every model ends with one event
    return collector.results()


async def first_success(fan_out: AbstractAsyncContextManager[FanOut]) -> Prediction:
    """The first prediction of a fan-out to succeed; leaving the block cancels the rest."""
    failures: list[Failed] = []
    async with fan_out as events:
        async for event in events:
            if isinstance(event, Finished):
                return event.prediction
            if isinstance(event, Failed):
                failures.append(event)
    failures.sort(key=lambda failure: failure.index)
    raise AllPredictionsFailed([(failure.model, failure.error) for failure in failures])
