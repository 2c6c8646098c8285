"""The ``/v1/trainings`` routes (:mod:`._trainings`).

- ``POST /v1/models/{owner}/{name}/versions/{id}/trainings`` trains that version into a
  ``destination`` model of the token's account (404 if it has no such model, as the
  real API answers), 201 with the training ``starting``; it then goes ``processing``
  and ``succeeded`` (or as its prompt-less scenario says: ``emulator.script("",
  Scenario(...), model=BASE)``), and on success the destination has a new version;
- ``GET /v1/trainings`` lists them (newest first), ``GET /v1/trainings/{id}`` answers
  one, ``POST /v1/trainings/{id}/cancel`` cancels it (a canceled or failed training
  makes no version). Webhooks are sent as for predictions, with training objects.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._account_models import AccountVersion, trained_version_id
from ._api_common import (
    JSON,
    ApiGate,
    ApiSettings,
    invalid,
    model_name,
    not_found,
    prediction_object,
)
from ._creates import WEBHOOK_EVENTS, check_options
from ._recording import request_info
from ._registry import OWNER_NAME, ModelRegistry
from ._responses import json_bytes, problem
from ._simulation import Prediction
from ._state import EmulatorState
from ._trainings import TrainingTarget

__all__ = ["training_routes"]


def training_routes(
    state: EmulatorState, settings: ApiSettings, registry: ModelRegistry, gate: ApiGate
) -> list[BaseRoute]:
    """The trainings' routes: their models from ``registry``, their lifecycle in
    ``state``'s prediction store."""
    return _TrainingRoutes(state, settings, registry, gate).routes


def _destination_missing() -> Response:
    """The real API's answer (recorded by replicate-python) to a missing destination."""
    body = {"detail": "The specified training destination does not exist", "status": 404}
    return Response(json_bytes(body), 404, media_type="application/problem+json")


class _TrainingRoutes:
    def __init__(
        self,
        state: EmulatorState,
        settings: ApiSettings,
        registry: ModelRegistry,
        gate: ApiGate,
    ) -> None:
        self._state = state
        self._settings = settings
        self._registry = registry
        self._gate = gate

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/v1/models/{owner}/{name}/versions/{version_id}/trainings",
                self._create,
                methods=["POST"],
            ),
            Route("/v1/trainings", self._list, methods=["GET"]),
            Route("/v1/trainings/{training_id}", self._get, methods=["GET"]),
            Route("/v1/trainings/{training_id}/cancel", self._cancel, methods=["POST"]),
        ]

    def _object(
        self, request: Request, pred: Prediction, now: float, *, as_created: bool = False
    ) -> dict[str, Any]:
        return prediction_object(
            request, pred, now, self._state, self._settings, as_created=as_created
        )

    async def _create(self, request: Request) -> Response:
        gated = await self._gate.check_create(request)
        if gated is not None:
            return gated
        registry, state = self._registry, self._state
        model = model_name(request.path_params["owner"], request.path_params["name"])
        version_id = request.path_params["version_id"]
        info = None if model is None else registry.version_info(model, version_id)
        if model is None or info is None or not registry.exists(model):
            return not_found("Version")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return invalid("The request body must be a JSON object")
        destination = payload.get("destination")
        if not isinstance(destination, str) or not OWNER_NAME.fullmatch(destination):
            return invalid(
                "destination is required: the model to push to, as owner/name",
                field="destination",
            )
        if not isinstance(payload.get("input"), dict):
            return invalid("input is required: an object", field="input", kind="required")
        bad_options = check_options(payload)
        if bad_options is not None:
            return bad_options
        if destination not in registry.account:
            return _destination_missing()
        now = state.now()
        state.store.purge(now)
        pred = state.start_prediction(
            model, info, payload["input"], "", now, source="api", version=version_id
        )
        new_version = trained_version_id(destination, pred.id)
        pred.training = TrainingTarget(destination, new_version, version_id)
        registry.account.add_version(
            destination,
            AccountVersion(new_version, info.kind, version_id, _ready_at(pred)),
        )
        registry.remember_version(destination, new_version)
        request_info(request).prediction_id = pred.id
        webhook = payload.get("webhook")
        if isinstance(webhook, str) and state.sender is not None:
            events = payload.get("webhook_events_filter") or WEBHOOK_EVENTS
            state.sender.start(pred, webhook, list(events), str(request.base_url).rstrip("/"))
        obj = self._object(request, pred, now, as_created=True)
        # The create's URLs are the prediction's, as the real API answers them.
        base = str(request.base_url).rstrip("/")
        obj["urls"] = {
            "cancel": f"{base}/v1/predictions/{pred.id}/cancel",
            "get": f"{base}/v1/predictions/{pred.id}",
            "web": f"{base}/p/{pred.id}",
        }
        return Response(json_bytes(obj), 201, media_type=JSON)

    def _named(self, request: Request) -> tuple[Prediction, float] | Response:
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        state = self._state
        now = state.now()
        state.store.purge(now)
        training_id: str = request.path_params["training_id"]
        request_info(request).prediction_id = training_id
        pred = state.store.get(training_id, now)
        if pred is None or pred.training is None:
            return not_found("Training")
        return pred, now

    async def _get(self, request: Request) -> Response:
        named = self._named(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        return Response(json_bytes(self._object(request, pred, now)), media_type=JSON)

    async def _cancel(self, request: Request) -> Response:
        named = self._named(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        self._state.store.cancel(pred, now)  # a finished training stays as it is
        return Response(json_bytes(self._object(request, pred, now)), media_type=JSON)

    async def _list(self, request: Request) -> Response:
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        state = self._state
        now = state.now()
        state.store.purge(now)
        trainings = [p for p in state.store.newest_first() if p.training is not None]
        results = []
        for pred in trainings[: self._settings.page_size]:
            item = self._object(request, pred, now)
            del item["logs"]  # list items leave the logs out, as predictions' do
            results.append(item)
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=JSON)


def _ready_at(pred: Prediction) -> Any:
    """When the version a training makes exists: once it has succeeded (wall time)."""

    def ready_at(now: float) -> float | None:
        if pred.status(now) != "succeeded":
            return None
        return pred.wall_created + (pred.end_time - pred.created)

    return ready_at
