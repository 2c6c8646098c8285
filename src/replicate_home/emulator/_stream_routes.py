"""The stream origin's route (a port of its own): ``GET /v1/streams/{key}`` streams a text
prediction's output as server-sent events to whoever has the URL, with no token."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ._api_common import not_found
from ._api_rules import format_event
from ._recording import request_info
from ._responses import problem
from ._simulation import Prediction, stream_events
from ._state import EmulatorState

__all__ = ["stream_routes"]

_EVENT_STREAM_TYPES = frozenset({"text/event-stream", "text/*", "*/*"})


def stream_routes(state: EmulatorState) -> list[BaseRoute]:
    """The routes of the stream origin: no token wanted, none checked."""
    return [Route("/v1/streams/{key}", _StreamRoute(state).stream, methods=["GET"])]


def _accepts_event_stream(accept: str | None) -> bool:
    if accept is None or not accept.strip():
        return True
    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & _EVENT_STREAM_TYPES)


class _StreamRoute:
    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def stream(self, request: Request) -> Response:
        """An output stream on the stream origin. Its URL is the capability: whatever
        ``Authorization`` comes with it is ignored, as the real stream hosts ignore it."""
        emu = self._state
        now = emu.now()
        emu.store.purge(now)
        pred = emu.store.by_stream_key(request.path_params["key"], now)
        if pred is None:
            return not_found("Stream")
        request_info(request).prediction_id = pred.id
        if not _accepts_event_stream(request.headers.get("accept")):
            return problem(
                406, "Not acceptable", "The output stream is text/event-stream: accept it"
            )
        last_event_id = (request.headers.get("last-event-id") or "").strip()
        first = int(last_event_id) + 1 if last_event_id.isdigit() else 0
        return _EventStream(self._state, pred, first)


class _EventStream(StreamingResponse):
    """A prediction's output as server-sent events, pushed as the simulation produces them.

    Ends after the ``done`` event, when the client disconnects, or when the emulator stops
    serving.
    """

    def __init__(self, state: EmulatorState, pred: Prediction, first_id: int) -> None:
        self._state = state
        self._events = self._produce(pred, first_id)
        super().__init__(
            self._events,
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _produce(self, pred: Prediction, first_id: int) -> AsyncGenerator[bytes, None]:
        emu = self._state
        sent = first_id
        while True:
            now = emu.now()
            events, due = stream_events(pred, now)
            if sent < len(events):
                yield b"".join(format_event(event) for event in events[sent:])
                sent = len(events)
            if due is None or emu.stopping:
                return
            await emu.pause(due - now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emu = self._state
        emu.stream_connections += 1
        emu.open_streams += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
            emu.open_streams -= 1
            emu.wake_waiters()
