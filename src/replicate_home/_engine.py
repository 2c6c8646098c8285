"""The prediction loop: create, then follow the prediction until a terminal status.

Written once for every service; every request goes out through the HTTP exchange
below it (:mod:`._exchange`: retries, the rate budget, the request gate). Deadlines
are cancel scopes around each await, never around a ``yield``, so the generator can be
suspended, closed or cancelled at any point without a scope leaking into the caller.

Where the service can cancel predictions, the engine also makes sure nothing is left
running that nobody waits for: creates run in the client's own task group (so a caller
who gives up while a create is in flight still learns its id), and an abandoned
prediction is cancelled there too, shielded, with a short deadline of its own. The
caller never waits on that cleanup.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ._bounded import (
    DEFAULT_MAX_RESPONSE_BYTES,
    EventReader,
)
from ._budget import RateBudget
from ._bulk import BulkFollower
from ._downloads import Downloads
from ._exceptions import (
    PredictionCanceled,
    PredictionFailed,
    PredictionNotSent,
    PredictionTimeout,
    ReplicateHomeError,
    ResponseTooLarge,
)
from ._exchange import Exchange, RequestGate
from ._models import Prediction, StreamedChunks
from ._schedule import PollSchedule, RetryPolicy
from ._service import PredictionCall, RequestSpec, Service

__all__ = ["CLEANUP_GRACE", "Engine", "StatusCallback"]

logger = logging.getLogger("replicate_home")

#: ``on_status``: a plain function, or an async one (its awaitable is awaited in order).
StatusCallback = Callable[[Prediction], object]

#: How long a remote cancel (or closing a stream) may take, in seconds.
CLEANUP_GRACE = 2.0

#: Beyond its ``Prefer: wait``, how long an abandoned create may still take to answer.
CREATE_SLACK = 0.5


class Engine:
    """Runs predictions for one service over one HTTP client.

    ``background`` is the client's task group (for creates and remote cancels, where the
    service can cancel); ``budget`` the client's shared rate budget, if any; ``gate``
    bounds the requests in flight on ``http`` (see :class:`RequestGate`).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        service: Service,
        *,
        timeout: float,
        schedule: PollSchedule,
        retry: RetryPolicy,
        background: TaskGroup | None = None,
        budget: RateBudget | None = None,
        gate: RequestGate | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        downloads: Downloads | None = None,
    ) -> None:
        #: Every request goes out through it (retries, rate budget, request gate).
        self._exchange = Exchange(
            http,
            service,
            retry=retry,
            budget=budget,
            gate=gate,
            max_response_bytes=max_response_bytes,
        )
        #: How the output files of the predictions it reads download (the client's).
        self.downloads = downloads
        self._service = service
        self._timeout = timeout
        self._schedule = schedule
        self._background = background if service.can_cancel else None
        self._budget = budget
        #: Follows many predictions through the service's listing (set by the client).
        self._bulk: BulkFollower | None = None

    async def run(
        self,
        call: PredictionCall,
        *,
        timeout: float | None = None,
        on_status: StatusCallback | None = None,
        wait: float | None = None,
        stream: bool = True,
    ) -> AsyncGenerator[Prediction, None]:
        """Yield the prediction after the create and after every update, ending with
        the terminal one. ``failed`` raises :class:`PredictionFailed`, ``canceled`` and
        ``aborted`` raise :class:`PredictionCanceled`, the deadline raises
        :class:`PredictionTimeout`.

        With ``call.existing`` the prediction already runs: it is followed from that
        state (or, given its id, from a first read) and nothing is created. ``wait``
        asks the service to hold the create's answer that long (``Prefer: wait``);
        ``stream`` follows the prediction's event stream where it has one. A generator
        closed before the terminal status cancels the prediction on the service, where
        the service can, if the call owns it (``call.owned``).
        """
        timeout = self._timeout if timeout is None else timeout
        existing = call.existing
        if existing is None:
            # The prediction's ``timeout`` starts when its create is sent (see
            # :meth:`_resolve_and_create`).
            prediction, started = await self._resolve_and_create(call, timeout, wait)
            first_read = False
        else:
            started = anyio.current_time()
            if isinstance(existing, str):
                prediction = Prediction(existing, call.model, call.version, "starting")
                first_read = True
            else:
                prediction = existing
                first_read = False
        deadline = started + timeout
        tracker = _Tracker(started, on_status, self._service.name, deadline, timeout)
        tracker.downloads = self.downloads
        states = self._follow(call, prediction, first_read, deadline, timeout, tracker, stream)
        async with aclosing(states):
            async for state in states:
                yield state

    async def _follow(
        self,
        call: PredictionCall,
        prediction: Prediction,
        first_read: bool,
        deadline: float,
        timeout: float,
        tracker: _Tracker,
        stream: bool,
    ) -> AsyncGenerator[Prediction, None]:
        """The poll loop of :meth:`run`, from a prediction that exists."""
        try:
            if first_read:
                prediction = await self._poll(call, prediction, deadline, timeout, None)
                tracker.polls += 1
            stream_spec = self._service.stream_request(prediction) if stream else None
            while True:
                prediction = await tracker.observe(prediction)
                answered = anyio.current_time()
                if prediction.done:
                    _raise_for_outcome(prediction, tracker.stream_error)
                    yield prediction
                    return
                yield prediction
                not_before: float | None = answered + self._schedule.delay(tracker.polls)
                if stream_spec is not None:
                    spec, stream_spec = stream_spec, None  # one stream a prediction
                    events = self._stream(spec, prediction, deadline, timeout, tracker)
                    async with aclosing(events):
                        async for update in events:
                            prediction = await tracker.observe(update)
                            yield prediction
                    not_before = None  # the stream ended: ask for the outcome at once
                in_listing = not_before is not None and not call.training
                bulk = self._bulk if in_listing else None
                if bulk is None:
                    prediction = await self._poll(call, prediction, deadline, timeout, not_before)
                    tracker.polls += 1
                    continue
                bulk.polling += 1  # between polls: counts toward following in bulk
                try:
                    if bulk.active:
                        listed = await self._listed(bulk, prediction, deadline, timeout)
                        if listed is not None:  # the listing says it still runs: no poll
                            prediction = replace(prediction, status=listed.status)
                            continue
                        not_before = None  # it ended, or the sweep could not tell: read it
                    prediction = await self._poll(call, prediction, deadline, timeout, not_before)
                    tracker.polls += 1
                finally:
                    bulk.polling -= 1
        finally:
            # Nothing to cancel once any source said the prediction ended (the stream's
            # ``done`` too, when the read after it failed).
            if call.owned and not prediction.done and not tracker.ended:
                self._abandon(prediction)

    async def _listed(
        self, bulk: BulkFollower, prediction: Prediction, deadline: float, timeout: float
    ) -> Prediction | None:
        """With many predictions between polls, the next sweep of the listing instead of
        a poll of this one (see :mod:`._bulk`): its listed state while it still runs;
        ``None``: poll it now (it ended, or the sweep could not tell)."""
        with anyio.CancelScope(deadline=deadline) as scope:
            seen = await bulk.wait(prediction)
        if scope.cancelled_caught:
            raise PredictionTimeout(prediction.id, timeout)
        return seen if seen is not None and not seen.done else None

    async def _poll(
        self,
        call: PredictionCall,
        prediction: Prediction,
        deadline: float,
        timeout: float,
        not_before: float | None,
    ) -> Prediction:
        answer = await self._exchange.send(
            self._service.poll_request(prediction),
            deadline=deadline,
            creating=False,
            prediction_id=prediction.id,
            timeout=timeout,
            not_before=not_before,
        )
        return self._service.read_prediction(*answer, call=call, known_id=prediction.id)

    async def create(
        self, call: PredictionCall, *, timeout: float | None = None, wait: float | None = None
    ) -> Prediction:
        """Resolve and create one prediction and return it as created, without following
        it. A caller who gives up before the create answers never learns the id, so what
        it created is then cancelled, as for :meth:`run`; once returned, the prediction
        is the caller's."""
        timeout = self._timeout if timeout is None else timeout
        prediction, _ = await self._resolve_and_create(call, timeout, wait)
        return replace(prediction, _downloads=self.downloads)

    async def send(
        self, spec: RequestSpec, *, timeout: float | None = None
    ) -> tuple[dict[str, Any], str]:
        """Send one request that is not part of a prediction's loop (a read, a cancel, a
        page of a listing) with the engine's retries, budget and gate, under ``timeout``
        (the client's by default); the decoded answer."""
        timeout = self._timeout if timeout is None else timeout
        return await self._exchange.send(
            spec,
            deadline=anyio.current_time() + timeout,
            creating=False,
            prediction_id=None,
            timeout=timeout,
        )

    # -- create ---------------------------------------------------------------------

    async def _resolve_and_create(
        self, call: PredictionCall, timeout: float, wait: float | None
    ) -> tuple[Prediction, float]:
        """Let the service do what the call needs before its create, then create; a
        create the service refuses may be retried once as the call it names instead.
        The prediction as created, and when its create was sent.

        Until its create is sent, a call has ``timeout`` to be sent (looking its model
        up, waiting for the rate budget: :class:`PredictionNotSent` if the budget never
        lets it out; ``call.send_by`` may end that earlier); from the moment it is sent,
        the prediction has ``timeout``."""
        deadline = anyio.current_time() + timeout
        if call.send_by is not None:
            deadline = min(deadline, call.send_by)

        async def send(spec: RequestSpec) -> tuple[dict[str, Any], str]:
            return await self._exchange.send(
                spec, deadline=deadline, creating=False, prediction_id=None, timeout=timeout
            )

        # Under the call's deadline as a whole: waiting for work another call is doing
        # for it (an upload of the same file) too.
        with anyio.CancelScope(deadline=deadline) as scope:
            call = await self._service.resolve(call, send)
        if scope.cancelled_caught:
            raise PredictionTimeout(None, timeout)
        created = False
        try:
            await self._take_create_token(deadline, timeout)
            if call.before_create is not None:
                await call.before_create()
            sent = anyio.current_time()
            deadline = sent + timeout
            try:
                prediction = await self._create(call, deadline, timeout, wait, prepaid=True)
            except ReplicateHomeError as error:
                instead = await self._service.retry_create(call, error, send)
                if instead is None:
                    raise
            else:
                created = True
                return prediction, sent
        finally:
            # Whatever became of it (created, refused, cancelled): calls waiting on what
            # this create would show (a model route's first answer) go on.
            self._service.settled(call, created)
        return await self._create(instead, deadline, timeout, wait), sent

    async def _take_create_token(self, send_by: float, timeout: float) -> None:
        """Wait for the budget's create token (which the create's first attempt then
        spends); raise :class:`PredictionNotSent` if none is free by ``send_by``."""
        if self._budget is None:
            return
        with anyio.CancelScope(deadline=send_by) as scope:
            await self._budget.creates.acquire()
        if scope.cancelled_caught:
            raise PredictionNotSent(timeout)

    async def _create(
        self,
        call: PredictionCall,
        deadline: float,
        timeout: float,
        wait: float | None,
        *,
        prepaid: bool = False,
    ) -> Prediction:
        """Send the create (its budget token already taken if ``prepaid``)."""
        remaining = deadline - anyio.current_time()
        spec = self._service.create_request(call, remaining=remaining, wait=wait)
        if self._background is None:
            return await self._send_create(spec, call, deadline, timeout, prepaid)
        # In the client's task group: if the caller stops waiting, the create still
        # answers (within ``wait`` plus a grace), and what it created is cancelled.
        job = _CreateJob(limit=(wait or 0.0) + CREATE_SLACK)
        self._background.start_soon(self._create_job, job, spec, call, deadline, timeout, prepaid)
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                await job.finished.wait()
        except BaseException:
            self._give_up(job)
            raise
        if scope.cancelled_caught:
            self._give_up(job)
            raise PredictionTimeout(None, timeout)
        if job.error is not None:
            raise job.error
        assert job.prediction is not None
        return job.prediction

    async def _create_job(
        self,
        job: _CreateJob,
        spec: RequestSpec,
        call: PredictionCall,
        deadline: float,
        timeout: float,
        prepaid: bool,
    ) -> None:
        if job.abandoned:  # the caller left before this task started: nothing was sent
            job.finished.set()
            return
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            job.scope = scope
            try:
                job.prediction = await self._send_create(spec, call, deadline, timeout, prepaid)
            except Exception as error:
                job.error = error
            finally:
                job.finished.set()
        if job.abandoned and job.prediction is not None and not job.prediction.done:
            self._abandon(job.prediction)
        elif job.abandoned and job.prediction is None:
            logger.debug("%s: an abandoned create never answered", self._service.name)

    async def _send_create(
        self,
        spec: RequestSpec,
        call: PredictionCall,
        deadline: float,
        timeout: float,
        prepaid: bool,
    ) -> Prediction:
        """Send a create and read the prediction it answers (no id known yet)."""
        answer = await self._exchange.send(
            spec,
            deadline=deadline,
            creating=True,
            prediction_id=None,
            timeout=timeout,
            prepaid=prepaid,
        )
        return self._service.read_prediction(*answer, call=call, known_id=None)

    def _give_up(self, job: _CreateJob) -> None:
        """The caller stopped waiting for a create. If the create already answered, its
        job has already looked for a caller and found one: cancel from here. Otherwise
        the job cancels what it creates (no checkpoint separates its answer from that
        check, so exactly one side does)."""
        job.abandon()
        if job.finished.is_set() and job.prediction is not None and not job.prediction.done:
            self._abandon(job.prediction)

    # -- cancel ---------------------------------------------------------------------

    def _abandon(self, prediction: Prediction) -> None:
        """Cancel a prediction nobody waits for any more, in the background."""
        if self._background is None:
            return
        spec = self._service.cancel_request(prediction)
        if spec is None:
            return
        try:
            self._background.start_soon(self._cancel_remote, spec, prediction.id)
        except RuntimeError:  # the client has closed: Cancel-After will end it
            logger.warning(
                "%s: could not cancel %s: client closed", self._service.name, prediction.id
            )

    async def _cancel_remote(self, spec: RequestSpec, prediction_id: str) -> None:
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_GRACE) as scope:
            try:
                # Past the rate budget: cleanup must not wait behind a pause a 429 set.
                answer, _ = await self._exchange.request(spec, use_budget=False)
            except Exception as error:  # a failing cleanup must never reach the caller
                logger.warning(
                    "%s: could not cancel %s: %s",
                    self._service.name,
                    prediction_id,
                    type(error).__name__,
                )
                return
        if scope.cancelled_caught:
            logger.warning("%s: cancelling %s timed out", self._service.name, prediction_id)
        else:
            logger.debug(
                "%s: cancelled %s (HTTP %d)",
                self._service.name,
                prediction_id,
                answer.status,
            )

    # -- stream ---------------------------------------------------------------------

    async def _stream(
        self,
        spec: RequestSpec,
        prediction: Prediction,
        deadline: float,
        timeout: float,
        tracker: _Tracker,
    ) -> AsyncGenerator[Prediction, None]:
        """Follow the prediction's server-sent events, yielding it with its output so
        far after each ``output`` event. Returns at ``done``, or quietly when the stream
        can't be had or drops (the caller then polls)."""
        body = await self._exchange.open_stream(spec, deadline, prediction.id, timeout)
        if body is None:
            return
        try:
            # The stream replays the output from the start (``Last-Event-ID`` resumes),
            # so it begins empty: what the create answered is part of the replay.
            chunks: list[str] = []
            size = 0  # of the output delivered: held in memory, so under the limit too
            events = EventReader(body)
            while True:
                with anyio.CancelScope(deadline=deadline) as scope:
                    try:
                        event = await events.next()
                    except httpx.HTTPError:
                        event = None
                if scope.cancelled_caught:
                    raise PredictionTimeout(prediction.id, timeout)
                if event is None:
                    logger.debug("%s: stream of %s dropped", self._service.name, prediction.id)
                    return
                if event.event == "output":
                    data = self._exchange.scrub.text(event.data)
                    size += len(data)
                    if size > self._exchange.limit:
                        raise ResponseTooLarge(
                            "the output of the stream", self._exchange.limit, spec.url
                        )
                    chunks.append(data)
                    # A view of the chunks so far, not a copy: the same cost at every event.
                    output = StreamedChunks(chunks)
                    yield replace(prediction, status="processing", output=output, streamed=True)
                elif event.event == "error":
                    tracker.stream_error = self._exchange.scrub.text(event.data)
                elif event.event == "done":
                    tracker.ended = True
                    return
        finally:
            await self._exchange.close_stream(body)


class _Tracker:
    """What one run has seen: polls sent, the status last reported, a stream's error."""

    def __init__(
        self,
        started: float,
        on_status: StatusCallback | None,
        service: str,
        deadline: float,
        timeout: float,
    ) -> None:
        self.started = started
        self.on_status = on_status
        self.service = service
        self.deadline = deadline
        self.timeout = timeout
        self.polls = 0
        self.status: str | None = None
        self.stream_error: str | None = None
        #: A terminal state was seen (the stream's ``done``): nothing is left to cancel.
        self.ended = False
        #: How the predictions' output files download.
        self.downloads: Downloads | None = None

    async def observe(self, prediction: Prediction) -> Prediction:
        """Stamp ``prediction`` with polls and elapsed time; report a status change.

        An async ``on_status`` is awaited here, so reports arrive in order, under the
        call's deadline; whatever the callback raises fails the call.
        """
        prediction = replace(
            prediction,
            polls=self.polls,
            elapsed=anyio.current_time() - self.started,
            _downloads=self.downloads,
        )
        if prediction.status != self.status:
            self.status = prediction.status
            logger.debug("%s: %s is %s", self.service, prediction.id, prediction.status)
            if self.on_status is not None:
                reported = self.on_status(prediction)
                if inspect.isawaitable(reported):
                    with anyio.CancelScope(deadline=self.deadline) as scope:
                        await reported
                    if scope.cancelled_caught:
                        raise PredictionTimeout(prediction.id, self.timeout)
        return prediction


class _CreateJob:
    """A create running in the client's task group, and what its caller learns of it."""

    def __init__(self, limit: float) -> None:
        self.finished = anyio.Event()
        self.prediction: Prediction | None = None
        self.error: Exception | None = None
        self.abandoned = False
        self.scope: anyio.CancelScope | None = None
        self._limit = limit

    def abandon(self) -> None:
        """The caller stopped waiting: give the create at most ``limit`` more seconds."""
        self.abandoned = True
        if self.scope is not None:
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + self._limit)


def _raise_for_outcome(prediction: Prediction, stream_error: str | None) -> None:
    if prediction.status == "failed":
        error = prediction.error if prediction.error is not None else stream_error
        raise PredictionFailed(error, prediction.id, prediction)
    if prediction.status in ("canceled", "aborted"):
        raise PredictionCanceled(prediction.id, prediction.status, prediction)
