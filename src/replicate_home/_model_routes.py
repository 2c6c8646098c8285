"""What a client knows of ``owner/name`` models on the official API: whether the model
route serves one (an official model) or it runs at a version (a community model, which
the route refuses with a 404), and the one create and one look-up it takes to learn it.

Until a model is known, one create at a time goes to its model route; the other calls
wait for that create's answer (and the look-up a 404 starts): at most one 404 create per
model and client, each create a token of the rate budget (a fan-out of four community
model predictions made three 404 creates before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ["ModelRoutes"]


class ModelRoutes:
    """One client's knowledge of its ``owner/name`` models."""

    def __init__(self) -> None:
        #: ``owner/name`` -> latest version of a community model, ``None`` if official.
        self._latest: dict[str, str | None] = {}
        #: ``owner/name`` -> set when the create in flight to its model route settles.
        self._first_creates: dict[str, anyio.Event] = {}
        self._lookups: dict[str, anyio.Event] = {}

    def version(self, model: str) -> str | None:
        """The version to run ``model`` at, if it is a known community model."""
        return self._latest.get(model)

    async def take_turn(self, model: str) -> None:
        """Return when a create may go to ``model``'s route: it is known, or this call's
        create is the one in flight to learn it (:meth:`settled` ends its turn)."""
        while model not in self._latest:
            first = self._first_creates.get(model)
            if first is None:
                self._first_creates[model] = anyio.Event()
                return
            await first.wait()

    def settled(self, model: str, created: bool) -> None:
        """A create to ``model``'s route is over: a route that created a prediction
        serves the model; either way the calls waiting go on (one of them next, if
        nothing was learnt)."""
        if created:
            self._latest.setdefault(model, None)
        first = self._first_creates.pop(model, None)
        if first is not None:
            first.set()

    async def look_up(
        self, model: str, fetch: Callable[[str], Awaitable[str | None]]
    ) -> str | None:
        """The latest version of a community model (``None`` for an official one), from
        one ``fetch`` per client: concurrent callers wait for the one in flight."""
        while model not in self._latest:
            pending = self._lookups.get(model)
            if pending is not None:
                await pending.wait()
                continue
            self._lookups[model] = done = anyio.Event()
            try:
                self._latest[model] = await fetch(model)
            finally:
                del self._lookups[model]
                done.set()
        return self._latest[model]
