"""Module-level shortcuts that own a client for the length of one call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ._fanout import FanOut
from ._prompt import Messages
from ._provider import ReplicateHome

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
    base_url: str | None = None,
) -> AsyncIterator[FanOut]:
    """:meth:`ReplicateHome.fan_out` on a client of its own, closed when the block ends.

    ``async with replicate_home.fan_out(["gemma-2b", "sd-3"], prompt="…") as events:``
    """
    async with ReplicateHome(base_url) as client:
        events = client.fan_out(
            models,
            messages,
            prompt=prompt,
            limit=limit,
            timeout=timeout,
            fail_fast=fail_fast,
            progress=progress,
        )
        async with events as stream:
            yield stream
