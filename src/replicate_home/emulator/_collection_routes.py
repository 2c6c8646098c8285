"""``GET /v1/collections`` and ``GET /v1/collections/{slug}``: the emulator's collections
(:mod:`._directory`), each holding the catalogue's models of the kinds it is about."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import JSON, ApiGate, not_found
from ._directory import COLLECTIONS, collection_members
from ._registry import ModelRegistry
from ._responses import json_bytes
from ._state import EmulatorState

__all__ = ["collection_routes"]

_BY_SLUG = {collection.slug: collection for collection in COLLECTIONS}


def collection_routes(
    state: EmulatorState, registry: ModelRegistry, gate: ApiGate
) -> list[BaseRoute]:
    """The collection routes over the models of ``registry`` (run counts from ``state``)."""

    async def collections(request: Request) -> Response:
        gated = gate.check(request)
        if gated is not None:
            return gated
        results = [collection.summary() for collection in COLLECTIONS]
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=JSON)

    async def collection(request: Request) -> Response:
        gated = gate.check(request)
        if gated is not None:
            return gated
        found = _BY_SLUG.get(request.path_params["slug"])
        if found is None:
            return not_found("Collection")
        catalogue = registry.catalogue()
        kinds = {model: registry.info(model).kind for model in catalogue}
        members = collection_members(found, kinds, catalogue)
        body = {
            **found.summary(),
            "full_description": found.full_description,
            "models": [registry.model_object(model, state.run_counts[model]) for model in members],
        }
        return Response(json_bytes(body), media_type=JSON)

    return [
        Route("/v1/collections", collections, methods=["GET"]),
        Route("/v1/collections/{slug}", collection, methods=["GET"]),
    ]
