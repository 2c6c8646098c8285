"""The ``/v1/models`` routes: ``GET /v1/models`` lists the emulator's catalogue,
``GET /v1/models/{owner}/{name}``, ``.../versions`` and ``.../versions/{id}`` describe a
model, ``POST /v1/models/{owner}/{name}/predictions`` runs an official model by name."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import JSON, ApiGate, model_name, not_found
from ._api_rules import model_object, version_object
from ._catalogue import model_info
from ._creates import PredictionCreator
from ._registry import ModelRegistry
from ._responses import json_bytes
from ._state import EmulatorState

__all__ = ["model_routes"]


def model_routes(
    state: EmulatorState, registry: ModelRegistry, gate: ApiGate, creator: PredictionCreator
) -> list[BaseRoute]:
    """The ``/v1/models`` routes over the models of ``registry`` (their run counts from
    ``state``)."""
    return _ModelRoutes(state, registry, gate, creator).routes


def _resourcenot_found() -> Response:
    """The real API's 404 for the model route of a community model (no title)."""
    body = {"detail": "The requested resource could not be found.", "status": 404}
    return Response(json_bytes(body), 404, media_type="application/problem+json")


class _ModelRoutes:
    def __init__(
        self,
        state: EmulatorState,
        registry: ModelRegistry,
        gate: ApiGate,
        creator: PredictionCreator,
    ) -> None:
        self._state = state
        self._registry = registry
        self._gate = gate
        self._creator = creator

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/models/{owner}/{name}", self._model, methods=["GET"]),
            Route("/v1/models/{owner}/{name}/predictions", self._create_by_model, methods=["POST"]),
            Route("/v1/models/{owner}/{name}/versions", self._versions, methods=["GET"]),
            Route(
                "/v1/models/{owner}/{name}/versions/{version_id}", self._version, methods=["GET"]
            ),
        ]

    async def _create_by_model(self, request: Request) -> Response:
        model = model_name(request.path_params["owner"], request.path_params["name"])
        gated = await self._gate.check_create(request)
        if gated is not None:
            return gated
        if model is None:
            return not_found("Model")
        if not self._registry.info(model).official:
            # What the real API answers: its model route serves official models only.
            return _resourcenot_found()
        return await self._creator.create(request, model)

    def _named_model(self, request: Request) -> str | Response:
        """The model a ``/v1/models/{owner}/{name}...`` request names (after auth and the
        rate limit), or the error answer."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        model = model_name(request.path_params["owner"], request.path_params["name"])
        if model is None:
            return not_found("Model")
        self._registry.remember_version(model, model_info(model).version)
        return model

    async def _models(self, request: Request) -> Response:
        """``GET /v1/models``: the emulator's catalogue (one page): the homepage models, the
        image and file models, the community models and the emulator's own ``models``."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        results = [
            model_object(model, self._registry.info(model), self._state.run_counts[model])
            for model in self._registry.catalogue()
        ]
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=JSON)

    async def _model(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        obj = model_object(model, self._registry.info(model), self._state.run_counts[model])
        return Response(json_bytes(obj), media_type=JSON)

    async def _versions(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        body = {
            "next": None,
            "previous": None,
            "results": [version_object(self._registry.info(model))],
        }
        return Response(json_bytes(body), media_type=JSON)

    async def _version(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        info = self._registry.info(model)
        if request.path_params["version_id"] != info.version:
            return not_found("Version")
        return Response(json_bytes(version_object(info)), media_type=JSON)
