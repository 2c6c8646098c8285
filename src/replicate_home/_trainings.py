"""``api.trainings``: fine-tuning a model version into a destination model.

A training is followed exactly as a prediction is, by the same engine entry (its
create in the client's task group, the poll schedule, the call's deadline, the rate
budget): only its endpoints differ (:attr:`PredictionCall.training`). The ownership rules
are the predictions': ``run()`` owns its training (abandoned, it is cancelled on the
service), a training from ``create()`` is the caller's and ``wait()``/``follow()`` leave it
running.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._api_args import check_prediction_id, check_webhook, parse_model_ref
from ._api_resource import ApiResource, owner_and_name
from ._engine import Engine
from ._exceptions import PredictionCanceled, PredictionFailed
from ._file_inputs import check_input
from ._models import TERMINAL_STATUSES, Prediction
from ._paging import next_cursor, results_of
from ._run import run_to_end
from ._schedule import check_seconds
from ._service import PredictionCall, RequestSpec

__all__ = ["Training", "TrainingsAPI", "training_of"]


@dataclass(frozen=True)
class Training:
    """A training: ``model`` at ``version`` trained on ``input``. Once it
    ``succeeded``, ``new_model`` is the version it made of the destination model, ready
    to run (``owner/name:id``; ``new_version`` its id alone) and ``weights`` the URL of
    the trained weights. ``polls`` and ``elapsed`` say how it was followed."""

    id: str
    model: str
    version: str | None
    status: str
    output: Any = None
    error: Any = None
    polls: int = field(default=0, compare=False)
    elapsed: float = field(default=0.0, compare=False)
    input: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    logs: str | None = field(default=None, repr=False, compare=False)
    metrics: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    created_at: datetime | None = field(default=None, repr=False, compare=False)
    started_at: datetime | None = field(default=None, repr=False, compare=False)
    completed_at: datetime | None = field(default=None, repr=False, compare=False)
    source: str | None = field(default=None, repr=False, compare=False)
    urls: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the status is terminal (the training will not change again)."""
        return self.status in TERMINAL_STATUSES

    @property
    def new_version(self) -> str | None:
        """The id of the destination's version this training made (``output.version``,
        which Replicate writes as ``owner/name:id``)."""
        reference = _output_text(self.output, "version")
        return None if reference is None else reference.rpartition(":")[2] or None

    @property
    def new_model(self) -> str | None:
        """The version this training made as a model reference to run
        (``owner/name:id``), where the output names its model."""
        reference = _output_text(self.output, "version")
        return reference if reference is not None and ":" in reference else None

    @property
    def weights(self) -> str | None:
        """The URL of the trained weights (``output.weights``)."""
        return _output_text(self.output, "weights")


def _output_text(output: object, key: str) -> str | None:
    value = output.get(key) if isinstance(output, Mapping) else None
    return value if isinstance(value, str) and value else None


def training_of(prediction: Prediction) -> Training:
    """The :class:`Training` the engine followed as a :class:`Prediction`."""
    return Training(
        id=prediction.id,
        model=prediction.model,
        version=prediction.version,
        status=prediction.status,
        output=prediction.output,
        error=prediction.error,
        polls=prediction.polls,
        elapsed=prediction.elapsed,
        input=prediction.input,
        logs=prediction.logs,
        metrics=prediction.metrics,
        created_at=prediction.created_at,
        started_at=prediction.started_at,
        completed_at=prediction.completed_at,
        source=prediction.source,
        urls=prediction.urls,
    )


class TrainingsAPI(ApiResource):
    """``api.trainings``: ``create``, ``get``, ``cancel``, ``list``, and following a
    training with ``wait``, ``follow`` or ``run``."""

    def _call(
        self,
        model: str,
        destination: str,
        input: Mapping[str, Any],
        webhook: str | None,
        webhook_events_filter: Sequence[str] | None,
        owned: bool,
    ) -> PredictionCall:
        ref = parse_model_ref(model)
        if ref.name is None or ref.version is None:
            raise ValueError(f"a training starts from 'owner/name:version', not {model!r}")
        owner, name = owner_and_name(destination, "destination model")
        if not isinstance(input, Mapping):
            raise ValueError(f"input must be a mapping, not {type(input).__name__}")
        check_input(dict(input))
        hook, events = check_webhook(webhook, webhook_events_filter)
        call = PredictionCall(
            model=ref.name,
            version=ref.version,
            input=dict(input),
            kind="text",
            prompt=None,
            webhook=hook,
            webhook_events_filter=events,
            owned=owned,
            training=True,
            destination=f"{owner}/{name}",
        )
        return self._service.attach_files(call, None, None)

    async def create(
        self,
        model: str,
        *,
        destination: str,
        input: Mapping[str, Any],
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
    ) -> Training:
        """Start a training of ``model`` (``owner/name:version``) into ``destination``
        (``owner/name``, a model of the token's account: ``api.models.create`` makes
        one), and return it as created. File inputs (a path, a binary file, bytes) are
        uploaded first. The training is the caller's: nothing cancels it, unless the
        caller is cancelled while the create is in flight (and never learns its id)."""
        call = self._call(model, destination, input, webhook, webhook_events_filter, False)
        return training_of(await self._engine().create(call))

    async def run(
        self,
        model: str,
        *,
        destination: str,
        input: Mapping[str, Any],
        timeout: float | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
    ) -> Training:
        """Create a training and follow it to its end, as ``predict`` does a
        prediction: it belongs to this call, so a caller that gives up (cancelled, or
        after ``timeout`` seconds: the client's by default) has it cancelled on the
        service. Raises as :meth:`wait` does."""
        call = self._call(model, destination, input, webhook, webhook_events_filter, True)
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        return await _to_end(self._engine(), call, seconds)

    async def get(self, training: str | Training) -> Training:
        """The training's current state (``GET /v1/trainings/{id}``)."""
        training_id = _training_id(training)
        data, text = await self._send(self._service.request("GET", "trainings", training_id))
        return training_of(self._read(data, text, training_id))

    async def cancel(self, training: str | Training) -> Training:
        """Cancel the training on the service; its state as the cancel answered."""
        training_id = _training_id(training)
        spec = self._service.request("POST", "trainings", training_id, "cancel")
        return training_of(self._read(*await self._send(spec), training_id))

    def list(self) -> AsyncIterator[Training]:
        """Every training of the account, newest first, page after page
        (``GET /v1/trainings``). Stop iterating at any time."""

        def request(cursor: str | None) -> RequestSpec:
            query = None if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "trainings", query=query)

        def read(data: dict[str, Any], text: str) -> tuple[list[Training], str | None]:
            page = [training_of(self._read(item, text, None)) for item in results_of(data, text)]
            return page, next_cursor(data.get("next"))

        return self._listing(request, read)

    async def wait(self, training: str | Training, *, timeout: float | None = None) -> Training:
        """Follow a training that already runs to its end and return it (succeeded).
        A ``failed`` one raises :class:`PredictionFailed`, a canceled one
        :class:`PredictionCanceled` (their ``prediction`` is the :class:`Training`);
        :class:`PredictionTimeout` after ``timeout`` seconds (the client's by
        default). The training is the caller's: a cancelled or timed-out wait leaves it
        running."""
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        call = await self._existing(training)
        return await _to_end(self._engine(), call, seconds)

    async def follow(
        self, training: str | Training, *, timeout: float | None = None
    ) -> AsyncGenerator[Training, None]:
        """Each state of a training that already runs, as it is read (its ``logs``
        grow), ending with the terminal one; raises as :meth:`wait` does. Closing the
        generator early leaves the training running."""
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        call = await self._existing(training)
        async with aclosing(self._engine().run(call, timeout=seconds, stream=False)) as states:
            try:
                async for state in states:
                    yield training_of(state)
            except (PredictionFailed, PredictionCanceled) as error:
                raise _as_training_error(error) from None

    async def _existing(self, training: str | Training) -> PredictionCall:
        """The call that follows a training: from the state given, or one read."""
        if not isinstance(training, Training):
            training = await self.get(training)
        state = Prediction(
            training.id,
            training.model,
            training.version,
            training.status,
            output=training.output,
            error=training.error,
            input=training.input,
            logs=training.logs,
            urls=self._service.training_urls(_training_id(training)),
        )
        return PredictionCall(
            model=training.model,
            version=training.version,
            input=training.input,
            kind="text",
            prompt=None,
            owned=False,
            existing=state,
            training=True,
        )

    def _read(self, data: dict[str, Any], text: str, known_id: str | None) -> Prediction:
        call = PredictionCall(
            model="", version=None, input={}, kind="text", prompt=None, training=True
        )
        return self._service.read_prediction(data, text, call=call, known_id=known_id)


def _training_id(training: object) -> str:
    """A caller's training id (the same form as a prediction's), checked."""
    value = training.id if isinstance(training, Training) else training
    try:
        return check_prediction_id(value)
    except ValueError:
        raise ValueError(f"not a training id: {value!r}") from None


async def _to_end(engine: Engine, call: PredictionCall, timeout: float | None) -> Training:
    try:
        return training_of(await run_to_end(engine, call, timeout=timeout))
    except (PredictionFailed, PredictionCanceled) as error:
        raise _as_training_error(error) from None


def _as_training_error(
    error: PredictionFailed | PredictionCanceled,
) -> PredictionFailed | PredictionCanceled:
    """The same error, its ``prediction`` the :class:`Training` it is about."""
    state = error.prediction
    training = training_of(state) if isinstance(state, Prediction) else state
    if isinstance(error, PredictionFailed):
        return PredictionFailed(error.error, error.prediction_id, training)
    return PredictionCanceled(error.prediction_id, error.status, training)
