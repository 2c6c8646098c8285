"""What an emulator records of what it was asked: one :class:`RequestRecord` per request
answered (written by the :class:`Recorder` middleware, with the prediction a route names
in :func:`request_info`), and the :class:`EmulatorStats` counters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "EmulatorStats",
    "Origin",
    "RecordRequest",
    "Recorder",
    "RequestInfo",
    "RequestRecord",
    "masked_headers",
    "request_info",
]

#: The emulator's two origins: the services' routes, and the output streams' host.
Origin = Literal["main", "stream"]

_INFO_KEY = "replicate_home.emulator.request"
#: Header names whose values are secrets: masked whenever a record is printed.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _mask(name: str, value: str) -> str:
    if name.lower() not in _SECRET_HEADERS:
        return value
    scheme, _, credentials = value.partition(" ")
    return f"{scheme} ***" if credentials else "***"


class _MaskedHeaders(dict[str, str]):
    """Request headers whose printed form hides secrets (``Authorization`` and the like)."""

    def __repr__(self) -> str:
        return repr({name: _mask(name, value) for name, value in self.items()})


def masked_headers(scope: Scope) -> dict[str, str]:
    """The headers of a request with lower-cased names (repeated headers joined with
    ``", "``), in a dict whose printed form masks secrets."""
    headers = _MaskedHeaders()
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@dataclass(frozen=True, repr=False)
class RequestRecord:
    """One request the emulator answered.

    Printing a record (``repr``/``str``) masks the ``Authorization`` header's credentials;
    :attr:`headers` still holds the real values for tests to check.
    """

    time: float
    """Emulator-clock time the answer was decided."""
    method: str
    path: str
    query: str
    """The raw query string, without ``?``."""
    headers: Mapping[str, str] = field(hash=False)
    """Request headers with lower-cased names (repeated headers joined with ``", "``)."""
    prediction_id: str | None
    """For polls, cancels, streams and file fetches the id the request names; for creates
    the id created (``None`` when faulted or rejected); otherwise ``None``."""
    status_code: int
    """The status code answered."""
    origin: Origin = "main"
    """Which of the emulator's origins answered: ``"main"`` (:attr:`Emulator.base_url`)
    or ``"stream"`` (:attr:`Emulator.stream_url`, the output streams)."""

    def __repr__(self) -> str:
        headers = {name: _mask(name, value) for name, value in self.headers.items()}
        return (
            f"RequestRecord(time={self.time!r}, method={self.method!r}, path={self.path!r}, "
            f"query={self.query!r}, headers={headers!r}, prediction_id={self.prediction_id!r}, "
            f"status_code={self.status_code!r}, origin={self.origin!r})"
        )


@dataclass(frozen=True)
class EmulatorStats:
    """Counters of an emulator (homepage and ``/v1`` requests together)."""

    creates: int
    """Predictions created (``201`` answers)."""
    polls: int
    """Poll requests answered (``GET /api/poll``, ``GET /v1/predictions/{id}``), whatever
    the answer."""
    requests: int
    """All requests answered."""
    in_flight: int
    """Predictions whose terminal time is still in the future."""
    peak_in_flight: int
    """The largest ``in_flight`` seen at a create (the new prediction included)."""
    cancels: int = 0
    """Cancel requests answered (``POST /v1/predictions/{id}/cancel``), whatever the answer."""
    stream_connections: int = 0
    """Output streams opened (``200`` answers on the stream origin)."""
    open_streams: int = 0
    """Output streams still open."""
    throttled: int = 0
    """Requests refused with ``429`` by the ``/v1`` rate limits."""
    stream_requests: int = 0
    """Requests the stream origin (:attr:`Emulator.stream_url`) answered, whatever the
    answer; ``requests`` counts them too."""
    webhooks_sent: int = 0
    """Webhook delivery attempts (retries included)."""
    webhooks_failed: int = 0
    """Webhook delivery attempts the receiver did not answer with 2xx."""
    uploads: int = 0
    """Files created through ``POST /v1/files`` (``201`` answers)."""


class RequestInfo:
    """What the route handlers tell the recorder about one request."""

    __slots__ = ("prediction_id",)

    def __init__(self) -> None:
        self.prediction_id: str | None = None


def request_info(request: Request) -> RequestInfo:
    """Where a route notes the prediction its request names (a throwaway note for a
    request the :class:`Recorder` does not see)."""
    info = request.scope.get(_INFO_KEY)
    return info if isinstance(info, RequestInfo) else RequestInfo()


#: ``record(scope, status_code, prediction_id, origin)``: note one answered request.
RecordRequest = Callable[[Scope, int, "str | None", Origin], None]


class Recorder:
    """ASGI middleware recording every HTTP request as it is answered."""

    def __init__(self, app: ASGIApp, record: RecordRequest, origin: Origin = "main") -> None:
        self.app = app
        self.record = record
        self.origin: Origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = RequestInfo()
        scope[_INFO_KEY] = info
        recorded = False

        async def send_and_record(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Recorded before any byte reaches the client, so a client that got its
                # answer always sees it in the stats.
                recorded = True
                self.record(scope, int(message["status"]), info.prediction_id, self.origin)
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if not recorded:  # the app crashed; Starlette answers 500 outside this middleware
                self.record(scope, 500, info.prediction_id, self.origin)
