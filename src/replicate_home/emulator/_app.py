"""The emulator's state and its ASGI application (Starlette).

Two thin HTTP layers share one simulation (:mod:`._simulation`) and one set of
predictions:

- the homepage routes (:mod:`._home_routes`): ``POST /api/prediction``, ``GET /api/poll``;
- Replicate's HTTP API (:mod:`._api_routes`) under ``/v1``.

Besides, ``GET /_emulator/files/{id}/{n}.png`` serves generated images and
``GET /_emulator/stats`` answers :class:`EmulatorStats` as JSON.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._api_routes import ApiRoutes
from ._api_rules import TokenBucket
from ._file_models import FileDigest
from ._files_routes import FilesRoutes, FileStore
from ._home_routes import HomeRoutes
from ._responses import detail_response, problem
from ._schemas import MODEL_KINDS, ModelKind
from ._simulation import (
    COMMUNITY_MODELS,
    EXTRA_IMAGE_MODELS,
    FILE_MODELS,
    MODELS,
    Fault,
    FileOutput,
    ModelInfo,
    Prediction,
    PredictionStore,
    Scenario,
    Source,
    file_content,
    generate_text,
    make_prediction_id,
    model_info,
)
from ._webhooks import DEFAULT_RETRY_DELAYS, WebhookDelivery, WebhookSender, new_secret

__all__ = ["Emulator", "EmulatorStats", "RequestRecord"]

#: The emulator's two origins: the services' routes, and the output streams' host.
Origin = Literal["main", "stream"]

_INFO_KEY = "replicate_home.emulator.request"
#: Header names whose values are secrets: masked whenever a record is printed.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: How long a wait in the server sleeps at most between looks at a clock that is not
#: the event loop's (a test's clock can jump at any moment).
_CUSTOM_CLOCK_TICK = 0.02
#: Version ids the emulator remembers for ``POST /v1/predictions`` with a bare id.
_MAX_KNOWN_VERSIONS = 100_000


_OWNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class Deployment:
    """A deployment the emulator serves: the model and version it runs."""

    name: str
    model: str
    version: str
    release: int = 1
    configuration: dict[str, Any] = field(
        default_factory=lambda: {"hardware": "gpu-t4", "min_instances": 0, "max_instances": 1}
    )


def _mask(name: str, value: str) -> str:
    if name.lower() not in _SECRET_HEADERS:
        return value
    scheme, _, credentials = value.partition(" ")
    return f"{scheme} ***" if credentials else "***"


class _MaskedHeaders(dict[str, str]):
    """Request headers whose printed form hides secrets (``Authorization`` and the like)."""

    def __repr__(self) -> str:
        return repr({name: _mask(name, value) for name, value in self.items()})


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


class _RequestInfo:
    """What the route handlers tell the recorder about one request."""

    __slots__ = ("prediction_id",)

    def __init__(self) -> None:
        self.prediction_id: str | None = None


class _Recorder:
    """ASGI middleware recording every HTTP request as it is answered."""

    def __init__(self, app: ASGIApp, emulator: Emulator, origin: Origin = "main") -> None:
        self.app = app
        self.emulator = emulator
        self.origin: Origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = _RequestInfo()
        scope[_INFO_KEY] = info
        recorded = False

        async def send_and_record(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Recorded before any byte reaches the client, so a client that got its
                # answer always sees it in the stats.
                recorded = True
                self.emulator._record(
                    scope, int(message["status"]), info.prediction_id, self.origin
                )
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if not recorded:  # the app crashed; Starlette answers 500 outside this middleware
                self.emulator._record(scope, 500, info.prediction_id, self.origin)


def _stream_key() -> str:
    """An unguessable stream path segment, shaped like the real service's (52 lowercase
    base32 characters: 256 random bits)."""
    return base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=").lower()


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Emulator:
    """A faithful loopback emulator of the Replicate services: the homepage service and
    Replicate's HTTP API under ``/v1``, over one simulation.

    Build one, optionally :meth:`script` prompts, then ``async with emulator.serve() as emu``
    and point a client at ``emu.base_url``. The same object exposes what happened:
    :meth:`stats`, :meth:`polls`, :attr:`requests` and :meth:`wait_for`.

    ``scenario`` is the behaviour of predictions whose prompt is not scripted.
    Finished predictions are forgotten ``expire_after`` seconds after completion, and at
    most ``max_predictions`` are kept. The last ``history`` requests are kept in
    :attr:`requests`. ``clock`` gives the emulator time in seconds; by default
    :func:`anyio.current_time`, read when requests are handled.

    For ``/v1``: ``token``, if given, is the only API token accepted (otherwise any
    non-empty bearer token is); ``rate_limits=(creates, others)`` enforces that many
    requests a minute (token buckets with a burst of a second's worth; ``None``, the
    default, means no limits); ``page_size`` is the number of predictions per page of
    ``GET /v1/predictions``. ``community_models`` names models (``owner/name``) to treat
    as community models besides the built-in ones: the model route answers 404 for them,
    as the real API does, and they run by version. ``models`` maps more model names
    (``owner/name``) to the kind of model they are (``"text"``, ``"image"``, ``"upscale"``,
    ``"image-to-image"``, ``"speech-to-text"`` or ``"video"``), for tests that need
    several models of one kind. ``file_output`` is how ``/v1`` image
    outputs are given where a scenario does not say: ``"data"`` (the default),
    ``data:image/png;base64,...`` URIs, which the official clients wrap as file objects
    as they wrap the real service's ``https`` URLs; ``"url"``, ``http`` URLs of files the
    emulator serves (which the official clients leave as strings). ``deployments`` maps
    deployment names (``owner/name``) to the models they run (see :meth:`deploy`).

    Webhooks: a create with ``webhook`` gets signed deliveries while the emulator serves
    (see :attr:`webhook_deliveries`); ``webhook_secret`` is the ``whsec_...`` signing
    secret (default: a fresh one, also answered by ``GET /v1/webhooks/default/secret``),
    ``webhook_retry_delays`` the seconds between attempts at a final delivery that fails.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        expire_after: float = 600.0,
        max_predictions: int = 10_000,
        history: int = 10_000,
        clock: Callable[[], float] | None = None,
        token: str | None = None,
        rate_limits: tuple[int, int] | None = None,
        page_size: int = 100,
        file_output: FileOutput = "data",
        community_models: Iterable[str] = (),
        models: Mapping[str, ModelKind] | None = None,
        deployments: Mapping[str, str] | None = None,
        webhook_secret: str | None = None,
        webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        if scenario is not None and not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a Scenario, got {type(scenario).__name__}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be a non-negative int, got {history!r}")
        if token is not None and (
            not isinstance(token, str) or not token.strip() or token != token.strip()
        ):
            raise ValueError("token must be a non-empty str without surrounding whitespace")
        buckets: tuple[TokenBucket, TokenBucket] | None = None
        if rate_limits is not None:
            if not isinstance(rate_limits, tuple) or len(rate_limits) != 2:
                raise ValueError(
                    "rate_limits must be a (creates per minute, other requests per minute) "
                    f"tuple or None, got {rate_limits!r}"
                )
            creates, others = rate_limits
            buckets = (
                TokenBucket(_positive_int("rate_limits[0]", creates)),
                TokenBucket(_positive_int("rate_limits[1]", others)),
            )
        self._default = scenario if scenario is not None else Scenario()
        self._store = PredictionStore(expire_after=expire_after, max_predictions=max_predictions)
        self._real_clock = clock is None
        self._clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self._wall_offset: float | None = None
        self._last_now = 0.0
        self._scripts: dict[tuple[str, str | None], Scenario] = {}
        self._submit_counts: dict[tuple[str, str | None], int] = {}
        self._history: collections.deque[RequestRecord] = collections.deque(maxlen=history)
        self._token = token
        self._buckets = buckets
        self._page_size = _positive_int("page_size", page_size)
        if file_output not in ("data", "url"):
            raise ValueError(f"file_output must be 'data' or 'url', got {file_output!r}")
        self._file_output: FileOutput = file_output
        if isinstance(community_models, str):
            raise ValueError("community_models must be a collection of 'owner/name' strings")
        self._community = frozenset(community_models)
        self._models: dict[str, ModelKind] = {}
        for name, kind in (models or {}).items():
            if not isinstance(name, str) or not _OWNER_NAME.fullmatch(name):
                raise ValueError(f"models keys must be 'owner/name', got {name!r}")
            if kind not in MODEL_KINDS:
                raise ValueError(
                    f"models[{name!r}] must be one of {', '.join(MODEL_KINDS)}, got {kind!r}"
                )
            self._models[name] = kind
        if webhook_secret is not None and (
            not isinstance(webhook_secret, str) or not webhook_secret.startswith("whsec_")
        ):
            raise ValueError("webhook_secret must be a string that starts with 'whsec_'")
        self._webhook_secret = webhook_secret if webhook_secret is not None else new_secret()
        delays = tuple(webhook_retry_delays)
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in delays):
            raise ValueError("webhook_retry_delays must be non-negative numbers of seconds")
        self._webhook_retry_delays = delays
        self._deliveries: collections.deque[WebhookDelivery] = collections.deque(maxlen=history)
        self._webhooks_sent = 0
        self._webhooks_failed = 0
        self._sender: WebhookSender | None = None
        self._deployments: dict[str, Deployment] = {}
        for name, model in (deployments or {}).items():
            self.deploy(name, model)
        self._known_versions: dict[str, str] = {
            model_info(model).version: model
            for model in (*MODELS, *sorted(EXTRA_IMAGE_MODELS), *FILE_MODELS, *self._models)
        }
        self._run_counts: collections.Counter[str] = collections.Counter()
        self._creates = 0
        self._polls = 0
        self._requests = 0
        self._peak_in_flight = 0
        self._cancels = 0
        self._stream_connections = 0
        self._open_streams = 0
        self._throttled = 0
        self._stream_requests = 0
        self._changed: anyio.Event | None = None
        self._base_url: str | None = None
        self._stream_url: str | None = None
        self._serving_now = False
        self._stopping = False
        api_routes = ApiRoutes(self)
        #: Files uploaded through ``/v1/files``.
        self.files = FileStore()
        self._app = Starlette(
            routes=[
                *HomeRoutes(self).routes,
                *api_routes.routes,
                *FilesRoutes(api_routes, self.files).routes,
                Route("/_emulator/files/{prediction_id}/{name}", self._file, methods=["GET"]),
                Route("/_emulator/stats", self._stats, methods=["GET"]),
            ],
            middleware=[Middleware(_Recorder, emulator=self)],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )
        # The output streams live on an origin of their own, as the real service's do.
        self._stream_app = Starlette(
            routes=api_routes.stream_routes,
            middleware=[Middleware(_Recorder, emulator=self, origin="stream")],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    # ----------------------------------------------------------------- public API

    def script(self, prompt: str, scenario: Scenario, *, model: str | None = None) -> None:
        """Make predictions whose ``input.prompt`` equals ``prompt`` follow ``scenario``.

        With ``model`` ("owner/name") only that model's predictions do, so one prompt can
        behave differently per model (a fan-out sends the same prompt to every model); a
        model's own script wins over the prompt's. Scripting again replaces the scenario
        and restarts its submit faults. Scripts apply to homepage and ``/v1`` predictions.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        if not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a Scenario, got {type(scenario).__name__}")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"model must be a str or None, got {type(model).__name__}")
        self._scripts[prompt, model] = scenario
        self._submit_counts.pop((prompt, model), None)

    def deploy(self, name: str, model: str) -> None:
        """Serve a deployment ``owner/name`` that runs ``model`` (``owner/name``) at the
        emulator's version of it: ``POST /v1/deployments/{owner}/{name}/predictions``
        creates its predictions, ``GET /v1/deployments[/{owner}/{name}]`` describes it.
        Deployments can also be created over HTTP (``POST /v1/deployments``)."""
        for label, value in (("deployment name", name), ("model", model)):
            if not isinstance(value, str) or not _OWNER_NAME.fullmatch(value):
                raise ValueError(f"a {label} must be 'owner/name', got {value!r}")
        info = self._model_info(model)
        self._deployments[name] = Deployment(name, model, info.version)

    @property
    def app(self) -> Starlette:
        """The ASGI application (Starlette), to mount or serve yourself. Served that way,
        ``/v1`` predictions name no ``urls.stream`` (the stream origin is
        :attr:`stream_app`, served by :meth:`serve`), so clients poll."""
        return self._app

    @property
    def stream_app(self) -> Starlette:
        """The ASGI application of the stream origin (:attr:`stream_url`)."""
        return self._stream_app

    @property
    def stream_url(self) -> str:
        """``http://HOST:PORT`` of the stream origin: where ``urls.stream`` of ``/v1``
        predictions point. A second port of the same emulator, as Replicate serves
        streams from hosts of their own; its paths are unguessable and want no token."""
        if self._stream_url is None:
            raise RuntimeError(
                "the emulator is not serving: use `async with emulator.serve() as emu:` "
                "and read `emu.stream_url` inside that block"
            )
        return self._stream_url

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._base_url is None:
            raise RuntimeError(
                "the emulator is not serving: use `async with emulator.serve() as emu:` "
                "and read `emu.base_url` inside that block"
            )
        return self._base_url

    def stats(self) -> EmulatorStats:
        """The counters so far (``in_flight`` as of now)."""
        return EmulatorStats(
            creates=self._creates,
            polls=self._polls,
            requests=self._requests,
            in_flight=self._store.in_flight(self._now_or_last()),
            peak_in_flight=self._peak_in_flight,
            cancels=self._cancels,
            stream_connections=self._stream_connections,
            open_streams=self._open_streams,
            throttled=self._throttled,
            stream_requests=self._stream_requests,
            webhooks_sent=self._webhooks_sent,
            webhooks_failed=self._webhooks_failed,
            uploads=self.files.uploads,
        )

    def download_url(self, file_id: str, expires_in: float = 3600) -> str:
        """A signed download URL of an uploaded file (``GET /v1/files/{id}/download?owner=
        &expiry=&signature=``), valid for ``expires_in`` seconds: the file's bytes for
        whoever has it, no token wanted; a model input may name it too."""
        if file_id not in self.files.files:
            raise KeyError(f"no uploaded file {file_id!r}")
        return self.files.download_url(self.base_url, file_id, expires_in)

    @property
    def webhook_secret(self) -> str:
        """The ``whsec_...`` secret the emulator signs webhook deliveries with."""
        return self._webhook_secret

    @property
    def webhook_deliveries(self) -> Sequence[WebhookDelivery]:
        """Every webhook delivery attempt (the last ``history``), oldest first: event,
        URL, signing headers, body, and the receiver's answer."""
        return tuple(self._deliveries)

    def polls(self, prediction_id: str) -> int:
        """How many polls the prediction got (0 for unknown or forgotten ids)."""
        pred = self._store.peek(prediction_id)
        return 0 if pred is None else pred.polls

    @property
    def requests(self) -> Sequence[RequestRecord]:
        """The last ``history`` requests, oldest first (a snapshot)."""
        return tuple(self._history)

    async def wait_for(self, predicate: Callable[[Emulator], bool]) -> None:
        """Return as soon as ``predicate(self)`` is true.

        The predicate is checked now, again after every request the emulator answers, every
        prediction it creates, every output stream that closes, and when serving stops (not
        on the mere passing of time). Use it with a timeout, e.g.
        ``with anyio.fail_after(5): await emu.wait_for(lambda e: e.stats().creates == 3)``.
        """
        while not predicate(self):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, stream_port: int = 0
    ) -> AbstractAsyncContextManager[Emulator]:
        """Serve the emulator over HTTP under the running async backend (asyncio or trio).

        ``async with Emulator().serve() as emu:`` binds ``host:port`` (port 0: any free
        port) and ``host:stream_port`` for the output streams, sets ``emu.base_url`` and
        ``emu.stream_url`` and serves until the block exits, then shuts the server down
        promptly: open output streams end and held creates answer at once.
        """
        return self._serving(host, port, stream_port)

    # ----------------------------------------------------------------- internals

    @asynccontextmanager
    async def _serving(self, host: str, port: int, stream_port: int) -> AsyncIterator[Emulator]:
        from ._server import serving

        if self._serving_now:
            raise RuntimeError("this emulator is already serving")
        self._serving_now = True
        self._stopping = False
        try:
            async with (
                serving(self._app, host, port) as base_url,
                serving(self._stream_app, host, stream_port) as stream_url,
                httpx.AsyncClient(trust_env=False) as http,
            ):
                self._base_url, self._stream_url = base_url, stream_url
                body_error: BaseException | None = None
                async with anyio.create_task_group() as deliveries:
                    self._sender = WebhookSender(self, deliveries, http, self._webhook_retry_delays)
                    try:
                        yield self
                    except BaseException as error:  # re-raised below, not wrapped in a group
                        body_error = error
                    finally:
                        # Before the server shuts down: streams and held answers end now,
                        # and deliveries still pending are dropped.
                        self._sender = None
                        self._stopping = True
                        self._wake_waiters()
                        deliveries.cancel_scope.cancel()
                if body_error is not None:
                    raise body_error
        finally:
            self._base_url = self._stream_url = None
            self._serving_now = False
            self._stopping = True
            self._wake_waiters()  # waiters re-check; no event outlives this event loop

    def _now(self) -> float:
        now = float(self._clock())
        if self._wall_offset is None:
            self._wall_offset = time.time() - now
        self._last_now = now
        return now

    def _now_or_last(self) -> float:
        try:
            return self._now()
        except RuntimeError:  # the default clock outside an event loop
            return self._last_now

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less: until the emulator answers a request, creates a
        prediction or stops serving. With a clock of its own (not the event loop's), the
        emulator looks again at least every few milliseconds, as that clock may jump."""
        if not self._real_clock:
            delay = min(delay, _CUSTOM_CLOCK_TICK)
        if self._stopping:
            return
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        with anyio.move_on_after(max(delay, 0.0)):
            await changed.wait()

    def _script_key(self, prompt: object, model: object) -> tuple[str, str | None] | None:
        """The key of the script that applies to a prompt and model, if any."""
        if not isinstance(prompt, str):
            return None
        if isinstance(model, str) and (prompt, model) in self._scripts:
            return prompt, model
        return (prompt, None) if (prompt, None) in self._scripts else None

    def _scenario_for(self, prompt: str, model: str) -> Scenario:
        key = self._script_key(prompt, model)
        return self._default if key is None else self._scripts[key]

    def _take_submit_fault(self, prompt: object, model: object) -> Fault | None:
        """The next scripted submit fault for a create with this prompt and model, if any."""
        key = self._script_key(prompt, model)
        if key is None:
            return None
        faults = self._scripts[key].submit_faults
        seen = self._submit_counts.get(key, 0)
        if seen >= len(faults):
            return None
        self._submit_counts[key] = seen + 1
        return faults[seen]

    def _start_prediction(
        self,
        model: str,
        info: ModelInfo,
        model_input: Mapping[str, Any],
        prompt: str,
        now: float,
        *,
        source: Source,
        deadline: float | None = None,
        deployment: str | None = None,
        files: Mapping[str, FileDigest] | None = None,
        input_error: str | None = None,
        version: str | None = None,
    ) -> Prediction:
        """Create, store and count a new prediction at ``now``: ``files`` are the digests
        of its input files, ``input_error`` fails it (an input file it could not get),
        ``version`` is the version it reports if not ``info.version``."""
        assert self._wall_offset is not None  # set by the _now() that gave `now`
        scenario = self._scenario_for(prompt, model)
        if input_error is not None:
            scenario = dataclasses.replace(scenario, outcome="failed", error=input_error)
        pred = Prediction(
            id=self._new_id(),
            model=model,
            version=info.version if version is None else version,
            kind=info.kind,
            input=model_input,
            prompt=prompt,
            scenario=scenario,
            created=now,
            wall_created=self._wall_offset + now,
            chunks=generate_text(model, prompt) if info.kind == "text" else (),
            source=source,
            deadline=deadline,
            stream_key=_stream_key() if info.kind == "text" else "",
            deployment=deployment,
            files=dict(files or {}),
        )
        self._store.add(pred, now)
        self._creates += 1
        self._run_counts[model] += 1
        self._peak_in_flight = max(self._peak_in_flight, self._store.in_flight(now))
        self._wake_waiters()
        return pred

    def _new_id(self) -> str:
        while True:
            prediction_id = make_prediction_id(secrets.token_bytes(16))
            if self._store.peek(prediction_id) is None:
                return prediction_id

    def _model_info(self, model: str) -> ModelInfo:
        """What the emulator makes of ``owner/name``, with its own models and community
        models."""
        info = model_info(model)
        kind = self._models.get(model)
        if kind is not None:
            info = info._replace(kind=kind)
        return info._replace(official=False) if model in self._community else info

    def _catalogue(self) -> list[str]:
        """The models ``GET /v1/models`` lists, each once, in a stable order."""
        names = (
            *MODELS,
            *sorted(EXTRA_IMAGE_MODELS),
            *FILE_MODELS,
            *sorted(COMMUNITY_MODELS | self._community),
            *self._models,
        )
        return list(dict.fromkeys(names))

    def _remember_version(self, model: str, version: str) -> None:
        if version in self._known_versions or len(self._known_versions) < _MAX_KNOWN_VERSIONS:
            self._known_versions[version] = model

    def _record(
        self, scope: Scope, status_code: int, prediction_id: str | None, origin: Origin
    ) -> None:
        self._requests += 1
        if origin == "stream":
            self._stream_requests += 1
        if self._history.maxlen:
            headers = _MaskedHeaders()
            for raw_name, raw_value in scope.get("headers", ()):
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._history.append(
                RequestRecord(
                    time=self._now_or_last(),
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers=headers,
                    prediction_id=prediction_id,
                    status_code=status_code,
                    origin=origin,
                )
            )
        self._wake_waiters()

    def _record_delivery(self, delivery: WebhookDelivery) -> None:
        self._webhooks_sent += 1
        if not delivery.ok:
            self._webhooks_failed += 1
        self._deliveries.append(delivery)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    @staticmethod
    def _info(request: Request) -> _RequestInfo:
        info = request.scope.get(_INFO_KEY)
        return info if isinstance(info, _RequestInfo) else _RequestInfo()

    @staticmethod
    def _file_url_builder(request: Request) -> Callable[[str, str], str]:
        base = str(request.base_url).rstrip("/")
        return lambda prediction_id, name: f"{base}/_emulator/files/{prediction_id}/{name}"

    def _output_file(
        self, prediction_id: str, name: str
    ) -> tuple[Iterator[bytes], int, str] | None:
        """Output file ``name`` of a succeeded prediction: pieces, length, media type."""
        now = self._now()
        self._store.purge(now)
        pred = self._store.get(prediction_id, now)
        if pred is None or pred.status(now) != "succeeded":
            return None
        return file_content(pred, name)

    async def _file(self, request: Request) -> Response:
        """An output file, streamed a piece at a time with its ``Content-Length``."""
        prediction_id: str = request.path_params["prediction_id"]
        self._info(request).prediction_id = prediction_id
        found = self._output_file(prediction_id, request.path_params["name"])
        if found is None:
            return detail_response(404, "File not found")
        pieces, length, content_type = found
        return StreamingResponse(
            pieces,  # a plain iterator: Starlette reads it in a worker thread
            media_type=content_type,
            headers={"content-length": str(length)},
        )

    async def _stats(self, request: Request) -> Response:
        self._store.purge(self._now())
        return JSONResponse(asdict(self.stats()))

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Routing errors (404, 405): problem details under ``/v1``, plain text elsewhere."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if request.url.path == "/v1" or request.url.path.startswith("/v1/"):
            title = "Not found" if exc.status_code == 404 else "Method not allowed"
            detail = (
                f"No such API route: {request.url.path}"
                if exc.status_code == 404
                else f"{request.method} is not allowed on {request.url.path}"
            )
            return problem(exc.status_code, title, detail, headers=headers)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)
