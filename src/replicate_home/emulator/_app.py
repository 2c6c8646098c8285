"""The emulator's state and its ASGI application (Starlette).

The homepage routes are a thin HTTP layer over :mod:`._simulation`:

- ``POST /api/prediction`` creates a prediction;
- ``GET /api/poll?id=<id>`` answers its current state;
- ``GET /_emulator/files/{id}/{n}.png`` serves generated images;
- ``GET /_emulator/stats`` answers :class:`EmulatorStats` as JSON.
"""

from __future__ import annotations

import collections
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._png import gradient_png
from ._simulation import (
    MODELS,
    Fault,
    Prediction,
    PredictionStore,
    Scenario,
    generate_text,
    make_prediction_id,
    render,
)

__all__ = ["Emulator", "EmulatorStats", "RequestRecord"]

_INFO_KEY = "replicate_home.emulator.request"


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered."""

    time: float
    """Emulator-clock time the answer was decided."""
    method: str
    path: str
    query: str
    """The raw query string, without ``?``."""
    headers: Mapping[str, str] = field(hash=False)
    """Request headers with lower-cased names (repeated headers joined with ``", "``)."""
    prediction_id: str | None
    """For polls and file fetches the id the request names; for creates the id created
    (``None`` when faulted or rejected); otherwise ``None``."""
    status_code: int
    """The status code answered."""


@dataclass(frozen=True)
class EmulatorStats:
    """Counters of an emulator."""

    creates: int
    """Predictions created (``201`` answers)."""
    polls: int
    """Poll requests answered, whatever the answer."""
    requests: int
    """All requests answered."""
    in_flight: int
    """Predictions whose terminal time is still in the future."""
    peak_in_flight: int
    """The largest ``in_flight`` seen at a create (the new prediction included)."""


class _RequestInfo:
    """What the route handlers tell the recorder about one request."""

    __slots__ = ("prediction_id",)

    def __init__(self) -> None:
        self.prediction_id: str | None = None


def _detail(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)


def _fault_response(fault: Fault) -> Response:
    return Response(fault.body_bytes, status_code=fault.status, headers=fault.headers)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class _Recorder:
    """ASGI middleware recording every HTTP request as it is answered."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

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
                self.emulator._record(scope, int(message["status"]), info.prediction_id)
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if not recorded:  # the app crashed; Starlette answers 500 outside this middleware
                self.emulator._record(scope, 500, info.prediction_id)


class Emulator:
    """A faithful loopback emulator of the Replicate homepage service.

    Build one, optionally :meth:`script` prompts, then ``async with emulator.serve() as emu``
    and point a client at ``emu.base_url``. The same object exposes what happened:
    :meth:`stats`, :meth:`polls`, :attr:`requests` and :meth:`wait_for`.

    ``scenario`` is the behaviour of predictions whose prompt is not scripted.
    Finished predictions are forgotten ``expire_after`` seconds after completion, and at
    most ``max_predictions`` are kept. The last ``history`` requests are kept in
    :attr:`requests`. ``clock`` gives the emulator time in seconds; by default
    :func:`anyio.current_time`, read when requests are handled.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        expire_after: float = 600.0,
        max_predictions: int = 10_000,
        history: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if scenario is not None and not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a Scenario, got {type(scenario).__name__}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be a non-negative int, got {history!r}")
        self._default = scenario if scenario is not None else Scenario()
        self._store = PredictionStore(expire_after=expire_after, max_predictions=max_predictions)
        self._clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self._wall_offset: float | None = None
        self._last_now = 0.0
        self._scripts: dict[tuple[str, str | None], Scenario] = {}
        self._submit_counts: dict[tuple[str, str | None], int] = {}
        self._history: collections.deque[RequestRecord] = collections.deque(maxlen=history)
        self._creates = 0
        self._polls = 0
        self._requests = 0
        self._peak_in_flight = 0
        self._changed: anyio.Event | None = None
        self._base_url: str | None = None
        self._serving_now = False
        self._app = Starlette(
            routes=[
                Route("/api/prediction", self._create, methods=["POST"]),
                Route("/api/poll", self._poll, methods=["GET"]),
                Route("/_emulator/files/{prediction_id}/{index:int}.png", self._file),
                Route("/_emulator/stats", self._stats, methods=["GET"]),
            ],
            middleware=[Middleware(_Recorder, emulator=self)],
        )

    # ----------------------------------------------------------------- public API

    def script(self, prompt: str, scenario: Scenario, *, model: str | None = None) -> None:
        """Make predictions whose ``input.prompt`` equals ``prompt`` follow ``scenario``.

        With ``model`` ("owner/name") only that model's predictions do, so one prompt can
        behave differently per model (a fan-out sends the same prompt to every model); a
        model's own script wins over the prompt's. Scripting again replaces the scenario
        and restarts its submit faults.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        if not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a Scenario, got {type(scenario).__name__}")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"model must be a str or None, got {type(model).__name__}")
        self._scripts[prompt, model] = scenario
        self._submit_counts.pop((prompt, model), None)

    @property
    def app(self) -> Starlette:
        """The ASGI application (Starlette), to mount or serve yourself."""
        return self._app

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
        )

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

        The predicate is checked now, again after every request the emulator answers and
        when serving stops (not on the mere passing of time). Use it with a timeout, e.g.
        ``with anyio.fail_after(5): await emu.wait_for(lambda e: e.stats().creates == 3)``.
        """
        while not predicate(self):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def serve(
        self, host: str = "127.0.0.1", port: int = 0
    ) -> AbstractAsyncContextManager[Emulator]:
        """Serve the emulator over HTTP under the running async backend (asyncio or trio).

        ``async with Emulator().serve() as emu:`` binds ``host:port`` (port 0: any free
        port), sets ``emu.base_url`` and serves until the block exits, then shuts the
        server down promptly.
        """
        return self._serving(host, port)

    # ----------------------------------------------------------------- internals

    @asynccontextmanager
    async def _serving(self, host: str, port: int) -> AsyncIterator[Emulator]:
        from ._server import serving

        if self._serving_now:
            raise RuntimeError("this emulator is already serving")
        self._serving_now = True
        try:
            async with serving(self._app, host, port) as base_url:
                self._base_url = base_url
                yield self
        finally:
            self._base_url = None
            self._serving_now = False
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

    def _record(self, scope: Scope, status_code: int, prediction_id: str | None) -> None:
        self._requests += 1
        if self._history.maxlen:
            headers: dict[str, str] = {}
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
                )
            )
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
    def _image_url_builder(request: Request) -> Callable[[str, int], str]:
        base = str(request.base_url).rstrip("/")
        return lambda prediction_id, index: f"{base}/_emulator/files/{prediction_id}/{index}.png"

    async def _create(self, request: Request) -> Response:
        body = await request.body()
        now = self._now()
        self._store.purge(now)
        try:
            payload = json.loads(body)
        except ValueError:
            return _detail(400, "Request body must be a JSON object")
        if not isinstance(payload, dict):
            return _detail(400, "Request body must be a JSON object")

        model_input = payload.get("input")
        prompt = model_input.get("prompt") if isinstance(model_input, dict) else None
        key = self._script_key(prompt, payload.get("model"))
        if key is not None:
            faults = self._scripts[key].submit_faults
            seen = self._submit_counts.get(key, 0)
            if seen < len(faults):
                self._submit_counts[key] = seen + 1
                return _fault_response(faults[seen])

        model = payload.get("model")
        if not isinstance(model, str) or model not in MODELS:
            known = ", ".join(MODELS)
            return _detail(422, f"Field 'model' must be one of: {known}; got {model!r}")
        info = MODELS[model]
        version = payload.get("version")
        if version is None:
            return _detail(422, "Field 'version' is required")
        if version != info.version:
            return _detail(
                422, f"Field 'version' must be {info.version} for model {model}; got {version!r}"
            )
        if not isinstance(model_input, dict):
            return _detail(422, "Field 'input' must be a JSON object")
        if not isinstance(prompt, str) or not prompt:
            return _detail(422, "Field 'input.prompt' must be a non-empty string")

        scenario = self._scenario_for(prompt, model)
        assert self._wall_offset is not None
        pred = Prediction(
            id=self._new_id(),
            model=model,
            version=info.version,
            kind=info.kind,
            input=model_input,
            prompt=prompt,
            scenario=scenario,
            created=now,
            wall_created=self._wall_offset + now,
            chunks=generate_text(model, prompt) if info.kind == "text" else (),
        )
        self._store.add(pred, now)
        self._creates += 1
        self._peak_in_flight = max(self._peak_in_flight, self._store.in_flight(now))
        self._info(request).prediction_id = pred.id
        obj = render(pred, now, image_url=self._image_url_builder(request), as_created=True)
        return Response(_json_bytes(obj), status_code=201, media_type="application/json")

    def _new_id(self) -> str:
        while True:
            prediction_id = make_prediction_id(secrets.token_bytes(16))
            if self._store.peek(prediction_id) is None:
                return prediction_id

    async def _poll(self, request: Request) -> Response:
        now = self._now()
        self._store.purge(now)
        self._polls += 1
        prediction_id = request.query_params.get("id")
        if not prediction_id:
            return _detail(400, "Query parameter 'id' is required")
        self._info(request).prediction_id = prediction_id
        pred = self._store.get(prediction_id, now)
        if pred is None:
            return _detail(404, "Prediction not found")
        poll_number = pred.polls
        pred.polls += 1
        fault = pred.scenario.poll_fault(poll_number)
        if fault is not None:
            return _fault_response(fault)
        obj = render(pred, now, image_url=self._image_url_builder(request))
        headers = (
            {}
            if pred.scenario.content_type is None
            else {"content-type": pred.scenario.content_type}
        )
        return Response(_json_bytes(obj), status_code=200, headers=headers)

    async def _file(self, request: Request) -> Response:
        now = self._now()
        self._store.purge(now)
        prediction_id: str = request.path_params["prediction_id"]
        index: int = request.path_params["index"]
        self._info(request).prediction_id = prediction_id
        pred = self._store.get(prediction_id, now)
        if (
            pred is None
            or pred.kind != "image"
            or pred.status(now) != "succeeded"
            or not 0 <= index < pred.scenario.images
        ):
            return _detail(404, "File not found")
        return Response(gradient_png(pred.prompt, index), media_type="image/png")

    async def _stats(self, request: Request) -> Response:
        self._store.purge(self._now())
        return JSONResponse(asdict(self.stats()))
