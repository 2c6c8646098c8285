"""The ``/v1/predictions`` routes: ``GET`` lists (newest first, paginated, within
``created_after``/``created_before``) and ``POST`` creates by version;
``GET /v1/predictions/{id}`` answers one, ``POST /v1/predictions/{id}/cancel`` cancels it."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import (
    JSON,
    ApiGate,
    ApiSettings,
    encode_prediction,
    not_found,
    prediction_object,
)
from ._api_rules import decode_cursor, encode_cursor, parse_timestamp
from ._creates import PredictionCreator
from ._recording import request_info
from ._responses import fault_response, json_bytes, problem
from ._simulation import Prediction
from ._state import EmulatorState

__all__ = ["prediction_routes"]


def prediction_routes(
    state: EmulatorState, settings: ApiSettings, gate: ApiGate, creator: PredictionCreator
) -> list[BaseRoute]:
    """The ``/v1/predictions`` routes over the predictions of ``state``."""
    return _PredictionRoutes(state, settings, gate, creator).routes


def _created(pred: Prediction) -> datetime:
    """When ``pred`` was created, to the microsecond its ``created_at`` shows."""
    return datetime.fromtimestamp(pred.wall_created, tz=timezone.utc)


def _created_window(request: Request) -> tuple[datetime | None, datetime | None] | Response:
    """``created_after`` and ``created_before`` of a listing, or the 400 answer."""
    bounds: list[datetime | None] = []
    for name in ("created_after", "created_before"):
        raw = request.query_params.get(name)
        if raw is None:
            bounds.append(None)
            continue
        moment = parse_timestamp(raw)
        if moment is None:
            return problem(400, "Invalid date-time", f"{name} must be an ISO 8601 date-time")
        bounds.append(moment)
    return bounds[0], bounds[1]


class _PredictionRoutes:
    def __init__(
        self,
        state: EmulatorState,
        settings: ApiSettings,
        gate: ApiGate,
        creator: PredictionCreator,
    ) -> None:
        self._state = state
        self._settings = settings
        self._gate = gate
        self._creator = creator

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/predictions", self._predictions, methods=["GET", "POST"]),
            Route("/v1/predictions/{prediction_id}", self._get, methods=["GET"]),
            Route("/v1/predictions/{prediction_id}/cancel", self._cancel, methods=["POST"]),
        ]

    def _named_prediction(self, request: Request) -> tuple[Prediction, float] | Response:
        """The prediction a ``/v1/predictions/{id}...`` request names and the time now
        (after auth and the rate limit), or the error answer."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        emu = self._state
        now = emu.now()
        emu.store.purge(now)
        prediction_id: str = request.path_params["prediction_id"]
        request_info(request).prediction_id = prediction_id
        pred = emu.store.get(prediction_id, now)
        return not_found("Prediction") if pred is None else (pred, now)

    async def _predictions(self, request: Request) -> Response:
        """``/v1/predictions``: one route, so that a 405 lists both methods in ``Allow``."""
        if request.method == "POST":
            gated = await self._gate.check_create(request)
            if gated is not None:
                return gated
            return await self._creator.create(request, None)
        return await self._list(request)

    async def _get(self, request: Request) -> Response:
        self._state.polls += 1
        named = self._named_prediction(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        poll_number = pred.polls
        pred.polls += 1
        fault = pred.scenario.poll_fault(poll_number)
        if fault is not None:
            return fault_response(fault)
        content_type = pred.scenario.content_type
        headers = {} if content_type is None else {"content-type": content_type}
        obj = prediction_object(request, pred, now, self._state, self._settings)
        return Response(encode_prediction(pred, obj), headers=headers)

    async def _cancel(self, request: Request) -> Response:
        self._state.cancels += 1
        named = self._named_prediction(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        self._state.store.cancel(pred, now)  # a terminal prediction stays as it is
        obj = prediction_object(request, pred, now, self._state, self._settings)
        return Response(encode_prediction(pred, obj), media_type=JSON)

    async def _list(self, request: Request) -> Response:
        emu = self._state
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        now = emu.now()
        emu.store.purge(now)
        window = _created_window(request)
        if isinstance(window, Response):
            return window
        after, before = window
        source = request.query_params.get("source")
        if source is not None and source != "web":
            return problem(400, "Invalid source", "source can only be 'web'")
        older_than = newer_than = None
        cursor = request.query_params.get("cursor")
        if cursor is not None:
            try:
                direction, number = decode_cursor(cursor)
            except ValueError:
                return problem(400, "Invalid cursor", f"Cursor {cursor!r} is not valid")
            if direction == "n":
                older_than = number
            else:
                newer_than = number

        def keep(pred: Prediction) -> bool:
            # Trainings are predictions too, but GET /v1/trainings lists them. The
            # window's start is the store's to check (before_window, below).
            if pred.training is not None or (source is not None and pred.source != "web"):
                return False
            return before is None or _created(pred) < before

        page, older, newer = emu.store.page(
            self._settings.page_size,
            keep,
            older_than=older_than,
            newer_than=newer_than,
            before_window=None if after is None else (lambda pred: _created(pred) < after),
        )
        kept = {
            name: request.query_params[name]
            for name in ("created_after", "created_before", "source")
            if name in request.query_params
        }
        base = str(request.url.replace(query="")).rstrip("/")
        extra = "".join(f"&{urlencode({name: value})}" for name, value in kept.items())
        following = previous = None
        if older:
            following = f"{base}?cursor={encode_cursor('n', page[-1].number)}{extra}"
        if newer:
            previous = f"{base}?cursor={encode_cursor('p', page[0].number)}{extra}"
        results = []
        for pred in page:
            item = prediction_object(request, pred, now, self._state, self._settings)
            del item["logs"]  # list items leave the logs out, as the real API does
            results.append(item)
        body = {"next": following, "previous": previous, "results": results}
        return Response(json_bytes(body), media_type=JSON)
