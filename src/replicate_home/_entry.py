"""Module-level shortcuts that own a client for the length of one call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from ._client import BaseClient
from ._fanout import FanOut
from ._prompt import Messages
from ._provider import ReplicateHome
from ._replicate_api import ReplicateAPI

__all__ = ["fan_out"]


@asynccontextmanager
async def fan_out(
    models: Sequence[str],
    messages: Messages | None = None,
    *,
    prompt: str | None = None,
    limit: int | None = None,
    timeout: float | None = None,
    fail_fast: bool = False,
    progress: bool = False,
    input: Mapping[str, Any] | None = None,
    service: Literal["home", "api"] = "home",
    base_url: str | None = None,
    api_token: str | None = None,
) -> AsyncIterator[FanOut]:
    """``client.fan_out(...)`` on a client of its own, closed when the block ends.

    ``service="home"`` runs on the homepage endpoint (:class:`ReplicateHome`),
    ``service="api"`` on the official API (:class:`ReplicateAPI`, with ``api_token``).

    ``async with replicate_home.fan_out(["gemma-2b", "sd-3"], prompt="…") as events:``
    """
    client: BaseClient
    if service == "home":
        if api_token is not None:
            raise ValueError("api_token is for service='api'")
        client = ReplicateHome(base_url)
    elif service == "api":
        client = ReplicateAPI(api_token, base_url=base_url)
    else:
        raise ValueError(f"service must be 'home' or 'api', not {service!r}")
    async with client:
        events = client.fan_out(
            models,
            messages,
            prompt=prompt,
            input=input,
            limit=limit,
            timeout=timeout,
            fail_fast=fail_fast,
            progress=progress,
        )
        async with events as stream:
            yield stream
