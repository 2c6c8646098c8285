"""What a client knows of ``owner/name`` models on the official API: whether the model
route serves one (an official model) or it runs at a version (a community model, which
the route refuses with a 404), and the one create and one look-up it takes to learn it.

Until a model is known, one create at a time goes to its model route; the other calls
wait for that create's answer (and the look-up a 404 starts): at most one 404 create per
model and client, each create a token of the rate budget (a fan-out of four community
model predictions made three 404 creates before). A create held (``Prefer: wait``)
answers only when its prediction ends or the wait is over: while such a create is the
one in flight, the calls waiting learn the model from its look-up instead (one
``GET /v1/models/{owner}/{name}`` per client, no create), or ten predictions of 3 s with
``wait=60`` took 6 s, two predictions' time.
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
        #: ``owner/name`` -> the create in flight to its model route.
        self._first_creates: dict[str, _FirstCreate] = {}
        self._lookups: dict[str, anyio.Event] = {}

    def known(self, model: str) -> bool:
        """Whether this client knows if ``model``'s route serves it."""
        return model in self._latest

    def version(self, model: str) -> str | None:
        """The version to run ``model`` at, if it is a known community model."""
        return self._latest.get(model)

    async def take_turn(
        self, model: str, learn: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Return when a create may go to ``model``'s route: it is known, or this call's
        create is the one in flight to learn it (:meth:`settled` ends its turn). While
        that create is held, ``learn()`` (the model's look-up; ``False`` when it could not
        tell) is awaited instead of the create's answer."""
        while model not in self._latest:
            first = self._first_creates.get(model)
            if first is None:
                self._first_creates[model] = _FirstCreate()
                return
            if first.held and learn is not None:
                if not await learn():
                    learn = None  # then wait for the create's answer
                continue
            await first.changed.wait()

    def holding(self, model: str) -> None:
        """The create in flight to ``model``'s route is held: the calls waiting for its
        answer learn the model from its look-up instead."""
        first = self._first_creates.get(model)
        if first is not None and not first.held:
            first.held = True
            first.changed.set()
            first.changed = anyio.Event()

    def settled(self, model: str, created: bool) -> None:
        """A create to ``model``'s route is over: a route that created a prediction
        serves the model; either way the calls waiting go on (one of them next, if
        nothing was learnt)."""
        if created:
            self._latest.setdefault(model, None)
        first = self._first_creates.pop(model, None)
        if first is not None:
            first.changed.set()

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


class _FirstCreate:
    """The create in flight to a model's route: whether it is held, and an event set
    when that changes or it settles."""

    __slots__ = ("changed", "held")

    def __init__(self) -> None:
        self.changed = anyio.Event()
        self.held = False
