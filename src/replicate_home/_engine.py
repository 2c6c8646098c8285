"""The prediction loop: create, then poll on a schedule until a terminal status.

Written once for every service. Deadlines are cancel scopes around each await, never
around a ``yield``, so the generator can be suspended, closed or cancelled at any point
without a scope leaking into the caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx

from ._decode import body_text, decode_json_object
from ._exceptions import (
    ConnectionFailed,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    ReplicateHomeError,
)
from ._models import Prediction
from ._schedule import PollSchedule, RetryPolicy, parse_retry_after
from ._service import PredictionCall, RequestSpec, Service

__all__ = ["Engine", "StatusCallback"]

logger = logging.getLogger("replicate_home")

StatusCallback = Callable[[Prediction], object]

#: HTTP statuses worth retrying while polling: the service is busy, not saying "no".
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

#: Transport errors worth retrying while polling (the request may be sent again).
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

#: Transport errors that prove a request never reached the service, so even a create
#: may be sent again without starting (and billing) a second prediction.
_UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Engine:
    """Runs predictions for one service over one HTTP client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        service: Service,
        *,
        timeout: float,
        schedule: PollSchedule,
        retry: RetryPolicy,
        on_abandon: Callable[[Prediction], None] | None = None,
    ) -> None:
        self._http = http
        self._service = service
        self._timeout = timeout
        self._schedule = schedule
        self._retry = retry
        self._on_abandon = on_abandon

    async def run(
        self,
        call: PredictionCall,
        *,
        timeout: float | None = None,
        on_status: StatusCallback | None = None,
    ) -> AsyncGenerator[Prediction, None]:
        """Yield the prediction after the create and after every poll, ending with the
        terminal one. ``failed`` raises :class:`PredictionFailed`, ``canceled`` and
        ``aborted`` raise :class:`PredictionCanceled`, the deadline raises
        :class:`PredictionTimeout`.

        A generator closed before the terminal status reports the prediction to
        ``on_abandon`` (which the client uses to cancel it on the service, where the
        service can).
        """
        timeout = self._timeout if timeout is None else timeout
        started = anyio.current_time()
        deadline = started + timeout
        answer = await self._send(
            self._service.create_request(call, remaining=timeout),
            deadline=deadline,
            creating=True,
            prediction_id=None,
            timeout=timeout,
        )
        prediction = self._service.read_prediction(*answer, call=call, known_id=None)
        logger.debug("%s: created %s (%s)", self._service.name, prediction.id, call.model)
        polls = 0
        seen_status: str | None = None
        try:
            while True:
                answered = anyio.current_time()
                prediction = replace(prediction, polls=polls, elapsed=answered - started)
                if prediction.status != seen_status:
                    seen_status = prediction.status
                    logger.debug("%s: %s is %s", self._service.name, prediction.id, seen_status)
                    if on_status is not None:
                        on_status(prediction)
                if prediction.done:
                    _raise_for_outcome(prediction)
                    yield prediction
                    return
                yield prediction
                answer = await self._send(
                    self._service.poll_request(prediction),
                    deadline=deadline,
                    creating=False,
                    prediction_id=prediction.id,
                    timeout=timeout,
                    not_before=answered + self._schedule.delay(polls),
                )
                polls += 1
                prediction = self._service.read_prediction(
                    *answer, call=call, known_id=prediction.id
                )
        finally:
            if not prediction.done and self._on_abandon is not None:
                self._on_abandon(prediction)

    async def _send(
        self,
        spec: RequestSpec,
        *,
        deadline: float,
        creating: bool,
        prediction_id: str | None,
        timeout: float,
        not_before: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Send ``spec`` (not before ``not_before``), retrying transient failures, and
        return the decoded JSON object and its text. Everything happens under one cancel
        scope with the call's deadline."""
        last_failure: ReplicateHomeError | None = None
        with anyio.CancelScope(deadline=deadline) as scope:
            if not_before is not None:
                await anyio.sleep_until(not_before)
            attempt = 0
            while True:
                outcome = await self._attempt(spec, creating)
                if not isinstance(outcome, _Failure):
                    return outcome
                last_failure = outcome.error
                limit = (
                    self._retry.max_connect_retries
                    if creating and isinstance(outcome.error, ConnectionFailed)
                    else self._retry.max_retries
                )
                if not outcome.retryable or attempt >= limit:
                    raise outcome.error
                delay = self._retry.delay(attempt, outcome.retry_after)
                attempt += 1
                logger.debug(
                    "%s: %s %s failed (%s); retry %d in %.2fs",
                    self._service.name,
                    spec.method,
                    spec.url,
                    outcome.error,
                    attempt,
                    delay,
                )
                await anyio.sleep(delay)
        # Only reached when the deadline cancelled the scope.
        assert scope.cancelled_caught
        raise PredictionTimeout(prediction_id, timeout) from last_failure

    async def _attempt(
        self, spec: RequestSpec, creating: bool
    ) -> tuple[dict[str, Any], str] | _Failure:
        """Send once: the decoded answer, or why it failed and whether to try again."""
        try:
            response = await self._http.request(
                spec.method, spec.url, json=spec.json, headers=dict(spec.headers)
            )
        except httpx.TransportError as error:
            failure = ConnectionFailed(f"{spec.method} {spec.url}: {type(error).__name__}: {error}")
            failure.__cause__ = error
            retryable = isinstance(error, _UNSENT_ERRORS) or (
                not creating and isinstance(error, _TRANSIENT_ERRORS)
            )
            return _Failure(failure, None, retryable)
        if response.is_success:
            return decode_json_object(response.content)
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        problem = self._service.error_for(
            status, body_text(response.content), spec.url, retry_after
        )
        retryable = status == 429 or (not creating and status in _TRANSIENT_STATUSES)
        return _Failure(problem, retry_after, retryable)


@dataclass(frozen=True)
class _Failure:
    """One failed attempt: the error to raise, and whether (and when) to try again."""

    error: ReplicateHomeError
    retry_after: float | None
    retryable: bool


def _raise_for_outcome(prediction: Prediction) -> None:
    if prediction.status == "failed":
        raise PredictionFailed(prediction.error, prediction.id, prediction)
    if prediction.status in ("canceled", "aborted"):
        raise PredictionCanceled(prediction.id, prediction.status, prediction)
