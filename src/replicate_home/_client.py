"""What every client shares: the HTTP client's lifetime, ``generate`` and ``predict``.

A concrete client (``ReplicateHome``) only picks its :class:`Service`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from contextlib import aclosing
from types import TracebackType

import anyio
import httpx

from ._engine import Engine, StatusCallback
from ._exceptions import ClientNotOpenError, OutputRewritten
from ._models import ImageResponse, Prediction
from ._output import TextStream, image_urls, non_text_output, text_chunks
from ._prompt import Messages
from ._schedule import AdaptiveSchedule, FixedSchedule, PollSchedule, RetryPolicy
from ._service import PredictionCall, Service

__all__ = ["BaseClient", "Chunk", "check_timeout"]

Chunk = str | ImageResponse

#: Per-request limits of an owned HTTP client. The call's own deadline is the real bound;
#: these only stop one stuck request from eating all of it.
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

#: How long closing an owned HTTP client may take when the caller is being cancelled.
CLOSE_GRACE = 2.0


def check_timeout(timeout: object, name: str = "timeout") -> float:
    """Validate a positive, finite number of seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {timeout!r}")
    return float(timeout)


class BaseClient:
    """Runs predictions on one service; use it as ``async with``.

    It owns one ``httpx.AsyncClient`` for all its calls (keep-alive), or uses the one
    given as ``http_client`` and leaves it open.
    """

    def __init__(
        self,
        service: Service,
        *,
        timeout: float,
        poll_interval: float | None,
        proxy: str | None,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        self._timeout = check_timeout(timeout)
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
        self._engine: Engine | None = None
        self._owned_http: httpx.AsyncClient | None = None

    # -- lifetime -------------------------------------------------------------------

    async def __aenter__(self) -> BaseClient:
        if self._engine is not None:
            raise ClientNotOpenError(f"this {type(self).__name__} is already open")
        if self._given_http is not None:
            http = self._given_http
        else:
            http = self._owned_http = self._new_http_client()
        self._engine = self._new_engine(http)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine = None
        owned, self._owned_http = self._owned_http, None
        if owned is not None:
            await close_http_client(owned)

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(proxy=self._proxy, timeout=HTTP_TIMEOUT)

    def _new_engine(self, http: httpx.AsyncClient) -> Engine:
        return Engine(
            http, self._service, timeout=self._timeout, schedule=self._schedule, retry=self._retry
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
        model: str | None = None,
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        """Run one prediction and yield its output as it arrives.

        Text models yield ``str`` chunks as the output grows (joined, they are exactly the
        final output); image models yield one :class:`ImageResponse` with every image.
        Bad arguments raise here, before any request. Close the generator (or use
        ``contextlib.aclosing``) if you stop early.
        """
        call = self._service.prepare(model, messages, prompt)
        return stream_chunks(self._open_engine(), call)

    async def predict(
        self,
        model: str | None = None,
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        on_status: StatusCallback | None = None,
    ) -> Prediction:
        """Run one prediction to the end and return it.

        ``on_status`` is called with the :class:`Prediction` each time its status
        changes (for progress display). Raises :class:`PredictionFailed`,
        :class:`PredictionCanceled`, :class:`PredictionTimeout` and the HTTP errors.
        """
        call = self._service.prepare(model, messages, prompt)
        return await run_to_end(self._open_engine(), call, on_status=on_status)


async def run_to_end(
    engine: Engine,
    call: PredictionCall,
    *,
    timeout: float | None = None,
    on_status: StatusCallback | None = None,
) -> Prediction:
    """Drive one prediction to its terminal state and return it."""
    last: Prediction | None = None
    async with aclosing(engine.run(call, timeout=timeout, on_status=on_status)) as states:
        async for last in states:  # noqa: B007  # the last state is the result
            pass
    assert last is not None  # run() yields at least once or raises
    return last


async def stream_chunks(
    engine: Engine,
    call: PredictionCall,
    *,
    timeout: float | None = None,
    on_status: StatusCallback | None = None,
) -> AsyncGenerator[Chunk, None]:
    """Yield a prediction's output as text chunks or one :class:`ImageResponse`."""
    text = TextStream()
    async with aclosing(engine.run(call, timeout=timeout, on_status=on_status)) as states:
        async for prediction in states:
            final = prediction.status == "succeeded"
            if call.kind == "image":
                if final:
                    yield ImageResponse(image_urls(prediction.output), call.prompt or "")
                continue
            chunks = text_chunks(prediction.output)
            if chunks is None:  # not text: shown once, as JSON, when it is final
                if final:
                    yield non_text_output(prediction.output)
                continue
            new = text.advance(chunks, final=final)
            if new is None:
                raise OutputRewritten(prediction.id)
            for chunk in new:
                yield chunk


async def close_http_client(http: httpx.AsyncClient) -> None:
    """Close an owned HTTP client even while the caller is being cancelled."""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLOSE_GRACE):
        await http.aclose()
