"""The ``/v1/deployments`` routes: ``GET`` lists the deployments, ``POST`` creates one
(the token's account owns it), ``GET /v1/deployments/{owner}/{name}`` describes one and
``POST /v1/deployments/{owner}/{name}/predictions`` runs it."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import EMULATOR_ACCOUNT, JSON, NAME, ApiGate, invalid, model_name, not_found
from ._api_rules import deployment_object
from ._catalogue import model_info
from ._creates import PredictionCreator
from ._registry import ModelRegistry
from ._responses import json_bytes, problem

__all__ = ["deployment_routes"]


def deployment_routes(
    registry: ModelRegistry, gate: ApiGate, creator: PredictionCreator
) -> list[BaseRoute]:
    """The ``/v1/deployments`` routes over the deployments of ``registry``."""
    return _DeploymentRoutes(registry, gate, creator).routes


class _DeploymentRoutes:
    def __init__(self, registry: ModelRegistry, gate: ApiGate, creator: PredictionCreator) -> None:
        self._registry = registry
        self._gate = gate
        self._creator = creator

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/deployments", self._deployments, methods=["GET", "POST"]),
            Route("/v1/deployments/{owner}/{name}", self._deployment, methods=["GET"]),
            Route(
                "/v1/deployments/{owner}/{name}/predictions",
                self._create_by_deployment,
                methods=["POST"],
            ),
        ]

    async def _create_by_deployment(self, request: Request) -> Response:
        gated = await self._gate.check_create(request)
        if gated is not None:
            return gated
        name = model_name(request.path_params["owner"], request.path_params["name"])
        deployment = self._registry.deployments.get(name or "")
        if deployment is None:
            return not_found("Deployment")
        return await self._creator.create(request, deployment.model, deployment=deployment.name)

    def _deployment_body(self, name: str) -> dict[str, Any]:
        d = self._registry.deployments[name]
        return deployment_object(d.name, d.model, d.version, d.release, d.configuration)

    async def _deployments(self, request: Request) -> Response:
        """``GET /v1/deployments`` lists them (one page); ``POST`` creates one."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        if request.method == "GET":
            results = [self._deployment_body(name) for name in reversed(self._registry.deployments)]
            body = {"next": None, "previous": None, "results": results}
            return Response(json_bytes(body), media_type=JSON)
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return invalid("The request body must be a JSON object")
        fields = {key: payload.get(key) for key in ("name", "model", "version", "hardware")}
        for key, value in fields.items():
            if not isinstance(value, str) or not value:
                return invalid(f"{key} is required: a string")
        counts = {key: payload.get(key) for key in ("min_instances", "max_instances")}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return invalid(f"{key} is required: a non-negative integer")
        owner_model = str(fields["model"])
        if not NAME.fullmatch(str(fields["name"])) or "/" not in owner_model:
            return invalid("name must be a name and model must be 'owner/name'")
        name = f"{EMULATOR_ACCOUNT}/{fields['name']}"
        if name in self._registry.deployments:
            return problem(409, "Conflict", f"deployment {name} already exists")
        if fields["version"] != model_info(owner_model).version:
            return problem(
                422,
                "Invalid version or not permitted",
                f"version {fields['version']!r} is not a version of model {owner_model}",
            )
        self._registry.deploy(name, owner_model).configuration = {
            "hardware": fields["hardware"],
            "min_instances": counts["min_instances"],
            "max_instances": counts["max_instances"],
        }
        return Response(json_bytes(self._deployment_body(name)), media_type=JSON)

    async def _deployment(self, request: Request) -> Response:
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        name = model_name(request.path_params["owner"], request.path_params["name"])
        if name is None or name not in self._registry.deployments:
            return not_found("Deployment")
        return Response(json_bytes(self._deployment_body(name)), media_type=JSON)
