"""The ``/v1/models`` routes: the catalogue and the account's models.

- ``GET /v1/models`` lists the public models (``sort_by``, ``sort_direction``);
  ``POST /v1/models`` creates a model of the token's account;
- ``GET``, ``PATCH`` and ``DELETE /v1/models/{owner}/{name}`` describe, update and delete
  a model (the account's own only, under the real API's rules: :mod:`._account_models`);
- ``.../versions`` and ``.../versions/{id}`` describe its versions, ``DELETE`` of a
  version deletes it (202); ``.../readme`` answers its README (Markdown),
  ``.../examples`` its example predictions;
- ``POST /v1/models/{owner}/{name}/predictions`` runs an official model by name.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ._account_models import ModelRuleError
from ._api_common import JSON, ApiGate, ApiSettings, model_name, not_found, prediction_object
from ._creates import PredictionCreator
from ._directory import model_readme
from ._examples import example_prediction
from ._registry import ModelRegistry
from ._responses import json_bytes, problem
from ._state import EmulatorState

__all__ = ["model_routes"]

_SORT_BY = ("latest_version_created_at", "model_created_at")
_SORT_DIRECTION = ("desc", "asc")


def model_routes(
    state: EmulatorState,
    settings: ApiSettings,
    registry: ModelRegistry,
    gate: ApiGate,
    creator: PredictionCreator,
) -> list[BaseRoute]:
    """The ``/v1/models`` routes over the models of ``registry`` (their run counts from
    ``state``)."""
    return _ModelRoutes(state, settings, registry, gate, creator).routes


def _resource_not_found() -> Response:
    """The real API's 404 for the model route of a community model (no title)."""
    body = {"detail": "The requested resource could not be found.", "status": 404}
    return Response(json_bytes(body), 404, media_type="application/problem+json")


def _refused(error: ModelRuleError) -> Response:
    titles = {403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Invalid request"}
    return problem(error.status, titles.get(error.status, "Invalid request"), error.detail)


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return problem(400, "Invalid JSON", "The request body must be a JSON object")
    if not isinstance(payload, dict):
        return problem(422, "Invalid request", "The request body must be a JSON object")
    return payload


class _ModelRoutes:
    def __init__(
        self,
        state: EmulatorState,
        settings: ApiSettings,
        registry: ModelRegistry,
        gate: ApiGate,
        creator: PredictionCreator,
    ) -> None:
        self._state = state
        self._settings = settings
        self._registry = registry
        self._gate = gate
        self._creator = creator

    @property
    def routes(self) -> list[BaseRoute]:
        prefix = "/v1/models/{owner}/{name}"
        return [
            Route("/v1/models", self._models, methods=["GET", "POST"]),
            Route(prefix, self._model, methods=["GET", "PATCH", "DELETE"]),
            Route(f"{prefix}/predictions", self._create_by_model, methods=["POST"]),
            Route(f"{prefix}/versions", self._versions, methods=["GET"]),
            Route(f"{prefix}/versions/{{version_id}}", self._version, methods=["GET", "DELETE"]),
            Route(f"{prefix}/readme", self._readme, methods=["GET"]),
            Route(f"{prefix}/examples", self._examples, methods=["GET"]),
        ]

    async def _create_by_model(self, request: Request) -> Response:
        model = model_name(request.path_params["owner"], request.path_params["name"])
        gated = await self._gate.check_create(request)
        if gated is not None:
            return gated
        if model is None or not self._registry.exists(model):
            return not_found("Model")
        if not self._registry.info(model).official:
            # What the real API answers: its model route serves official models only.
            return _resource_not_found()
        return await self._creator.create(request, model)

    def _named_model(self, request: Request) -> str | Response:
        """The model a ``/v1/models/{owner}/{name}...`` request names (after auth and the
        rate limit), or the error answer."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        model = model_name(request.path_params["owner"], request.path_params["name"])
        if model is None or not self._registry.exists(model):
            return not_found("Model")
        info = self._registry.info(model)
        if info.version:
            self._registry.remember_version(model, info.version)
        return model

    def _own_model(self, request: Request) -> str | Response:
        """:meth:`_named_model` for a change: the account's own models only."""
        model = self._named_model(request)
        if isinstance(model, str) and model not in self._registry.account:
            return problem(403, "Forbidden", f"You can only change models you own, not {model}")
        return model

    # ----------------------------------------------------------------- the collection

    async def _models(self, request: Request) -> Response:
        """``GET``: the public models (one page); ``POST``: a new model of the account."""
        if request.method == "POST":
            return await self._create(request)
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        sort_by = request.query_params.get("sort_by", _SORT_BY[0])
        direction = request.query_params.get("sort_direction", "desc")
        if sort_by not in _SORT_BY or direction not in _SORT_DIRECTION:
            return problem(
                400,
                "Invalid sort",
                f"sort_by must be one of {', '.join(_SORT_BY)} and sort_direction asc or desc",
            )
        registry, counts = self._registry, self._state.run_counts
        models = [registry.model_object(model, counts[model]) for model in registry.searchable()]
        # The catalogue's models share one creation time: a stable sort keeps their order.
        models.sort(key=_sort_time, reverse=direction == "desc")
        body = {"next": None, "previous": None, "results": models}
        return Response(json_bytes(body), media_type=JSON)

    async def _create(self, request: Request) -> Response:
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        payload = await _json_object(request)
        if isinstance(payload, Response):
            return payload
        try:
            created = self._registry.account.create(payload)
        except ModelRuleError as error:
            return _refused(error)
        obj = self._registry.model_object(created.full_name, 0)
        return Response(json_bytes(obj), 201, media_type=JSON)

    # ----------------------------------------------------------------- one model

    async def _model(self, request: Request) -> Response:
        if request.method == "GET":
            model = self._named_model(request)
            if isinstance(model, Response):
                return model
            obj = self._registry.model_object(model, self._state.run_counts[model])
            return Response(json_bytes(obj), media_type=JSON)
        model = self._own_model(request)
        if isinstance(model, Response):
            return model
        account = self._registry.account
        try:
            if request.method == "DELETE":
                account.delete(model, self._state.now())
                return Response(status_code=204)
            payload = await _json_object(request)
            if isinstance(payload, Response):
                return payload
            account.update(model, payload)
        except ModelRuleError as error:
            return _refused(error)
        obj = self._registry.model_object(model, self._state.run_counts[model])
        return Response(json_bytes(obj), media_type=JSON)

    async def _versions(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        results = self._registry.version_objects(model)
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=JSON)

    async def _version(self, request: Request) -> Response:
        version_id = request.path_params["version_id"]
        if request.method == "DELETE":
            return self._delete_version(request, version_id)
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        found = [v for v in self._registry.version_objects(model) if v["id"] == version_id]
        if not found:
            return not_found("Version")
        return Response(json_bytes(found[0]), media_type=JSON)

    def _delete_version(self, request: Request, version_id: str) -> Response:
        model = self._own_model(request)
        if isinstance(model, Response):
            return model
        registry = self._registry
        if any(d.version == version_id for d in registry.deployments.values()):
            return problem(409, "Conflict", "This version has a deployment and can't be deleted")
        try:
            registry.account.delete_version(model, version_id, self._state.now())
        except ModelRuleError as error:
            return _refused(error)
        # Accepted: the real API deletes versions in the background.
        return Response(status_code=202)

    async def _readme(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        registry = self._registry
        owned = registry.account.get(model)
        if owned is not None:
            readme = owned.fields.get("readme")
            if readme is None:
                return not_found("README")
        else:
            readme = model_readme(model, registry.description(model), registry.info(model).kind)
        return PlainTextResponse(readme, media_type="text/plain")

    async def _examples(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        results = []
        if model not in self._registry.account:
            now = self._state.now()
            example = example_prediction(model, self._registry.info(model), now)
            if example is not None:
                obj = prediction_object(request, example, now, self._state, self._settings)
                obj["urls"].pop("stream", None)  # long finished: no stream
                results.append(obj)
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=JSON)


def _sort_time(obj: dict[str, Any]) -> str:
    """The time a listed model sorts by: its latest version's (ISO in UTC sorts as time).
    The emulator's models were all made at one time, so both ``sort_by`` orders are this
    one; a model without a version sorts as the oldest."""
    latest = obj.get("latest_version") or {}
    return str(latest.get("created_at") or "")
