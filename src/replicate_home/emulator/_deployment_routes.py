"""The ``/v1/deployments`` routes: ``GET`` lists the deployments, ``POST`` creates one
(the token's account owns it), ``GET /v1/deployments/{owner}/{name}`` describes one,
``PATCH`` makes a new release of it (hardware, instances, version), ``DELETE`` removes
it (only offline and unused for 15 minutes, as the real API rules), and
``POST /v1/deployments/{owner}/{name}/predictions`` runs it."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import EMULATOR_ACCOUNT, JSON, NAME, ApiGate, invalid, model_name, not_found
from ._api_rules import deployment_object
from ._creates import PredictionCreator
from ._directory import hardware_skus
from ._registry import ModelRegistry
from ._responses import json_bytes, problem
from ._state import EmulatorState

__all__ = ["deployment_routes"]


def deployment_routes(
    state: EmulatorState, registry: ModelRegistry, gate: ApiGate, creator: PredictionCreator
) -> list[BaseRoute]:
    """The ``/v1/deployments`` routes over the deployments of ``registry`` (the time
    from ``state``)."""
    return _DeploymentRoutes(state, registry, gate, creator).routes


class _DeploymentRoutes:
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
            Route("/v1/deployments", self._deployments, methods=["GET", "POST"]),
            Route(
                "/v1/deployments/{owner}/{name}",
                self._deployment,
                methods=["GET", "PATCH", "DELETE"],
            ),
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
        deployment.last_used = self._state.now()
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
        configuration = _configuration(payload, required=True)
        if isinstance(configuration, Response):
            return configuration
        owner_model = str(fields["model"])
        if not NAME.fullmatch(str(fields["name"])) or "/" not in owner_model:
            return invalid("name must be a name and model must be 'owner/name'")
        name = f"{EMULATOR_ACCOUNT}/{fields['name']}"
        if name in self._registry.deployments:
            return problem(409, "Conflict", f"deployment {name} already exists")
        if self._registry.version_info(owner_model, str(fields["version"])) is None:
            return _not_a_version(str(fields["version"]), owner_model)
        deployment = self._registry.deploy(name, owner_model)
        deployment.version = str(fields["version"])
        deployment.configuration = configuration
        return Response(json_bytes(self._deployment_body(name)), media_type=JSON)

    async def _deployment(self, request: Request) -> Response:
        """``GET`` describes a deployment, ``PATCH`` changes its release, ``DELETE``
        removes it."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        name = model_name(request.path_params["owner"], request.path_params["name"])
        if name is None or name not in self._registry.deployments:
            return not_found("Deployment")
        if request.method == "PATCH":
            return await self._update(request, name)
        if request.method == "DELETE":
            return self._delete(name)
        return Response(json_bytes(self._deployment_body(name)), media_type=JSON)

    async def _update(self, request: Request, name: str) -> Response:
        """A new release with the fields given changed (none given: none made)."""
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return invalid("The request body must be a JSON object")
        deployment = self._registry.deployments[name]
        changes = _configuration(payload, required=False)
        if isinstance(changes, Response):
            return changes
        configuration = {**deployment.configuration, **changes}
        if configuration["min_instances"] > configuration["max_instances"]:
            return invalid("min_instances must not be more than max_instances")
        version = payload.get("version", deployment.version)
        if not isinstance(version, str):
            return invalid("version must be a string", field="version", kind="invalid_type")
        if self._registry.version_info(deployment.model, version) is None:
            return _not_a_version(version, deployment.model)
        if configuration != deployment.configuration or version != deployment.version:
            # Any change makes a new release, as the real API numbers them.
            deployment.configuration = configuration
            deployment.version = version
            deployment.release += 1
        return Response(json_bytes(self._deployment_body(name)), media_type=JSON)

    def _delete(self, name: str) -> Response:
        """The real rule: only a deployment that is offline (no instances kept running)
        and has been unused for 15 minutes can be deleted."""
        deployment = self._registry.deployments[name]
        if deployment.configuration["min_instances"] > 0:
            return problem(
                409,
                "Conflict",
                "A deployment can be deleted only when offline: set min_instances to 0 first",
            )
        now = self._state.now()
        if deployment.last_used is not None and now - deployment.last_used < UNUSED_BEFORE_DELETE:
            return problem(
                409,
                "Conflict",
                "A deployment can be deleted only after 15 minutes without predictions",
            )
        del self._registry.deployments[name]
        return Response(status_code=204)


#: Seconds a deployment must go without predictions before it can be deleted.
UNUSED_BEFORE_DELETE = 15 * 60.0
_BOUNDS = {"min_instances": 5, "max_instances": 20}


def _not_a_version(version: str, model: str) -> Response:
    return problem(
        422,
        "Invalid version or not permitted",
        f"version {version!r} is not a version of model {model}",
    )


def _configuration(payload: dict[str, Any], *, required: bool) -> dict[str, Any] | Response:
    """The ``hardware``, ``min_instances`` and ``max_instances`` of a create (all
    required) or an update (those given), or the 422 answer."""
    found: dict[str, Any] = {}
    if "hardware" in payload or required:
        hardware = payload.get("hardware")
        if hardware not in hardware_skus():
            skus = ", ".join(sorted(hardware_skus()))
            return invalid(f"hardware must be one of: {skus}", field="hardware")
        found["hardware"] = hardware
    for key, most in _BOUNDS.items():
        if key not in payload and not required:
            continue
        value = payload.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
            return invalid(f"{key} must be an integer from 0 to {most}", field=key)
        found[key] = value
    if required and found["min_instances"] > found["max_instances"]:
        return invalid("min_instances must not be more than max_instances")
    return found
