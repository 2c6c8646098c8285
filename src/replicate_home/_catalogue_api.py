"""Finding models on the official API: collections (``api.collections``), search
(``api.search()``), the hardware list (``api.hardware``) and the token's account
(``api.account``). Read-only; named after the official 2.x client's groups."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ._api_records import (
    Account,
    Collection,
    Hardware,
    SearchResults,
    read_account,
    read_collection,
    read_hardware,
    read_search,
)
from ._api_resource import ApiResource, check_slug
from ._exceptions import UnexpectedResponseFormat
from ._paging import next_cursor, results_of
from ._service import RequestSpec

__all__ = ["MAX_SEARCH_LIMIT", "AccountAPI", "CollectionsAPI", "HardwareAPI", "SearchAPI"]

#: The most models one search answers (the API's bound).
MAX_SEARCH_LIMIT = 50


class CollectionsAPI(ApiResource):
    """``api.collections``: Replicate's curated collections of models."""

    def list(self) -> AsyncIterator[Collection]:
        """Every collection (without its models), page after page
        (``GET /v1/collections``). Stop iterating at any time."""

        def read(data: dict[str, Any], text: str) -> tuple[list[Collection], str | None]:
            page = [read_collection(item, text) for item in results_of(data, text)]
            return page, next_cursor(data.get("next"))

        def request(cursor: str | None) -> RequestSpec:
            query = None if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "collections", query=query)

        return self._listing(request, read)

    async def get(self, slug: str) -> Collection:
        """One collection with its models (``GET /v1/collections/{slug}``)."""
        spec = self._service.request("GET", "collections", check_slug(slug))
        return read_collection(*await self._send(spec))


class HardwareAPI(ApiResource):
    """``api.hardware``: what models and deployments can run on."""

    async def list(self) -> list[Hardware]:
        """Every hardware type (``GET /v1/hardware``), as the API orders them."""
        _, text = await self._send(self._service.request("GET", "hardware", text_body=True))
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            raise UnexpectedResponseFormat(text, "the hardware list is not JSON") from None
        return read_hardware(items, text)


class AccountAPI(ApiResource):
    """``api.account``: the account the API token belongs to."""

    async def get(self) -> Account:
        """The token's account (``GET /v1/account``)."""
        return read_account(*await self._send(self._service.request("GET", "account")))


class SearchAPI(ApiResource):
    """Search of models, collections and documentation pages (``GET /v1/search``)."""

    async def __call__(self, query: str, *, limit: int = 20) -> SearchResults:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("a search query must be a non-empty string")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_SEARCH_LIMIT
        ):
            raise ValueError(f"limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}")
        query = query.strip()
        spec = self._service.request("GET", "search", query={"query": query, "limit": str(limit)})
        data, text = await self._send(spec)
        return read_search(data, text, query)
