"""Following many predictions at once through the list endpoint.

With hundreds of predictions in flight, one ``GET /v1/predictions/{id}`` per prediction
per poll exceeds the 3000 requests a minute the API allows: polls queue in the rate
budget and finished predictions are noticed late. ``GET /v1/predictions`` answers up to
100 predictions a request, with their status, so above a threshold of predictions waiting
to be polled, one sweep of the listing (from the oldest of them on) tells all of them at
once whether they have ended. A prediction the sweep sees ended (or does not see at all)
is then read once by id, as usual, for its final record: the sweep only replaces the
"not yet" polls.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import anyio

from ._models import Prediction

__all__ = [
    "BULK_INTERVAL",
    "BULK_THRESHOLD",
    "PUBLISHED_REQUESTS_PER_MINUTE",
    "BulkFollower",
    "ListPage",
]

logger = logging.getLogger("replicate_home")

#: Predictions waiting between polls from which the listing follows them, at the
#: published request limit: the adaptive schedule polls a young prediction a few times
#: a second, so about 20 of them already reach the 50 requests a second the API allows.
BULK_THRESHOLD = 20
#: Replicate's published limit on requests other than creates, a minute: the rate
#: :data:`BULK_THRESHOLD` is set for (a client allowed more polls more before it sweeps).
PUBLISHED_REQUESTS_PER_MINUTE = 3000.0
#: Seconds between two sweeps of the listing.
BULK_INTERVAL = 1.0
#: How far before the oldest followed prediction a sweep starts (clocks differ).
_SLACK = timedelta(seconds=5)
#: Pages one sweep reads at most (100 predictions each).
_MAX_PAGES = 50

#: One page of the listing: ``(cursor, created_after) -> (predictions, next cursor)``.
ListPage = Callable[[str | None, datetime], Awaitable[tuple[list[Prediction], str | None]]]


class _Waiter:
    __slots__ = ("created_at", "event", "seen")

    def __init__(self, created_at: datetime) -> None:
        self.created_at = created_at
        self.event = anyio.Event()
        self.seen: Prediction | None = None


class BulkFollower:
    """Shared by every call on one client. ``start`` runs a task in the client's task
    group (the sweeper runs only while someone waits, so closing the client never waits
    on it for long)."""

    def __init__(
        self,
        list_page: ListPage,
        start: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
        *,
        threshold: int = BULK_THRESHOLD,
        interval: float = BULK_INTERVAL,
        allowance: Callable[[], float] | None = None,
    ) -> None:
        self._list_page = list_page
        self._start = start
        self.threshold = threshold
        self._allowance = allowance
        self.interval = interval
        self.polling = 0  # predictions between polls right now (the engine counts them)
        self.sweeps = 0
        self.pages = 0
        self._waiters: dict[str, _Waiter] = {}
        self._running = False

    @property
    def active(self) -> bool:
        """Whether polls would be many enough to follow through the listing instead.

        The threshold is where polls alone reach the published request limit, so it
        moves with the request rate this client may use now (``allowance``: a multiple
        of :data:`PUBLISHED_REQUESTS_PER_MINUTE`), at least one:

        - below 1, when the budget's 429s showed that this client gets only a share of
          the limit (other processes on the token, or a lower limit), it is that share
          of itself: four processes on one token polling 15 predictions each reached
          the limit together, where each alone stayed below the threshold;
        - above 1, for a client allowed more requests than published, it grows with the
          square root: polls see an end sooner than a sweep once a second, as long as
          they leave most of the limit to the rest (at ten times the limit, 64: polls
          use at most about a third of it). Grown in proportion (200), polls filled the
          limit at scale and cost a third more requests, with ends seen later."""
        threshold = self.threshold
        if self._allowance is not None:
            allowance = self._allowance()
            scale = allowance if allowance <= 1.0 else math.sqrt(allowance)
            threshold = max(1, math.ceil(threshold * scale))
        return self.polling >= threshold

    async def wait(self, prediction: Prediction) -> Prediction | None:
        """The prediction as the next sweep lists it; ``None`` when the sweep could not
        tell (not listed, the listing failed): then poll it by id. Cancel it to stop."""
        created_at = prediction.created_at
        if created_at is None or prediction.id in self._waiters:
            return None
        waiter = _Waiter(created_at)
        self._waiters[prediction.id] = waiter
        try:
            if not self._running:
                try:
                    self._start(self._sweep_while_waited)
                except RuntimeError:  # the client is closing
                    return None
                self._running = True
            await waiter.event.wait()
            return waiter.seen
        finally:
            self._waiters.pop(prediction.id, None)

    async def _sweep_while_waited(self) -> None:
        try:
            while self._waiters:
                await anyio.sleep(self.interval)
                waiting = dict(self._waiters)
                if not waiting:
                    return
                try:
                    await self._sweep(waiting)
                except Exception as error:  # each waiter then polls by id
                    logger.debug("listing predictions failed: %s", type(error).__name__)
                for waiter in waiting.values():
                    waiter.event.set()  # seen or not: a waiter never waits two sweeps
        finally:
            self._running = False
            for waiter in self._waiters.values():
                waiter.event.set()

    async def _sweep(self, waiting: dict[str, _Waiter]) -> None:
        oldest = min(waiter.created_at for waiter in waiting.values()) - _SLACK
        remaining = set(waiting)
        cursor: str | None = None
        self.sweeps += 1
        for _ in range(_MAX_PAGES):
            page, cursor = await self._list_page(cursor, oldest)
            self.pages += 1
            for listed in page:
                if listed.id in remaining:
                    remaining.discard(listed.id)
                    waiting[listed.id].seen = listed
            if not remaining or cursor is None:
                return
