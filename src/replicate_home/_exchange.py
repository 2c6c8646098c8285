"""One HTTP exchange with a service: build the request, send it under the client's rate
budget and request gate, read the answer within the size limit, retry what is worth
retrying, and after a 429 pause the budget's bucket.

Below the prediction loop (:mod:`._engine`), which creates, follows, streams and cancels
predictions through it; the client's other requests (a read, a listing's page, a file's
upload) go through it as well. The answer's secrets are scrubbed here, before anything
else sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

import anyio
import httpx

from ._bounded import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ERROR_BODY_LIMIT,
    BodyReader,
    read_body,
    read_prefix,
)
from ._budget import RateBudget, TokenBucket, throttle_wait
from ._decode import body_text, decode_json_object
from ._exceptions import (
    ConnectionFailed,
    PredictionTimeout,
    ReplicateHomeError,
    UnexpectedResponseFormat,
)
from ._schedule import RetryPolicy, parse_retry_after
from ._scrub import Scrubber
from ._service import RequestSpec, Service
from ._service_clock import DateReading, parse_http_date
from ._uploads import ThreadedBody

__all__ = ["MAX_RETRY_AFTER", "STREAM_OPEN_TIMEOUT", "Answer", "Exchange", "Failure", "RequestGate"]

logger = logging.getLogger("replicate_home")

#: The longest ``Retry-After`` honoured, in seconds (also never past the call's
#: deadline): one absurd answer must not stop a client for good.
MAX_RETRY_AFTER = 60.0

#: How long an event stream may take to open (its answer's status and headers), in
#: seconds: an origin that accepts the connection but never answers (an ``https`` URL on
#: a plain-HTTP port) is left for polling, and the call still ends within its deadline.
STREAM_OPEN_TIMEOUT = 2.0

#: HTTP statuses worth retrying while polling: the service is busy, not saying "no".
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

#: Transport errors worth retrying while polling (the request may be sent again).
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

#: Transport errors that prove a request never reached the service, so even a create
#: may be sent again without starting (and billing) a second prediction.
_UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RequestGate:
    """At most ``limit`` requests in flight on one HTTP client; the rest wait here, in
    turn, rather than in the HTTP client's connection pool.

    httpcore's pool rescans every queued request against every connection each time a
    request starts or ends, so a thousand requests queued for its hundred connections cost
    seconds of CPU (encode/httpcore#1035). Kept at the pool's size, this gate leaves the
    pool nothing to queue. A request holds its place until its response is closed (a
    stream, until the stream ends), as it holds its connection; streams may hold at most
    :attr:`stream_limit` places.
    """

    def __init__(self, limit: int, streams: int | None = None) -> None:
        self._slots = anyio.Semaphore(limit)
        #: Event streams open (or opening) at once at most: half the places by default.
        #: A stream holds its place for the prediction's whole run, so without a cap
        #: streams would fill the gate and every create and poll would queue behind
        #: them; past it, a prediction is followed by polls (and the listing) instead.
        self.stream_limit = max(1, limit // 2) if streams is None else streams
        self.streams = 0

    def reserve_stream(self) -> bool:
        """Count a stream about to open, if fewer than :attr:`stream_limit` are; its
        place in the gate is then taken as any request's (:meth:`acquire`)."""
        if self.streams >= self.stream_limit:
            return False
        self.streams += 1
        return True

    def end_stream(self) -> None:
        """A stream :meth:`reserve_stream` counted is closed, or was never opened."""
        self.streams -= 1

    async def acquire(self) -> None:
        try:  # the common case, no waiting: no checkpoint either
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()


class Exchange:
    """Sends requests for one service over one HTTP client, with its retries (``retry``),
    the client's shared rate budget (``budget``, if any) and its request gate
    (``gate``, see :class:`RequestGate`); answers are read within
    ``max_response_bytes`` and scrubbed of the service's secrets."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        service: Service,
        *,
        retry: RetryPolicy,
        budget: RateBudget | None = None,
        gate: RequestGate | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.http = http
        self.service = service
        self.retry = retry
        self.budget = budget
        self.gate = gate
        self.limit = max_response_bytes
        self.scrub = Scrubber(getattr(service, "secrets", ()))
        #: The latest answer's ``Date`` beside this machine's clock (the clocks'
        #: difference, read from answers the client gets anyway), if any had one.
        self.clock: DateReading | None = None

    async def send(
        self,
        spec: RequestSpec,
        *,
        deadline: float,
        creating: bool,
        prediction_id: str | None,
        timeout: float,
        not_before: float | None = None,
        prepaid: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """Send ``spec`` (not before ``not_before``), retrying transient failures, and
        return the decoded JSON object and its text. Everything happens under one cancel
        scope with the call's deadline. ``prepaid``: the first attempt's budget token is
        already taken."""
        last_failure: ReplicateHomeError | None = None
        with anyio.CancelScope(deadline=deadline) as scope:
            if not_before is not None:
                await anyio.sleep_until(not_before)
            attempt = 0
            while True:
                outcome = await self._attempt(
                    spec, creating, deadline, prepaid=prepaid and attempt == 0
                )
                if not isinstance(outcome, Failure):
                    return outcome
                last_failure = outcome.error
                limit = (
                    self.retry.max_connect_retries
                    if creating and isinstance(outcome.error, ConnectionFailed)
                    else self.retry.max_retries
                )
                if not outcome.retryable or attempt >= limit:
                    raise outcome.error
                delay = min(self.retry.delay(attempt, outcome.retry_after), MAX_RETRY_AFTER)
                attempt += 1
                logger.debug(
                    "%s: %s %s failed (%s); retry %d in %.2fs",
                    self.service.name,
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
        self, spec: RequestSpec, creating: bool, deadline: float, *, prepaid: bool = False
    ) -> tuple[dict[str, Any], str] | Failure:
        """Send once: the decoded answer, or why it failed and whether to try again."""
        try:
            answer, sent_at = await self.request(spec, creating=creating, prepaid=prepaid)
        except httpx.TransportError as error:
            failure = ConnectionFailed(f"{spec.method} {spec.url}: {type(error).__name__}: {error}")
            failure.__cause__ = error
            retryable = isinstance(error, _UNSENT_ERRORS) or (
                not creating and isinstance(error, _TRANSIENT_ERRORS)
            )
            return Failure(failure, None, retryable)
        except httpx.HTTPError as error:  # too many redirects, a body it can't decode …
            failure = ConnectionFailed(f"{spec.method} {spec.url}: {type(error).__name__}: {error}")
            failure.__cause__ = error
            return Failure(failure, None, False)
        if answer.is_success:
            if self.budget is not None:
                self.budget.bucket(creating).succeeded()
            if not spec.expect_body:  # e.g. a delete's 204: nothing to decode
                return {}, ""
            if spec.text_body:
                return {}, body_text(answer.body)
            data, text = decode_json_object(answer.body)
            return self.scrub.answer(data, text)
        status = answer.status
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        if status == 429:
            retry_after = self.pause_budget(
                creating, answer.headers, answer.body, deadline, sent_at
            )
        elif self.budget is not None:
            self.budget.bucket(creating).succeeded()
        text = body_text(answer.body)
        if answer.cut:
            text += f"… [cut: more than {ERROR_BODY_LIMIT} bytes]"
        problem = self.service.error_for(status, text, spec.url, retry_after)
        retryable = status == 429 or (not creating and status in _TRANSIENT_STATUSES)
        return Failure(problem, retry_after, retryable)

    def build(self, spec: RequestSpec) -> httpx.Request:
        """The request for ``spec``; a URL that can't be sent (an answer's, with control
        characters, say) is an :class:`UnexpectedResponseFormat`."""
        try:
            if spec.files is not None:
                # Multipart: httpx's encoder reads a file in pieces as the request goes
                # out, but synchronously; each piece is made in a worker thread instead,
                # so no file read blocks the event loop. A fresh body for every attempt.
                form = httpx.Request(
                    spec.method, spec.url, files=dict(spec.files), data=dict(spec.data or {})
                )
                headers = dict(spec.headers)
                for name in ("content-type", "content-length", "transfer-encoding"):
                    if name in form.headers:
                        headers[name] = form.headers[name]
                return self.http.build_request(
                    spec.method,
                    spec.url,
                    content=ThreadedBody(cast("Iterable[bytes]", form.stream)),
                    headers=headers,
                )
            return self.http.build_request(
                spec.method, spec.url, json=spec.json, headers=dict(spec.headers)
            )
        except httpx.InvalidURL as error:
            raise UnexpectedResponseFormat(
                spec.url, f"a URL the client can't send: {error}"
            ) from None

    async def request(
        self,
        spec: RequestSpec,
        *,
        creating: bool = False,
        prepaid: bool = False,
        use_budget: bool = True,
    ) -> tuple[Answer, float]:
        """Send ``spec`` and read its answer under the size limit (and when it left, for
        the budget): a token from the budget's bucket for it first (unless ``prepaid``,
        or ``use_budget`` is false: cleanup), then a place in the gate, held until the
        answer is read. Error bodies are read only as far as a message needs."""
        request = self.build(spec)
        bucket = self.budget.bucket(creating) if use_budget and self.budget else None
        if bucket is not None and not prepaid:
            await bucket.acquire()
        await self._enter_gate(bucket)
        try:
            sent_at = anyio.current_time()
            left = datetime.now(timezone.utc)
            response = await self.http.send(request, stream=True)
            date = parse_http_date(response.headers.get("date"))
            if date is not None:
                self.clock = DateReading(left, datetime.now(timezone.utc), date)
            if response.is_success:
                what = f"the answer to {spec.method}"
                body = await read_body(response, self.limit, what=what)
                cut = False
            else:
                body, cut = await read_prefix(response)
            answer = Answer(response.status_code, response.headers, self.scrub.bytes(body), cut)
            return answer, sent_at
        finally:
            if self.gate is not None:
                self.gate.release()

    async def _enter_gate(self, bucket: TokenBucket | None) -> None:
        """Take a place in the gate. If a 429 paused ``bucket`` meanwhile (this request
        took its token before), its token is void: it waits outside the gate for a new
        one, after the pause and in turn (``Retry-After`` is a floor for every request of
        the bucket, and the requests that held tokens don't all leave when it ends)."""
        while True:
            if self.gate is not None:
                await self.gate.acquire()
            if bucket is None or bucket.paused_for() <= 0:
                return
            if self.gate is not None:
                self.gate.release()
            await bucket.acquire()

    async def open_stream(
        self, spec: RequestSpec, deadline: float, prediction_id: str, timeout: float
    ) -> BodyReader | None:
        """Open the event stream ``spec`` asks for, under ``deadline``: a token from the
        budget's request bucket, then a place in the gate, held until the stream is
        closed (:meth:`close_stream`). Never redirected, and an anonymous ``spec`` sends
        no credentials at all. ``None`` when there is no stream to be had (as many
        streams open as the gate allows, a URL it can't send, a transport error, an
        error status; a 429 pauses the budget): the caller polls instead. The deadline
        passing raises :class:`PredictionTimeout`."""
        try:
            request = self.build(spec)
        except UnexpectedResponseFormat as error:
            logger.debug("%s: no stream for %s: %s", self.service.name, prediction_id, error)
            return None
        if spec.anonymous:  # not even a credential the HTTP client adds by default
            for name in ("authorization", "cookie"):
                request.headers.pop(name, None)
        gate = self.gate
        if gate is not None and not gate.reserve_stream():
            logger.debug(
                "%s: %d streams open, the most at once: polling %s",
                self.service.name,
                gate.stream_limit,
                prediction_id,
            )
            return None
        try:
            body = await self._open_stream(request, spec, deadline, prediction_id, timeout)
        except BaseException:
            if gate is not None:
                gate.end_stream()
            raise
        if body is None and gate is not None:
            gate.end_stream()
        return body

    async def _open_stream(
        self,
        request: httpx.Request,
        spec: RequestSpec,
        deadline: float,
        prediction_id: str,
        timeout: float,
    ) -> BodyReader | None:
        """:meth:`open_stream` once its place among the streams is counted."""
        response: httpx.Response | None = None
        late = False
        bucket = self.budget.requests if self.budget is not None else None
        with anyio.CancelScope(deadline=deadline) as scope:
            if bucket is not None:
                await bucket.acquire()
            await self._enter_gate(bucket)
            sent_at = anyio.current_time()
            try:
                # Never redirected: a stream answers itself or the caller polls. It has
                # STREAM_OPEN_TIMEOUT to answer: the prediction's polls don't wait on it.
                with anyio.CancelScope(deadline=sent_at + STREAM_OPEN_TIMEOUT) as opening:
                    response = await self.http.send(
                        request,
                        stream=True,
                        follow_redirects=False,
                        auth=None if spec.anonymous else httpx.USE_CLIENT_DEFAULT,
                    )
                late = opening.cancelled_caught
            except httpx.HTTPError as error:
                logger.debug(
                    "%s: no stream for %s: %s", self.service.name, prediction_id, type(error)
                )
            finally:
                if response is None and self.gate is not None:
                    self.gate.release()
        # Not opened and out of time (the opening's own deadline may have caught it):
        # the call's deadline, not a reason to poll.
        if scope.cancelled_caught or (response is None and anyio.current_time() >= deadline):
            raise PredictionTimeout(prediction_id, timeout)
        if late:
            logger.debug(
                "%s: the stream of %s did not open within %g s: polling",
                self.service.name,
                prediction_id,
                STREAM_OPEN_TIMEOUT,
            )
        if response is None:
            return None
        body = BodyReader(response, self.limit, "an event of the stream")
        if response.is_success:
            if bucket is not None:
                bucket.succeeded()
            return body
        try:
            if response.status_code == 429:
                self.pause_budget(False, response.headers, b"", deadline, sent_at)
        finally:
            await self._close_body(body)
        return None

    async def close_stream(self, body: BodyReader) -> None:
        """Close a stream :meth:`open_stream` opened and give its place in the gate back."""
        try:
            await self._close_body(body)
        finally:
            if self.gate is not None:
                self.gate.end_stream()

    async def _close_body(self, body: BodyReader) -> None:
        # Shielded inside: closes the response, then finishes its iterators in order.
        try:
            await body.aclose()
        finally:
            if self.gate is not None:
                self.gate.release()

    def pause_budget(
        self,
        creating: bool,
        headers: httpx.Headers,
        body: bytes,
        deadline: float,
        sent_at: float | None,
    ) -> float | None:
        """After a 429, lower that bucket's rate and send nothing from it for the wait
        the answer asked for (:func:`~._budget.throttle_wait`: ``Retry-After``, refined by
        the body's ``retry_after`` or ``RateLimit-Reset``; 1 s when none): at most
        :data:`MAX_RETRY_AFTER`, and never past the call's deadline. The wait, for the
        retry of the request that drew it."""
        wait, exact = throttle_wait(
            parse_retry_after(headers.get("retry-after")),
            _retry_after_field(body),
            headers.get("ratelimit-remaining"),
            headers.get("ratelimit-reset"),
        )
        if wait is not None:
            remaining = max(0.0, deadline - anyio.current_time())
            wait = min(wait, MAX_RETRY_AFTER, remaining)
        if self.budget is not None:
            self.budget.bucket(creating).throttled(wait, sent_at, exact=exact)
        return wait


def _retry_after_field(body: bytes) -> object:
    """The ``retry_after`` field of a 429's JSON body (Replicate's problem details carry
    one), or ``None``."""
    if b"retry_after" not in body:
        return None
    try:
        data, _ = decode_json_object(body)
    except UnexpectedResponseFormat:
        return None
    return data.get("retry_after")


@dataclass(frozen=True)
class Answer:
    """A response as read: its status, headers and (bounded) body."""

    status: int
    headers: httpx.Headers
    body: bytes
    cut: bool  # an error body longer than ERROR_BODY_LIMIT, cut there

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Failure:
    """One failed attempt: the error to raise, and whether (and when) to try again."""

    error: ReplicateHomeError
    retry_after: float | None
    retryable: bool
