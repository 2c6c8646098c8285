"""Search (:mod:`._search`): ``GET /v1/search`` (models, collections and documentation
pages; the described operation) and ``QUERY /v1/models`` (a page of models: what the
official clients' ``models.search`` sends, with the query as a ``text/plain`` body)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import JSON, ApiGate
from ._directory import COLLECTIONS, PAGES, collection_members, model_tags
from ._registry import ModelRegistry
from ._responses import json_bytes, problem
from ._search import MAX_QUERY_LENGTH, rank, score, words
from ._state import EmulatorState

__all__ = ["search_routes"]

#: ``limit``'s default and bounds (``GET /v1/search``).
DEFAULT_LIMIT = 20
MAX_LIMIT = 50
#: How much a match in each field of a model counts.
_NAME, _OWNER, _DESCRIPTION, _TAG = 3.0, 2.0, 1.0, 1.0


def _bad_request(detail: str) -> Response:
    """The search's 400, as its description shows it: ``{"detail": ...}`` in JSON."""
    return Response(json_bytes({"detail": detail}), 400, media_type=JSON)


class _Search:
    def __init__(self, state: EmulatorState, registry: ModelRegistry, gate: ApiGate) -> None:
        self._state = state
        self._registry = registry
        self._gate = gate

    def _models(self, query: list[str], limit: int | None) -> list[tuple[str, float]]:
        registry = self._registry
        scored = []
        for model in registry.searchable():
            owner, name = model.split("/", 1)
            fields = [
                (name, _NAME),
                (owner, _OWNER),
                (registry.description(model), _DESCRIPTION),
                (" ".join(model_tags(registry.info(model).kind)), _TAG),
            ]
            scored.append((model, score(query, fields)))
        return rank(scored, limit)

    async def search(self, request: Request) -> Response:
        """``GET /v1/search?query=...&limit=n``."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        raw = request.query_params.get("query")
        if raw is None:
            return _bad_request('Query parameter "query" is required')
        if len(raw) > MAX_QUERY_LENGTH:
            return _bad_request(f'Query parameter "query" is longer than {MAX_QUERY_LENGTH}')
        text = request.query_params.get("limit", str(DEFAULT_LIMIT))
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            return _bad_request(f'Query parameter "limit" must be an integer from 1 to {MAX_LIMIT}')
        query = words(raw)
        registry = self._registry
        models: list[dict[str, Any]] = []
        for model, value in self._models(query, int(text)):
            kind = registry.info(model).kind
            models.append(
                {
                    "model": registry.model_object(model, self._state.run_counts[model]),
                    "metadata": {
                        "generated_description": registry.description(model),
                        "tags": model_tags(kind),
                        "score": value,
                    },
                }
            )
        catalogue = registry.catalogue()
        kinds = {model: registry.info(model).kind for model in catalogue}
        found = rank(
            (c, score(query, [(c.name, 2.0), (c.slug, 2.0), (c.description, 1.0)]))
            for c in COLLECTIONS
        )
        collections = [
            {**c.summary(), "models": collection_members(c, kinds, catalogue)} for c, _ in found
        ]
        pages = rank((p, score(query, [(p.name, 2.0), (p.about, 1.0)])) for p in PAGES)
        body = {
            "query": raw,
            "models": models,
            "collections": collections,
            "pages": [page.item() for page, _ in pages],
        }
        return Response(json_bytes(body), media_type=JSON)

    async def search_models(self, request: Request) -> Response:
        """``QUERY /v1/models`` with the query as the body: a page of models."""
        gated = self._gate.check(request)
        if gated is not None:
            return gated
        body = await request.body()
        try:
            raw = body.decode()
        except UnicodeDecodeError:
            return problem(400, "Bad Request", "The search query must be UTF-8 text")
        if not raw.strip() or len(raw) > MAX_QUERY_LENGTH:
            return problem(
                400,
                "Bad Request",
                f"The body must be a search query of 1 to {MAX_QUERY_LENGTH} characters",
            )
        counts = self._state.run_counts
        results = [
            self._registry.model_object(model, counts[model])
            for model, _ in self._models(words(raw), None)
        ]
        page = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(page), media_type=JSON)


def search_routes(state: EmulatorState, registry: ModelRegistry, gate: ApiGate) -> list[BaseRoute]:
    """The search routes over the models of ``registry``. ``QUERY /v1/models`` is a route
    of its own: Starlette keeps looking past ``GET /v1/models`` for the route whose method
    matches."""
    search = _Search(state, registry, gate)
    return [
        Route("/v1/search", search.search, methods=["GET"]),
        Route("/v1/models", search.search_models, methods=["QUERY"]),
    ]
