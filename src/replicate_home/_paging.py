"""Paged listings of the official API (``{"next": ..., "results": [...]}``), walked as
one async iterator.

The next page's URL is never taken from an answer as it is: only the ``cursor`` of its
``next`` is, put on the client's own URL, and a cursor seen before ends the walk (an
answer that sends one back would otherwise loop forever).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ._exceptions import UnexpectedResponseFormat
from ._service import RequestSpec

__all__ = ["MAX_CURSOR", "next_cursor", "pages", "results_of"]

T = TypeVar("T")

#: The longest cursor taken from an answer (real ones are under 100 characters).
MAX_CURSOR = 1024


def next_cursor(next_url: object) -> str | None:
    """The ``cursor`` of a listing's ``next`` URL, if it has exactly one."""
    if not isinstance(next_url, str) or not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    if not values or len(values) != 1 or len(values[0]) > MAX_CURSOR:
        return None
    return values[0]


def results_of(data: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The objects of a page's ``results`` (anything else in the list is skipped);
    :class:`UnexpectedResponseFormat` without a ``results`` list."""
    results = data.get("results")
    if not isinstance(results, list):
        raise UnexpectedResponseFormat(text, "a page without a results list")
    return [item for item in results if isinstance(item, dict)]


async def pages(
    send: Callable[[RequestSpec], Awaitable[tuple[dict[str, Any], str]]],
    request: Callable[[str | None], RequestSpec],
    read: Callable[[dict[str, Any], str], tuple[list[T], str | None]],
) -> AsyncGenerator[T, None]:
    """Every item of a listing, page after page: ``request(cursor)`` is a page's
    request (``None``: the first), ``read`` a page's items and the next cursor."""
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        page, cursor = read(*await send(request(cursor)))
        for item in page:
            yield item
        if cursor is None or cursor in seen:
            return
        seen.add(cursor)
