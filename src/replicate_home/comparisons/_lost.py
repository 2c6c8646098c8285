"""Finding the creates a run sent but never recorded the answer of (official API).

A cell marked ``sending`` with no prediction id is one whose process stopped between its
create and the commit of the answer: the prediction may exist and be paid for. The
account's listing holds every prediction the service created, but also every other
prediction of the account: other runs', other programs', older identical ones. So a
prediction is taken for such a cell only when

- it was created inside the cell's own window: from its ``sending`` mark to the end of
  its create's deadline, widened by the difference between this machine's clock and the
  service's, measured from the recorded creates on its service (each create's
  ``created_at`` on the service's clock lies between its mark and its answer on ours);
  before any is recorded, from the HTTP ``Date`` of the service's answers (the
  listing's own, or any answer the client had: :mod:`replicate_home._service_clock`);
  the fixed allowance only if no answer had a ``Date``; bounded each way by
  :data:`MAX_SKEW`;
- it is on the same model or deployment (the same version, when the cell names one),
  with exactly the same input, and the run's webhook (or none, for a run without);
- no cell of the whole store has claimed it (the database refuses a second claim).

Cells of other runs in the store may be waiting for a create of the same call at the
same time (two processes running the same prompts on one account). While such a cell's
create may still answer, its prediction is not known to be its own yet, so the search
waits for it (its process records the answer within moments, or its window ends). Among
cells whose answers were all lost, predictions are handed out in order: the first mark
gets the first prediction created in its window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio

from .._models import Deployment, Prediction
from .._replicate_api import ReplicateAPI
from .._service_clock import DateReading
from ._store import CellRecord, ClockSample, ResultsStore, RunRecord

__all__ = ["DEPLOYMENT_PREFIX", "UNMEASURED_SKEW", "column", "find_lost_creates", "skew_bounds"]

#: How a deployment column is named in the store (``deployment:owner/name``, as events
#: and results name it): no model name has a colon before its slash.
DEPLOYMENT_PREFIX = "deployment:"

#: Seconds each way the service's clock may differ from this machine's when no create
#: of the service shows both clocks yet: NTP keeps clocks well within this.
UNMEASURED_SKEW = 10.0
#: Seconds added each way to a measured difference: the clocks' drift since (NTP slews a
#: clock by at most half a millisecond a second) and timestamps' rounding. Small, as an
#: identical prediction created just before a cell's mark must stay outside its window.
SKEW_MARGIN = 0.05
#: The largest difference believed, each way (seconds): a wider window could take a
#: prediction of another program; a narrower one, at worst, sends a cell again.
MAX_SKEW = 600.0
#: How often the store is read again while a cell of another run may still be answered.
_RECHECK = 0.1


def column(model: str) -> str | Deployment:
    """A stored column name as the client takes it."""
    if model.startswith(DEPLOYMENT_PREFIX):
        return Deployment(model[len(DEPLOYMENT_PREFIX) :])
    return model


def skew_bounds(
    samples: Sequence[ClockSample], reading: DateReading | None = None
) -> tuple[float, float]:
    """Seconds the service's clock is ahead of this machine's, at least and at most:
    from the recorded creates (``samples``), else from an answer's ``Date``
    (``reading``), else :data:`UNMEASURED_SKEW` each way; never more than
    :data:`MAX_SKEW` each way."""
    if not samples:
        if reading is None:
            return -UNMEASURED_SKEW, UNMEASURED_SKEW
        low, high = reading.skew_bounds()
    else:
        lows = [(s.created_at - s.answered_at).total_seconds() for s in samples]
        highs = [(s.created_at - s.sending_at).total_seconds() for s in samples]
        low, high = max(lows), min(highs)
        if low > high:  # the clocks moved while the run went: take the whole spread
            low, high = min(lows), max(highs)
    return max(low - SKEW_MARGIN, -MAX_SKEW), min(high + SKEW_MARGIN, MAX_SKEW)


@dataclass(frozen=True)
class _Wanted:
    """A cell waiting for its create, as the search sees it."""

    run_id: str
    cell: int
    key: tuple[str, str, str | None]
    start: datetime  # this machine's clock
    end: datetime

    def window(self, skew: tuple[float, float]) -> tuple[datetime, datetime]:
        """The window on the service's clock."""
        return self.start + timedelta(seconds=skew[0]), self.end + timedelta(seconds=skew[1])


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True)


def _key(cell: CellRecord, run: RunRecord) -> tuple[str, str, str | None]:
    hook = run.settings.get("webhook")
    return cell.model, _canonical(cell.input), hook if isinstance(hook, str) else None


def _wanted(cell: CellRecord, run: RunRecord, now: datetime) -> _Wanted:
    # A cell marked by a version that kept no window: from the run's start to now.
    start = cell.sending_at or run.created_at
    end = cell.sending_until or now
    return _Wanted(cell.run_id, cell.cell, _key(cell, run), start, end)


def _matches(prediction: Prediction, key: tuple[str, str, str | None]) -> bool:
    """Whether ``prediction`` is of the call a cell sends: ``key`` is its model column,
    its input (canonical JSON) and its run's webhook."""
    model, values, hook = key
    if prediction.webhook != hook:
        # The official API shows the webhook a create gave: the run's, or none for none.
        return False
    target = column(model)
    if isinstance(target, Deployment):
        same = prediction.deployment == target.name
    else:  # a model's own prediction, not a deployment's of the same model
        name, _, version = target.partition(":")
        same = prediction.deployment is None and prediction.model.split(":", 1)[0] == name
        same = same and (not version or prediction.version == version)
    return same and _canonical(prediction.input) == values


async def find_lost_creates(
    client: ReplicateAPI,
    store: ResultsStore,
    run: RunRecord,
    cells: Sequence[CellRecord],
) -> dict[int, Prediction]:
    """The predictions created for ``cells`` (the run's cells marked ``sending`` with no
    id) whose answers were never recorded, by cell number, each claimed in the store."""
    if not cells:
        return {}
    now = datetime.now(timezone.utc)
    ours = [_wanted(cell, run, now) for cell in cells]
    keys = {want.key for want in ours}
    mine = {(want.run_id, want.cell) for want in ours}
    runs: dict[str, RunRecord] = {run.id: run}

    async def others() -> list[_Wanted]:
        """Cells of the store (other runs', or other cells of this one) waiting for a
        create of the same call on the same service."""
        found = []
        for cell in await store.open_sends():
            if (cell.run_id, cell.cell) in mine:
                continue
            if cell.run_id not in runs:
                runs[cell.run_id] = await store.run(cell.run_id)
            other = runs[cell.run_id]
            if other.service != run.service or other.origin != run.origin:
                continue
            want = _wanted(cell, other, datetime.now(timezone.utc))
            if want.key in keys:
                found.append(want)
        return found

    same_service = [r.id for r in await store.runs() if r.origin == run.origin] or [run.id]
    samples = await store.clock_samples(same_service)
    # No create of the service recorded yet: the clocks' difference from the Date of an
    # answer this client already had, else from the listing's own answer below.
    reading = None if samples else client._clock_reading()
    skew = skew_bounds(samples, reading)

    def span() -> tuple[datetime, datetime]:
        windows = [want.window(skew) for want in ours]
        return min(w[0] for w in windows), max(w[1] for w in windows)

    first, last = span()

    def live(contenders: Sequence[_Wanted]) -> bool:
        moment = datetime.now(timezone.utc)
        return any(c.window(skew)[1] > moment and c.window(skew)[0] <= last for c in contenders)

    while True:
        if live(await others()):
            await anyio.sleep(_RECHECK)
            continue
        listed = [
            prediction
            async for prediction in client.list(created_after=first, created_before=last)
            if prediction.created_at is not None
        ]
        if not samples and reading is None and (reading := client._clock_reading()):
            # Measured now, from the listing's answer: list again only if the measured
            # windows reach past what was listed (a clock more than the fixed allowance off).
            skew = skew_bounds(samples, reading)
            listed_span = (first, last)
            first, last = span()
            if first < listed_span[0] or last > listed_span[1]:
                continue
        claimed = await store.claimed([prediction.id for prediction in listed])
        contenders = await others()
        # A cell of another run marked while the listing was read: wait for its answer.
        if not live(contenders):
            break
        await anyio.sleep(_RECHECK)
    free = [p for p in listed if p.id not in claimed]
    free.sort(key=lambda p: (p.created_at, p.id))
    taken: set[str] = set()
    found: dict[int, Prediction] = {}
    for want in sorted([*ours, *contenders], key=lambda w: (w.start, w.run_id, w.cell)):
        low, high = want.window(skew)
        for prediction in free:
            assert prediction.created_at is not None
            if prediction.id in taken or not low <= prediction.created_at <= high:
                continue
            if _matches(prediction, want.key):
                taken.add(prediction.id)
                if (want.run_id, want.cell) in mine:
                    found[want.cell] = prediction
                break
    return found
