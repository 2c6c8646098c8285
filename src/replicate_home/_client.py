"""What every client shares: lifetime, ``generate``, ``predict``, ``fan_out``, ``compare``
and ``race``. A concrete client (``ReplicateHome``, ``ReplicateAPI``) only picks its
:class:`Service` and options.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from types import TracebackType
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ._api_args import check_webhook
from ._bounded import DEFAULT_MAX_RESPONSE_BYTES, check_limit
from ._budget import RateBudget
from ._downloads import Downloads
from ._engine import Engine, StatusCallback
from ._exceptions import ClientNotOpenError
from ._exchange import RequestGate
from ._fanout import (
    ComparisonResult,
    FanOut,
    compare_results,
    fan_out_calls,
    first_success,
    open_fan_out,
)
from ._models import Deployment, Prediction
from ._prompt import Messages
from ._run import Output, run_to_end, stream_chunks
from ._schedule import AdaptiveSchedule, FixedSchedule, PollSchedule, RetryPolicy, check_seconds
from ._service import PredictionCall, Service
from ._service_clock import DateReading
from ._uploads import FileEncoding, FileGroup

__all__ = ["BaseClient", "close_http_client"]

#: Per-request limits of an owned HTTP client. The call's own deadline is the real bound;
#: these only stop one stuck request from eating all of it.
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

#: The connection pool of an owned HTTP client (httpx's defaults, spelled out): its
#: requests in flight are gated at ``max_connections`` (see :class:`RequestGate`).
HTTP_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

#: How long closing an owned HTTP client may take when the caller is being cancelled.
CLOSE_GRACE = 2.0

Input = Mapping[str, Any]


class BaseClient:
    """Runs predictions on one service; use it as ``async with``.

    It owns one ``httpx.AsyncClient`` for all its calls (keep-alive), or uses the one
    given as ``http_client`` and leaves it open. Where the service can cancel
    predictions, it also owns a task group, for the cleanup of predictions its callers
    abandon; leaving the ``async with`` waits for that cleanup (a few seconds at most).
    """

    def __init__(
        self,
        service: Service,
        *,
        timeout: float,
        poll_interval: float | None,
        proxy: str | None,
        http_client: httpx.AsyncClient | None,
        wait: float | None = None,
        budget: RateBudget | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._timeout = check_seconds(timeout, "timeout")
        self._max_response_bytes = check_limit(max_response_bytes)
        self._schedule: PollSchedule = (
            AdaptiveSchedule() if poll_interval is None else FixedSchedule(poll_interval)
        )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ValueError("http_client must be an httpx.AsyncClient")
        if http_client is not None and proxy is not None:
            raise ValueError("give proxy or http_client, not both: configure the proxy on it")
        if proxy is not None and not isinstance(proxy, str):
            raise ValueError("proxy must be a URL string")
        self._service = service
        self._proxy = proxy
        self._given_http = http_client
        self._retry = RetryPolicy()
        self._wait = wait
        self._budget = budget
        self._engine: Engine | None = None
        self._owned_http: httpx.AsyncClient | None = None
        self._group: TaskGroup | None = None
        file_auth = getattr(service, "file_auth", None)
        origin, headers = file_auth() if file_auth is not None else (None, None)
        #: How output files download: this client's pool while it is open.
        self._downloads = Downloads(
            timeout=self._timeout,
            max_bytes=self._max_response_bytes,
            auth_origin=origin,
            headers=headers,
        )

    # -- lifetime -------------------------------------------------------------------

    async def __aenter__(self) -> BaseClient:
        if self._engine is not None:
            raise ClientNotOpenError(f"this {type(self).__name__} is already open")
        if self._given_http is not None:
            http = self._given_http
        else:
            http = self._owned_http = self._new_http_client()
        if self._service.can_cancel:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._group = group
        self._engine = self._new_engine(http)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine = None
        self._downloads.http = self._downloads.gate = None  # files fetch on their own now
        group, self._group = self._group, None
        owned, self._owned_http = self._owned_http, None
        try:
            if group is not None:
                # Wait for outstanding cleanup (each task bounds itself). The body's
                # exception is not passed in: the group would cancel the cleanup, and its
                # return value could swallow that exception. It propagates as it is.
                await group.__aexit__(None, None, None)
        finally:
            if owned is not None:
                await close_http_client(owned)

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            proxy=self._proxy,
            timeout=HTTP_TIMEOUT,
            limits=HTTP_LIMITS,
            event_hooks={"request": [_request_sent], "response": [_response_received]},
        )

    def _new_engine(self, http: httpx.AsyncClient) -> Engine:
        # Only a client of our own has a pool we know the size of; a given one is used as
        # it is configured.
        owned = http is not self._given_http
        gate = RequestGate(HTTP_LIMITS.max_connections or 100) if owned else None
        self._downloads.http, self._downloads.gate = http, gate
        return Engine(
            http,
            self._service,
            timeout=self._timeout,
            schedule=self._schedule,
            retry=self._retry,
            background=self._group,
            budget=self._budget,
            max_response_bytes=self._max_response_bytes,
            gate=gate,
            downloads=self._downloads,
        )

    def _open_engine(self) -> Engine:
        if self._engine is None:
            raise ClientNotOpenError(
                f"use the client inside `async with {type(self).__name__}(...) as client:`"
            )
        return self._engine

    # -- calls ----------------------------------------------------------------------

    def generate(
        self,
        model: str | Deployment | None = None,
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        file_encoding: FileEncoding | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[Output, None]:
        """Run one prediction and yield its output as it arrives.

        Text models yield ``str`` chunks as the output grows (joined, they are exactly the
        final output); image models yield one :class:`ImageResponse` with every image.
        Bad arguments raise here, before any request. Close the generator (or use
        ``contextlib.aclosing``) if you stop early. ``webhook`` (official API only) is a
        URL the service also posts the prediction to, for the events in
        ``webhook_events_filter``. ``file_encoding`` (official API only) says how this
        call sends its file inputs: ``"upload"`` or ``"data"`` (the client's by default).
        ``timeout`` is this call's deadline in seconds (the client's by default), as for
        :meth:`fan_out` and :meth:`wait`: :class:`PredictionTimeout` when it passes.
        """
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        call = self._service.prepare(model, messages, prompt, input)
        call = self._with_webhook(call, webhook, webhook_events_filter)
        call = self._with_files(call, file_encoding, None)
        return stream_chunks(self._open_engine(), call, timeout=seconds)

    async def predict(
        self,
        model: str | Deployment | None = None,
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        on_status: StatusCallback | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        file_encoding: FileEncoding | None = None,
        timeout: float | None = None,
    ) -> Prediction:
        """Run one prediction to the end and return it.

        ``on_status`` is called with the :class:`Prediction` each time its status
        changes (for progress display): a plain function, or an async one, which is
        awaited before the call goes on (reports arrive in order, under the call's
        deadline). An exception the callback raises fails the call with that exception
        (the prediction is cancelled where the service can). Raises
        :class:`PredictionFailed`, :class:`PredictionCanceled`,
        :class:`PredictionTimeout` and the HTTP errors (a file input that could not be
        uploaded: :class:`UploadFailed`, before any prediction is created).
        ``webhook``, ``webhook_events_filter``, ``file_encoding`` and ``timeout`` as for
        :meth:`generate`.
        """
        if on_status is not None and not callable(on_status):
            raise ValueError(f"on_status must be a function or None, not {on_status!r}")
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        call = self._service.prepare(model, messages, prompt, input)
        call = self._with_webhook(call, webhook, webhook_events_filter)
        call = self._with_files(call, file_encoding, None)
        engine = self._open_engine()
        return await run_to_end(engine, call, timeout=seconds, on_status=on_status, wait=self._wait)

    def fan_out(
        self,
        models: Sequence[str | Deployment],
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        limit: int | None = None,
        timeout: float | None = None,
        fail_fast: bool = False,
        progress: bool = False,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        file_encoding: FileEncoding | None = None,
    ) -> AbstractAsyncContextManager[FanOut]:
        """Run one prompt on several models at once; events arrive as they happen.

        ``async with client.fan_out(models, messages) as events: async for event in
        events: ...``. ``models`` may repeat a model (every event carries its ``index``).
        Every model ends with exactly one :class:`Finished` or :class:`Failed`; a failure
        is only that model's event unless ``fail_fast``, which cancels the rest and
        raises the error out of the block. ``limit`` caps predictions in flight;
        ``timeout`` is each model's deadline (default: the client's). ``progress`` adds a
        :class:`Progress` event after every poll. Leaving the block early cancels all
        work still running. Bad arguments raise here, before any request. ``webhook`` and
        ``webhook_events_filter`` (official API only) go with every model's create.
        File inputs (official API only) are sent once for all the models, as
        ``file_encoding`` says (the client's way by default).
        """
        hook, events = self._webhook_options(webhook, webhook_events_filter)
        group = FileGroup()

        def adjust(call: PredictionCall) -> PredictionCall:
            if hook is not None:
                call = replace(call, webhook=hook, webhook_events_filter=events)
            return self._with_files(call, file_encoding, group)

        return open_fan_out(
            self._open_engine(),
            self._service,
            models,
            messages,
            prompt=prompt,
            input=input,
            limit=limit,
            timeout=timeout,
            fail_fast=fail_fast,
            progress=progress,
            adjust=adjust,
        )

    def _webhook_options(
        self, webhook: object, events: object
    ) -> tuple[str | None, tuple[str, ...] | None]:
        """Webhook options, validated; a ``ValueError`` on a service without webhooks."""
        if webhook is None and events is None:
            return None, None
        if not getattr(self._service, "webhooks", False):
            raise ValueError("webhooks are a feature of the official API: use ReplicateAPI")
        return check_webhook(webhook, events)

    def _with_webhook(
        self, call: PredictionCall, webhook: object, events: object
    ) -> PredictionCall:
        hook, chosen = self._webhook_options(webhook, events)
        if hook is None:
            return call
        return replace(call, webhook=hook, webhook_events_filter=chosen)

    def _with_files(
        self, call: PredictionCall, file_encoding: object, group: FileGroup | None
    ) -> PredictionCall:
        """``call`` with how its file inputs are sent; a ``ValueError`` on a service
        that takes none."""
        attach = getattr(self._service, "attach_files", None)
        if attach is None:
            if file_encoding is not None:
                raise ValueError("file inputs are a feature of the official API: use ReplicateAPI")
            return call
        attached: PredictionCall = attach(call, file_encoding, group)
        return attached

    # -- for comparisons (replicate_home.comparisons) --------------------------------

    def _clock_reading(self) -> DateReading | None:
        """The latest answer's ``Date`` beside this machine's clock (see
        :mod:`._service_clock`), or ``None`` before any answer had one."""
        return self._open_engine()._exchange.clock

    def _prepare_call(
        self, model: str | Deployment, prompt: str | None, input: Input | None
    ) -> PredictionCall:
        """One cell's call, validated (a ``ValueError`` before any request)."""
        return self._service.prepare(model, None, prompt, input)

    def _fan_out_calls(
        self, calls: Sequence[PredictionCall], *, limit: int | None, timeout: float | None
    ) -> AbstractAsyncContextManager[FanOut]:
        """Run prepared calls with the fan-out's guarantees, with :class:`Progress`
        events (the first one after a create carries the new prediction's id)."""
        return fan_out_calls(
            self._open_engine(), calls, limit=limit, timeout=timeout, progress=True
        )

    async def compare(
        self,
        models: Sequence[str | Deployment],
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        limit: int | None = None,
        timeout: float | None = None,
        file_encoding: FileEncoding | None = None,
    ) -> list[ComparisonResult]:
        """Run one prompt on several models; one :class:`ComparisonResult` per model,
        in the order of ``models``. Failures are results, not exceptions. File inputs
        are sent once for all the models (``file_encoding`` as for :meth:`fan_out`)."""
        events = self.fan_out(
            models,
            messages,
            prompt=prompt,
            input=input,
            limit=limit,
            timeout=timeout,
            file_encoding=file_encoding,
        )
        return await compare_results(events, len(models))

    async def race(
        self,
        models: Sequence[str | Deployment],
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        limit: int | None = None,
        timeout: float | None = None,
        file_encoding: FileEncoding | None = None,
    ) -> Prediction:
        """The first prediction to succeed; the others are cancelled at once.

        Raises :class:`AllPredictionsFailed` when none succeeds. File inputs as for
        :meth:`compare`.
        """
        events = self.fan_out(
            models,
            messages,
            prompt=prompt,
            input=input,
            limit=limit,
            timeout=timeout,
            file_encoding=file_encoding,
        )
        return await first_success(events)


#: One line per request of an owned HTTP client, at DEBUG: method, URL (no query, no
#: credentials), status and time to the response's headers. ``replicate-home -v`` shows it.
request_log = logging.getLogger("replicate_home.http")

_SENT_AT = "replicate_home.sent_at"


async def _request_sent(request: httpx.Request) -> None:
    if request_log.isEnabledFor(logging.DEBUG):
        request.extensions[_SENT_AT] = time.perf_counter()


async def _response_received(response: httpx.Response) -> None:
    request = response.request
    sent_at = request.extensions.get(_SENT_AT)
    if sent_at is None or not request_log.isEnabledFor(logging.DEBUG):
        return
    url = request.url
    request_log.debug(
        "%s %s://%s%s -> %d (%.0f ms)",
        request.method,
        url.scheme,
        url.netloc.decode("ascii", "replace"),
        url.path,
        response.status_code,
        (time.perf_counter() - sent_at) * 1000,
    )


async def close_http_client(http: httpx.AsyncClient) -> None:
    """Close an owned HTTP client even while the caller is being cancelled."""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLOSE_GRACE):
        await http.aclose()
