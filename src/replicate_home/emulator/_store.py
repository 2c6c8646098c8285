"""The predictions of one emulator, with lazy, bounded retention."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator

from ._scenarios import check_number
from ._simulation import Prediction

__all__ = ["PredictionStore"]


class PredictionStore:
    """The predictions of one emulator, with lazy, bounded retention.

    Finished predictions expire ``expire_after`` seconds after completion; at most
    ``max_predictions`` are kept (the earliest finished go first, then the oldest).
    Call :meth:`purge` with the current time before looking things up.
    """

    def __init__(self, *, expire_after: float, max_predictions: int) -> None:
        if check_number("Emulator", "expire_after", expire_after) < 0:
            raise ValueError(f"expire_after must not be negative, got {expire_after}")
        if isinstance(max_predictions, bool) or not isinstance(max_predictions, int):
            raise ValueError(f"max_predictions must be an int, got {max_predictions!r}")
        if max_predictions < 1:
            raise ValueError(f"max_predictions must be at least 1, got {max_predictions}")
        self.expire_after = float(expire_after)
        self.max_predictions = max_predictions
        self._predictions: dict[str, Prediction] = {}  # in creation order
        self._by_stream_key: dict[str, str] = {}  # stream key -> id
        self._by_end: list[tuple[float, int, str]] = []  # (end_time, seq, id) heap
        self._running: list[tuple[float, str]] = []  # (end_time, id) heap, may hold stale entries
        self._running_end: dict[str, float] = {}  # id -> end time, for predictions still running
        self._seq = 0
        #: Whether creation times never went back as predictions were added (a test
        #: clock may set them back): then a listing's ``created_after`` ends its walk.
        self._in_order = True
        self._newest_created = float("-inf")

    def __len__(self) -> int:
        return len(self._predictions)

    def add(self, pred: Prediction, now: float) -> None:
        """Store a new prediction (created at ``now``), dropping old ones beyond the limit."""
        if pred.id in self._predictions:
            raise ValueError(f"duplicate prediction id {pred.id!r}")
        self._predictions[pred.id] = pred
        if pred.wall_created < self._newest_created:
            self._in_order = False
        self._newest_created = max(self._newest_created, pred.wall_created)
        if pred.stream_key:
            self._by_stream_key[pred.stream_key] = pred.id
        self._seq += 1
        pred.number = self._seq
        self._schedule(pred, now)
        self.purge(now)

    def _schedule(self, pred: Prediction, now: float) -> None:
        end = pred.end_time
        self._seq += 1
        heapq.heappush(self._by_end, (end, self._seq, pred.id))
        self._running_end.pop(pred.id, None)
        if end > now:
            heapq.heappush(self._running, (end, pred.id))
            self._running_end[pred.id] = end

    def cancel(self, pred: Prediction, now: float) -> bool:
        """Cancel ``pred`` at ``now`` unless it is terminal then; whether it was canceled."""
        if pred.is_terminal(now):
            return False
        pred.canceled_at = now
        self._schedule(pred, now)
        return True

    def get(self, prediction_id: str, now: float) -> Prediction | None:
        """The prediction with that id, unless unknown or expired at ``now``."""
        pred = self._predictions.get(prediction_id)
        if pred is None or pred.end_time + self.expire_after <= now:
            return None
        return pred

    def peek(self, prediction_id: str) -> Prediction | None:
        """The stored prediction with that id, without any expiry check."""
        return self._predictions.get(prediction_id)

    def newest_first(self) -> Iterator[Prediction]:
        """The stored predictions, the most recently created first (call :meth:`purge` first)."""
        return reversed(self._predictions.values())

    def page(
        self,
        size: int,
        keep: Callable[[Prediction], bool],
        *,
        older_than: int | None = None,
        newer_than: int | None = None,
        before_window: Callable[[Prediction], bool] | None = None,
    ) -> tuple[list[Prediction], bool, bool]:
        """One page of a listing, newest first (call :meth:`purge` first): up to ``size``
        predictions that ``keep``, the newest ones, or the newest below number
        ``older_than`` (a next page's cursor), or the oldest above ``newer_than`` (a
        previous page's); and whether predictions that ``keep`` lie past it, older (a
        next page) and newer (a previous page).

        ``before_window(pred)`` says ``pred`` was created before the listing's window
        (``created_after``): it is left out (``keep`` need not check that), and while
        creation times are in order every older prediction is too, so the walk ends
        there. So a page costs the predictions from the newest
        to its end, not every prediction kept: sweeping the recent ones page by page
        does not grow with all the account holds."""
        if size < 1:
            raise ValueError(f"a page holds at least one prediction, got {size}")
        page: list[Prediction] = []
        newer = older = False
        above: deque[Prediction] = deque(maxlen=size)  # for newer_than: the oldest above
        for pred in reversed(self._predictions.values()):
            if before_window is not None and before_window(pred):
                if self._in_order:
                    break
                continue
            if not keep(pred):
                continue
            if newer_than is not None:
                if pred.number > newer_than:
                    newer = newer or len(above) == size
                    above.append(pred)
                    continue
                older = bool(above)
                break
            if older_than is not None and pred.number >= older_than:
                newer = True
                continue
            if len(page) == size:
                older = True
                break
            page.append(pred)
        if newer_than is not None:
            page = list(above)
        if not page:
            return page, False, False
        return page, older, newer

    def purge(self, now: float) -> None:
        """Drop expired predictions, then the earliest finished ones beyond the limit."""
        heap = self._by_end
        while heap:
            end, _, prediction_id = heap[0]
            pred = self._predictions.get(prediction_id)
            if pred is None or pred.end_time != end:  # dropped or rescheduled: stale entry
                heapq.heappop(heap)
                continue
            finished = end <= now
            expired = end + self.expire_after <= now
            if not (expired or (finished and len(self._predictions) > self.max_predictions)):
                break
            heapq.heappop(heap)
            self._drop(prediction_id)
        while len(self._predictions) > self.max_predictions:  # all remaining are running
            self._drop(next(iter(self._predictions)))

    def _drop(self, prediction_id: str) -> None:
        pred = self._predictions.pop(prediction_id)
        self._by_stream_key.pop(pred.stream_key, None)

    def by_stream_key(self, key: str, now: float) -> Prediction | None:
        """The prediction whose output stream ``key`` names, unless unknown or expired."""
        prediction_id = self._by_stream_key.get(key)
        return None if prediction_id is None else self.get(prediction_id, now)

    def in_flight(self, now: float) -> int:
        """How many predictions have a terminal time after ``now``."""
        running = self._running
        while running and running[0][0] <= now:
            end, prediction_id = heapq.heappop(running)
            if self._running_end.get(prediction_id) == end:
                del self._running_end[prediction_id]
        return len(self._running_end)
