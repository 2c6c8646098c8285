"""What the official API's resource groups (``api.models``, ``api.trainings``,
``api.collections`` ...) share: sending through the client's engine (its deadline,
rate budget, request gate and retries, its typed errors), paged listings, and the
checks of the names that become parts of a URL path, made before any request.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ._api import ApiService
from ._api_args import BARE_VERSION
from ._engine import Engine
from ._paging import pages
from ._service import RequestSpec

__all__ = ["ApiResource", "check_name", "check_slug", "check_version_id", "owner_and_name"]

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class ApiResource:
    """One group of the API's operations on a client: ``engine()`` is the client's
    engine (``ClientNotOpenError`` outside ``async with``), ``service`` builds the
    requests."""

    def __init__(self, engine: Callable[[], Engine], service: ApiService) -> None:
        self._engine = engine
        self._service = service

    async def _send(self, spec: RequestSpec) -> tuple[dict[str, Any], str]:
        """One request with the client's deadline, budget, retries and typed errors."""
        return await self._engine().send(spec)

    def _listing(
        self,
        request: Callable[[str | None], RequestSpec],
        read: Callable[[dict[str, Any], str], tuple[list[T], str | None]],
    ) -> AsyncIterator[T]:
        """A paged listing as one async iterator (the client must be open now)."""
        return pages(self._engine().send, request, read)


def check_name(value: object, what: str) -> str:
    """An owner's or a model's or a deployment's name, checked before it becomes a
    path segment (``ValueError`` otherwise)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"not a valid {what}: {value!r}")
    return value


def owner_and_name(value: object, what: str = "model") -> tuple[str, str]:
    """``owner/name`` (a string, or anything with a ``full_name`` or deployment
    ``name`` of that form) as its two checked parts."""
    text = getattr(value, "full_name", None) or getattr(value, "name", None)
    if isinstance(value, str):
        text = value
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"a {what} is named 'owner/name', not {value!r}")
    owner, name = text.split("/")
    return check_name(owner, f"{what} owner"), check_name(name, f"{what} name")


def check_slug(value: object) -> str:
    """A collection's slug (``text-to-image``)."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValueError(f"not a collection slug: {value!r}")
    return value


def check_version_id(value: object) -> str:
    """A version id (64 hex digits), or a :class:`ModelVersion`'s."""
    version = getattr(value, "id", value)
    if not isinstance(version, str) or not BARE_VERSION.fullmatch(version):
        raise ValueError(f"not a version id (64 hex digits): {value!r}")
    return version
