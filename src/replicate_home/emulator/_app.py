"""The emulator: :class:`Emulator`, its public face, which builds the state the routes
share (:mod:`._state`), the route modules over it and the two ASGI applications (the main
origin and the stream origin), and serves them (:mod:`._server`).

Two thin HTTP layers share one simulation (:mod:`._simulation`) and one set of
predictions:

- the homepage routes (:mod:`._home_routes`): ``POST /api/prediction``, ``GET /api/poll``;
- Replicate's HTTP API under ``/v1``, one route module per group of operations
  (:mod:`._prediction_routes`, :mod:`._model_routes`, :mod:`._deployment_routes`,
  :mod:`._files_routes`, :mod:`._account_routes`; :mod:`._stream_routes` on the stream
  origin).

Besides, :mod:`._emulator_routes` serves generated output files and the stats.
A new group of ``/v1`` operations is a route module of its own: a function that takes
the pieces of state it needs and returns its routes, listed in :meth:`Emulator.__init__`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware

from ._account_routes import account_routes
from ._api_common import ApiGate, ApiSettings
from ._api_rules import TokenBucket
from ._collection_routes import collection_routes
from ._creates import PredictionCreator
from ._deployment_routes import deployment_routes
from ._emulator_routes import emulator_routes
from ._file_store import FileStore
from ._files_routes import files_routes
from ._hardware_routes import hardware_routes
from ._home_routes import home_routes
from ._model_routes import model_routes
from ._prediction_routes import prediction_routes
from ._recording import EmulatorStats, Recorder, RequestRecord
from ._registry import ModelRegistry
from ._responses import routing_error
from ._scenarios import FileOutput, Scenario
from ._schemas import ModelKind
from ._search_routes import search_routes
from ._state import EmulatorState
from ._store import PredictionStore
from ._stream_routes import stream_routes
from ._tls import LocalAuthority
from ._training_routes import training_routes
from ._webhooks import DEFAULT_RETRY_DELAYS, WebhookDelivery, WebhookSender, new_secret

__all__ = ["Emulator"]


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
    outputs are given where a scenario does not say: ``"data"`` (the default without
    TLS), ``data:image/png;base64,...`` URIs, which the official clients wrap as file
    objects as they wrap the real service's ``https`` URLs; ``"url"`` (the default with
    TLS), URLs of files the emulator serves (``http`` ones the official clients leave as
    strings). ``tls=True`` serves every origin over https with a certificate of a local
    authority made for the purpose (:attr:`ca_bundle`, :meth:`ssl_context`), so output
    URLs are ``https`` as the real service's are. ``deployments`` maps
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
        file_output: FileOutput | None = None,
        community_models: Iterable[str] = (),
        models: Mapping[str, ModelKind] | None = None,
        deployments: Mapping[str, str] | None = None,
        webhook_secret: str | None = None,
        webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        tls: bool = False,
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
        default = scenario if scenario is not None else Scenario()
        store = PredictionStore(expire_after=expire_after, max_predictions=max_predictions)
        page_size = _positive_int("page_size", page_size)
        if not isinstance(tls, bool):
            raise ValueError(f"tls must be a bool, got {tls!r}")
        self._tls = tls
        self._authority: LocalAuthority | None = None
        if file_output is None:
            # With TLS, as the real service: https URLs, which every client's own file
            # handling takes; without, data: URIs (the official clients take only those
            # and https URLs as files).
            file_output = "url" if tls else "data"
        if file_output not in ("data", "url"):
            raise ValueError(f"file_output must be 'data' or 'url', got {file_output!r}")
        if webhook_secret is not None and (
            not isinstance(webhook_secret, str) or not webhook_secret.startswith("whsec_")
        ):
            raise ValueError("webhook_secret must be a string that starts with 'whsec_'")
        self._state = state = EmulatorState(default, store, clock, history)
        self._registry = ModelRegistry(community_models, models or {}, state.now_or_last)
        delays = tuple(webhook_retry_delays)
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in delays):
            raise ValueError("webhook_retry_delays must be non-negative numbers of seconds")
        self._webhook_retry_delays = delays
        for name, model in (deployments or {}).items():
            self.deploy(name, model)
        settings = ApiSettings(
            token=token,
            rate_limits=buckets,
            page_size=page_size,
            file_output=file_output,
            webhook_secret=webhook_secret if webhook_secret is not None else new_secret(),
        )
        self._settings = settings
        self._base_url: str | None = None
        self._serving_now = False
        #: Files uploaded through ``/v1/files``.
        self.files = FileStore()
        gate = ApiGate(settings, state)
        creator = PredictionCreator(state, self._registry, self.files, settings)
        self._app = Starlette(
            routes=[
                *home_routes(state),
                *prediction_routes(state, settings, gate, creator),
                *account_routes(gate, settings.webhook_secret),
                *model_routes(state, settings, self._registry, gate, creator),
                *search_routes(state, self._registry, gate),
                *collection_routes(state, self._registry, gate),
                *hardware_routes(gate),
                *training_routes(state, settings, self._registry, gate),
                *deployment_routes(state, self._registry, gate, creator),
                *files_routes(gate, self.files),
                *emulator_routes(state, self.stats),
            ],
            middleware=[Middleware(Recorder, record=state.record_request)],
            exception_handlers={404: routing_error, 405: routing_error},
        )
        # The output streams live on an origin of their own, as the real service's do.
        self._stream_app = Starlette(
            routes=stream_routes(state),
            middleware=[Middleware(Recorder, record=state.record_request, origin="stream")],
            exception_handlers={404: routing_error, 405: routing_error},
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
        self._state.script(prompt, scenario, model)

    def deploy(self, name: str, model: str) -> None:
        """Serve a deployment ``owner/name`` that runs ``model`` (``owner/name``) at the
        emulator's version of it: ``POST /v1/deployments/{owner}/{name}/predictions``
        creates its predictions, ``GET /v1/deployments[/{owner}/{name}]`` describes it.
        Deployments can also be created over HTTP (``POST /v1/deployments``)."""
        self._registry.deploy(name, model)

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
        if self._state.stream_url is None:
            raise RuntimeError(
                "the emulator is not serving: use `async with emulator.serve() as emu:` "
                "and read `emu.stream_url` inside that block"
            )
        return self._state.stream_url

    @property
    def ca_bundle(self) -> Path:
        """With ``tls=True``, while serving: the PEM file of the certificate authority
        that signed the emulator's certificate, to trust (``SSL_CERT_FILE`` for httpx and
        the official Python client, ``NODE_EXTRA_CA_CERTS`` for Node.js). It is made
        when serving starts and removed when it stops."""
        if self._authority is None:
            raise RuntimeError(
                "no CA bundle: the emulator serves https only with Emulator(tls=True), "
                "inside `async with emulator.serve()`"
            )
        return self._authority.ca_bundle

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts the emulator (``tls=True``, while serving):
        ``httpx.AsyncClient(verify=emu.ssl_context())``."""
        if self._authority is None:
            raise RuntimeError("the emulator serves https only with Emulator(tls=True)")
        return self._authority.ssl_context()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server (``https://`` with ``tls``)."""
        if self._base_url is None:
            raise RuntimeError(
                "the emulator is not serving: use `async with emulator.serve() as emu:` "
                "and read `emu.base_url` inside that block"
            )
        return self._base_url

    def stats(self) -> EmulatorStats:
        """The counters so far (``in_flight`` as of now)."""
        state = self._state
        return EmulatorStats(
            creates=state.creates,
            polls=state.polls,
            requests=state.requests,
            in_flight=state.store.in_flight(state.now_or_last()),
            peak_in_flight=state.peak_in_flight,
            cancels=state.cancels,
            stream_connections=state.stream_connections,
            open_streams=state.open_streams,
            throttled=state.throttled,
            stream_requests=state.stream_requests,
            webhooks_sent=state.webhooks_sent,
            webhooks_failed=state.webhooks_failed,
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
        return self._settings.webhook_secret

    @property
    def webhook_deliveries(self) -> Sequence[WebhookDelivery]:
        """Every webhook delivery attempt (the last ``history``), oldest first: event,
        URL, signing headers, body, and the receiver's answer."""
        return tuple(self._state.deliveries)

    def polls(self, prediction_id: str) -> int:
        """How many polls the prediction got (0 for unknown or forgotten ids)."""
        pred = self._state.store.peek(prediction_id)
        return 0 if pred is None else pred.polls

    @property
    def requests(self) -> Sequence[RequestRecord]:
        """The last ``history`` requests, oldest first (a snapshot)."""
        return tuple(self._state.history)

    async def wait_for(self, predicate: Callable[[Emulator], bool]) -> None:
        """Return as soon as ``predicate(self)`` is true.

        The predicate is checked now, again after every request the emulator answers, every
        prediction it creates, every output stream that closes, and when serving stops (not
        on the mere passing of time). Use it with a timeout, e.g.
        ``with anyio.fail_after(5): await emu.wait_for(lambda e: e.stats().creates == 3)``.
        """
        await self._state.wait_until(lambda: predicate(self))

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
        state = self._state
        state.stopping = False
        if self._tls:
            self._authority = LocalAuthority((host,))
        authority = self._authority
        try:
            async with (
                serving(self._app, host, port, tls=authority) as base_url,
                serving(self._stream_app, host, stream_port, tls=authority) as stream_url,
                httpx.AsyncClient(trust_env=False) as http,
            ):
                self._base_url, state.stream_url = base_url, stream_url
                body_error: BaseException | None = None
                async with anyio.create_task_group() as deliveries:
                    state.sender = WebhookSender(
                        state,
                        self._settings.webhook_secret,
                        deliveries,
                        http,
                        self._webhook_retry_delays,
                    )
                    try:
                        yield self
                    except BaseException as error:  # re-raised below, not wrapped in a group
                        body_error = error
                    finally:
                        # Before the server shuts down: streams and held answers end now,
                        # and deliveries still pending are dropped.
                        state.sender = None
                        state.stopping = True
                        state.wake_waiters()
                        deliveries.cancel_scope.cancel()
                if body_error is not None:
                    raise body_error
        finally:
            self._base_url = state.stream_url = None
            if authority is not None:
                authority.close()
            self._authority = None
            self._serving_now = False
            state.stopping = True
            state.wake_waiters()  # waiters re-check; no event outlives this event loop
