"""The mutable state one emulator's routes share, below every route module: the clock and
its waiters, the predictions and the scripts that shape them, the counters and the
records of requests and webhook deliveries, and, while serving, the stream origin's URL
and the webhook sender.

Nothing here knows about routes; the route modules get a :class:`EmulatorState` (and the
other pieces they need) from the app, never the app itself.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
from starlette.types import Scope

from ._catalogue import ModelInfo
from ._file_models import FileDigest
from ._judge_models import JUDGE_MODELS, judge_answer
from ._recording import Origin, RequestRecord, masked_headers
from ._scenarios import Fault, Scenario
from ._schemas import TEXT_KINDS
from ._simulation import Prediction, Source, file_content, generate_text, make_prediction_id
from ._store import PredictionStore
from ._webhooks import WebhookDelivery, WebhookSender

__all__ = ["EmulatorState"]

#: How long a wait in the server sleeps at most between looks at a clock that is not
#: the event loop's (a test's clock can jump at any moment).
_CUSTOM_CLOCK_TICK = 0.02


def _chunks(
    model: str, info: ModelInfo, prompt: str, files: Mapping[str, FileDigest]
) -> tuple[str, ...]:
    """The text a text-producing model writes (a judge model's answer for a judge)."""
    if model in JUDGE_MODELS:
        return judge_answer(model, prompt, files)
    return generate_text(model, prompt) if info.kind in TEXT_KINDS else ()


def _stream_key() -> str:
    """An unguessable stream path segment, shaped like the real service's (52 lowercase
    base32 characters: 256 random bits)."""
    return base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=").lower()


class EmulatorState:
    """What the routes of one emulator share. ``default`` is the scenario of unscripted
    prompts, ``clock`` the emulator's time (``None``: the event loop's), ``history`` how
    many requests and webhook deliveries are kept."""

    def __init__(
        self,
        default: Scenario,
        store: PredictionStore,
        clock: Callable[[], float] | None,
        history: int,
    ) -> None:
        self.default = default
        self.store = store
        self._real_clock = clock is None
        self._clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self._wall_offset: float | None = None
        self._last_now = 0.0
        self.scripts: dict[tuple[str, str | None], Scenario] = {}
        self._submit_counts: dict[tuple[str, str | None], int] = {}
        self.history: collections.deque[RequestRecord] = collections.deque(maxlen=history)
        self.deliveries: collections.deque[WebhookDelivery] = collections.deque(maxlen=history)
        self.run_counts: collections.Counter[str] = collections.Counter()
        # The counters of EmulatorStats.
        self.creates = 0
        self.polls = 0
        self.requests = 0
        self.peak_in_flight = 0
        self.cancels = 0
        self.stream_connections = 0
        self.open_streams = 0
        self.throttled = 0
        self.stream_requests = 0
        self.webhooks_sent = 0
        self.webhooks_failed = 0
        self._changed: anyio.Event | None = None
        #: While serving: the stream origin's URL (``urls.stream`` of ``/v1`` predictions).
        self.stream_url: str | None = None
        #: Set when serving stops: streams and held answers end, waits return.
        self.stopping = False
        #: While serving: the sender of webhook deliveries.
        self.sender: WebhookSender | None = None

    # ----------------------------------------------------------------- the clock

    def now(self) -> float:
        """The emulator's time now (``RuntimeError`` from the default clock outside an
        event loop)."""
        now = float(self._clock())
        if self._wall_offset is None:
            self._wall_offset = time.time() - now
        self._last_now = now
        return now

    def now_or_last(self) -> float:
        """:meth:`now`, or the last time read where there is no event loop to ask."""
        try:
            return self.now()
        except RuntimeError:  # the default clock outside an event loop
            return self._last_now

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less: until the emulator answers a request, creates a
        prediction or stops serving. With a clock of its own (not the event loop's), the
        emulator looks again at least every few milliseconds, as that clock may jump."""
        if not self._real_clock:
            delay = min(delay, _CUSTOM_CLOCK_TICK)
        if self.stopping:
            return
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        with anyio.move_on_after(max(delay, 0.0)):
            await changed.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return as soon as ``predicate()`` is true, checked now and at every change."""
        while not predicate():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def wake_waiters(self) -> None:
        """Tell every :meth:`pause` and :meth:`wait_until` that something changed."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # ----------------------------------------------------------------- predictions

    def script(self, prompt: str, scenario: Scenario, model: str | None) -> None:
        """Make predictions with ``prompt`` (of ``model``, or of any model) follow
        ``scenario``, its submit faults from the first."""
        self.scripts[prompt, model] = scenario
        self._submit_counts.pop((prompt, model), None)

    def _script_key(self, prompt: object, model: object) -> tuple[str, str | None] | None:
        """The key of the script that applies to a prompt and model, if any."""
        if not isinstance(prompt, str):
            return None
        if isinstance(model, str) and (prompt, model) in self.scripts:
            return prompt, model
        return (prompt, None) if (prompt, None) in self.scripts else None

    def _scenario_for(self, prompt: str, model: str) -> Scenario:
        key = self._script_key(prompt, model)
        return self.default if key is None else self.scripts[key]

    def take_submit_fault(self, prompt: object, model: object) -> Fault | None:
        """The next scripted submit fault for a create with this prompt and model, if any."""
        key = self._script_key(prompt, model)
        if key is None:
            return None
        faults = self.scripts[key].submit_faults
        seen = self._submit_counts.get(key, 0)
        if seen >= len(faults):
            return None
        self._submit_counts[key] = seen + 1
        return faults[seen]

    def start_prediction(
        self,
        model: str,
        info: ModelInfo,
        model_input: Mapping[str, Any],
        prompt: str,
        now: float,
        *,
        source: Source,
        deadline: float | None = None,
        deployment: str | None = None,
        files: Mapping[str, FileDigest] | None = None,
        input_error: str | None = None,
        version: str | None = None,
    ) -> Prediction:
        """Create, store and count a new prediction at ``now``: ``files`` are the digests
        of its input files, ``input_error`` fails it (an input file it could not get),
        ``version`` is the version it reports if not ``info.version``."""
        assert self._wall_offset is not None  # set by the now() that gave `now`
        scenario = self._scenario_for(prompt, model)
        if input_error is not None:
            scenario = dataclasses.replace(scenario, outcome="failed", error=input_error)
        pred = Prediction(
            id=self._new_id(),
            model=model,
            version=info.version if version is None else version,
            kind=info.kind,
            input=model_input,
            prompt=prompt,
            scenario=scenario,
            created=now,
            wall_created=self._wall_offset + now,
            chunks=_chunks(model, info, prompt, files or {}),
            source=source,
            deadline=deadline,
            stream_key=_stream_key() if info.kind in TEXT_KINDS else "",
            deployment=deployment,
            files=dict(files or {}),
        )
        self.store.add(pred, now)
        self.creates += 1
        self.run_counts[model] += 1
        self.peak_in_flight = max(self.peak_in_flight, self.store.in_flight(now))
        self.wake_waiters()
        return pred

    def _new_id(self) -> str:
        while True:
            prediction_id = make_prediction_id(secrets.token_bytes(16))
            if self.store.peek(prediction_id) is None:
                return prediction_id

    def output_file(self, prediction_id: str, name: str) -> tuple[Iterator[bytes], int, str] | None:
        """Output file ``name`` of a succeeded prediction: pieces, length, media type."""
        now = self.now()
        self.store.purge(now)
        pred = self.store.get(prediction_id, now)
        if pred is None or pred.status(now) != "succeeded":
            return None
        return file_content(pred, name)

    # ----------------------------------------------------------------- records

    def record_request(
        self, scope: Scope, status_code: int, prediction_id: str | None, origin: Origin
    ) -> None:
        """Count and keep one answered request (see :class:`._recording.Recorder`)."""
        self.requests += 1
        if origin == "stream":
            self.stream_requests += 1
        if self.history.maxlen:
            self.history.append(
                RequestRecord(
                    time=self.now_or_last(),
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers=masked_headers(scope),
                    prediction_id=prediction_id,
                    status_code=status_code,
                    origin=origin,
                )
            )
        self.wake_waiters()

    def record_delivery(self, delivery: WebhookDelivery) -> None:
        """Count and keep one webhook delivery attempt."""
        self.webhooks_sent += 1
        if not delivery.ok:
            self.webhooks_failed += 1
        self.deliveries.append(delivery)
        self.wake_waiters()
