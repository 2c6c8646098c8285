"""``ReplicateAPI``: Replicate's official API on the shared core."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import anyio
import httpx

from ._api import MAX_WAIT, ApiService
from ._api_args import check_cancel_after, check_prediction_id, check_webhook
from ._api_records import SearchResults
from ._bounded import DEFAULT_MAX_RESPONSE_BYTES
from ._budget import RateBudget
from ._bulk import BULK_THRESHOLD, PUBLISHED_REQUESTS_PER_MINUTE, BulkFollower
from ._catalogue_api import AccountAPI, CollectionsAPI, HardwareAPI, SearchAPI
from ._client import BaseClient, Input
from ._decode import require_string
from ._deployments_api import DeploymentsAPI
from ._engine import Engine
from ._exceptions import PredictionTimeout
from ._file_inputs import check_file_input, check_input, is_file_input
from ._media import content_type_of
from ._models import Deployment, Prediction
from ._models_api import ModelsAPI
from ._paging import pages
from ._prompt import Messages
from ._run import Output, run_to_end, stream_chunks
from ._schedule import check_seconds
from ._service import PredictionCall, RequestSpec
from ._trainings import TrainingsAPI
from ._uploads import FileEncoding, UploadedFile, open_source, read_uploaded_file
from .webhooks import WebhookReceiver

__all__ = ["ReplicateAPI"]


class ReplicateAPI(BaseClient):
    """Predictions on Replicate's official API (``api.replicate.com/v1``), under trio or
    asyncio, with the same methods as :class:`ReplicateHome`.

    ``api_token`` is the argument, else ``REPLICATE_API_TOKEN`` (none raises
    :class:`AuthenticationError` here, before any request); it never appears in an
    error, a repr or a log record. ``base_url`` is the argument, else
    ``REPLICATE_BASE_URL``, else ``https://api.replicate.com``.

    ``predict()`` asks the API to hold the create's answer up to ``wait`` seconds
    (``Prefer: wait``; ``None`` turns it off) so a fast model needs no poll at all; it is
    kept short on purpose, because until the create answers the prediction can't be
    cancelled. Text predictions are followed on their event stream where they have one.
    A prediction that its caller abandons (cancelled, timed out, left a fan-out, lost a
    race) is cancelled on the service in the background; every create also carries a
    ``Cancel-After`` for the call's deadline, so the service ends it even if this
    process dies. All calls share one rate budget: ``creates_per_minute`` and
    ``requests_per_minute`` (Replicate's published limits by default).

    From ``bulk_threshold`` predictions waiting between polls (20 by default; ``None``
    turns it off), they are followed through the listing (``GET /v1/predictions``, 100 a
    request, one sweep a second) rather than one GET each, which would exceed the
    request limit; each is read by id once the listing shows it ended. The threshold is
    for the published 3000 requests a minute and moves with the rate the client may use:
    a quarter of it when 429s leave the client a quarter, and the square root of the
    multiple above the published rate (about 3.2 times for ``requests_per_minute=30000``).

    ``timeout`` bounds each call (create to result), in seconds; ``poll_interval``
    fixes the wait between polls where a prediction has no stream (by default it
    adapts); ``proxy`` is a proxy URL for the HTTP client the client opens, or pass your
    own ``http_client``, which is used as it is configured and left open.
    ``max_response_bytes`` caps what one answer may be (decoded; also one event of a
    stream and the output a stream delivers): 32 MiB by default; past it a call raises
    :class:`ResponseTooLarge`. A ``Retry-After`` is honoured up to 60 s.

    File inputs (a path, a binary file object, bytes, anywhere in ``input``) are sent as
    ``file_encoding`` says, unless a call says otherwise: ``"upload"`` (the default)
    uploads each to the Files API, once per call or fan-out, and reuses an upload of the
    same content while it lives; ``"data"`` sends ``data:`` URIs inside the create (at
    most 10 MB of files a call). See the "Files" page of the docs.

    The rest of the API is in groups named as the official 2.x client names them:
    ``models``, ``collections``, ``hardware``, ``account``, ``trainings`` (followed as
    predictions are) and ``deployments``, and :meth:`search`; each call shares the
    budget, the deadline and the errors above (see "Using Replicate's official API").
    """

    def __init__(
        self,
        api_token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 150,
        poll_interval: float | None = None,
        wait: float | None = 1.0,
        http_client: httpx.AsyncClient | None = None,
        creates_per_minute: float = 600,
        requests_per_minute: float = 3000,
        proxy: str | None = None,
        bulk_threshold: int | None = BULK_THRESHOLD,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        file_encoding: FileEncoding = "upload",
    ) -> None:
        if bulk_threshold is not None and (
            isinstance(bulk_threshold, bool)
            or not isinstance(bulk_threshold, int)
            or bulk_threshold < 1
        ):
            raise ValueError(
                f"bulk_threshold must be a whole number >= 1 or None, not {bulk_threshold!r}"
            )
        self._bulk_threshold = bulk_threshold
        if wait is not None:
            if isinstance(wait, bool) or not isinstance(wait, (int, float)):
                raise ValueError(f"wait must be a number of seconds or None, not {wait!r}")
            if not (0 < wait <= MAX_WAIT and math.isfinite(wait)):
                raise ValueError(f"wait must be between 0 and {MAX_WAIT} seconds, not {wait!r}")
        self._api = ApiService(api_token, base_url, file_encoding)
        super().__init__(
            self._api,
            timeout=timeout,
            poll_interval=poll_interval,
            proxy=proxy,
            http_client=http_client,
            wait=wait,
            budget=RateBudget(creates_per_minute, requests_per_minute),
            max_response_bytes=max_response_bytes,
        )
        # The API's resource groups, named after the official 2.x client's.
        #: Models: ``get``, ``list``, ``create``, ``update``, ``delete``, and
        #: ``readme.get``, ``examples.list``, ``versions.list/get/delete``.
        self.models = ModelsAPI(self._open_engine, self._api)
        #: Curated collections of models: ``list``, ``get``.
        self.collections = CollectionsAPI(self._open_engine, self._api)
        #: The hardware models and deployments run on: ``list``.
        self.hardware = HardwareAPI(self._open_engine, self._api)
        #: The token's account: ``get``.
        self.account = AccountAPI(self._open_engine, self._api)
        self._search = SearchAPI(self._open_engine, self._api)
        #: Trainings: ``create``, ``get``, ``cancel``, ``list``, and ``wait``,
        #: ``follow`` and ``run`` to follow one as a prediction is followed.
        self.trainings = TrainingsAPI(self._open_engine, self._api)
        #: Deployments to manage: ``list``, ``get``, ``create``, ``update``,
        #: ``delete`` (what they return runs as it is).
        self.deployments = DeploymentsAPI(self._open_engine, self._api)

    def _new_engine(self, http: httpx.AsyncClient) -> Engine:
        engine = super()._new_engine(http)
        if self._bulk_threshold is not None:
            api = self._api

            async def list_page(
                cursor: str | None, after: datetime
            ) -> tuple[list[Prediction], str | None]:
                return api.read_page(*await engine.send(api.list_request(cursor, after)))

            def start(task: Callable[[], Coroutine[Any, Any, None]]) -> None:
                if self._group is None:
                    raise RuntimeError("the client is closed")
                self._group.start_soon(task)

            allowance = None
            budget = self._budget
            if budget is not None:
                # The client's request limit as a multiple of the published one.
                multiple = budget.requests.ceiling * 60.0 / PUBLISHED_REQUESTS_PER_MINUTE

                def allowance() -> float:  # that, less what 429s took
                    return multiple * budget.share

            engine._bulk = BulkFollower(
                list_page, start, threshold=self._bulk_threshold, allowance=allowance
            )
        return engine

    @property
    def budget(self) -> RateBudget:
        """The client's rate budget: ``budget.creates`` and ``budget.requests``, whose
        ``allowed_per_minute`` is the rate each currently allows (it adapts to the 429s
        the service answers)."""
        assert self._budget is not None
        return self._budget

    @property
    def base_url(self) -> str:
        """The service URL this client talks to."""
        return self._api.base_url

    def __repr__(self) -> str:
        return f"ReplicateAPI(base_url={self.base_url!r}, timeout={self._timeout!r})"

    async def __aenter__(self) -> ReplicateAPI:
        await super().__aenter__()
        return self

    # -- prediction handles -----------------------------------------------------------

    async def create(
        self,
        model: str | Deployment | None = None,
        messages: Messages | None = None,
        *,
        prompt: str | None = None,
        input: Input | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        cancel_after: float | None = None,
        file_encoding: FileEncoding | None = None,
    ) -> Prediction:
        """Start one prediction and return it as created, without waiting for it.

        The prediction belongs to the caller: nothing cancels it (no ``Cancel-After``
        unless ``cancel_after`` seconds are given), and it can be followed later, from
        this client or another, with :meth:`wait`, :meth:`follow`, :meth:`get` or
        :meth:`cancel` by its ``id``. ``webhook`` is a URL the service posts the
        prediction to, for the events in ``webhook_events_filter`` (``start``,
        ``output``, ``logs``, ``completed``; all of them by default). Only a caller
        cancelled while the create is in flight (who never learns the id) has what it
        created cancelled. ``file_encoding`` as for :meth:`predict`.
        """
        hook, events = check_webhook(webhook, webhook_events_filter)
        call = replace(
            self._api.prepare(model, messages, prompt, input),
            webhook=hook,
            webhook_events_filter=events,
            cancel_after=check_cancel_after(cancel_after),
            owned=False,
        )
        call = self._with_files(call, file_encoding, None)
        return await self._open_engine().create(call)

    async def get(self, prediction: str | Prediction) -> Prediction:
        """The prediction's current state (``GET /v1/predictions/{id}``), one request."""
        prediction_id = check_prediction_id(prediction)
        answer = await self._open_engine().send(self._api.get_request(prediction_id))
        prediction = self._api.read_prediction(*answer, call=_ANY_CALL, known_id=prediction_id)
        return replace(prediction, _downloads=self._downloads)

    async def cancel(self, prediction: str | Prediction) -> Prediction:
        """Cancel the prediction on the service and return its state as the cancel
        answered (a prediction that already ended stays as it was)."""
        prediction_id = check_prediction_id(prediction)
        engine = self._open_engine()
        answer = await engine.send(self._api.cancel_by_id_request(prediction_id))
        prediction = self._api.read_prediction(*answer, call=_ANY_CALL, known_id=prediction_id)
        return replace(prediction, _downloads=self._downloads)

    async def wait(
        self,
        prediction: str | Prediction,
        *,
        timeout: float | None = None,
        webhooks: WebhookReceiver | None = None,
    ) -> Prediction:
        """Follow a prediction that already runs to its end, as :meth:`predict` does
        (its event stream where it has one, else the poll schedule), and return it.

        Given a :class:`Prediction` (from :meth:`create`) it starts from that state;
        given an id, from one read. Raises as :meth:`predict` does, and
        :class:`PredictionTimeout` after ``timeout`` seconds (the client's by default).
        The prediction is the caller's: a cancelled or timed-out ``wait`` leaves it
        running.

        With ``webhooks`` (a :class:`~replicate_home.webhooks.WebhookReceiver` that
        receives this prediction's webhook), the wait listens for deliveries and sends
        no request at all; after ``webhooks.fallback`` seconds without a delivery it
        follows the prediction itself, from the latest state delivered.
        """
        target = _target(prediction)
        seconds = self._timeout if timeout is None else check_seconds(timeout, "timeout")
        engine = self._open_engine()
        if webhooks is not None:
            if not isinstance(webhooks, WebhookReceiver):
                raise ValueError("webhooks must be a WebhookReceiver")
            prediction_id = target if isinstance(target, str) else target.id
            started = anyio.current_time()
            with anyio.move_on_after(seconds) as scope:
                delivered = await webhooks.until_done(prediction_id)
            if scope.cancelled_caught:
                raise PredictionTimeout(prediction_id, seconds)
            if delivered is not None:
                target = delivered  # terminal: the result, with no request at all
            seconds = max(seconds - (anyio.current_time() - started), 0.001)
        call = self._api.call_for(target, owned=False)
        return await run_to_end(engine, call, timeout=seconds)

    def follow(
        self, prediction: str | Prediction, *, timeout: float | None = None
    ) -> AsyncGenerator[Output, None]:
        """The output of a prediction that already runs, as :meth:`generate` yields it
        (text chunks as they arrive, or one :class:`ImageResponse`). Closing the
        generator early leaves the prediction running: it is the caller's."""
        call = self._api.call_for(_target(prediction), owned=False)
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        return stream_chunks(self._open_engine(), call, timeout=seconds)

    async def search(self, query: str, *, limit: int = 20) -> SearchResults:
        """Search public models, collections and documentation pages
        (``GET /v1/search``, in beta on Replicate): at most ``limit`` models (1-50),
        best first."""
        return await self._search(query, limit=limit)

    async def webhook_secret(self) -> str:
        """The signing secret of the account's webhooks (``whsec_...``), to give to
        :func:`replicate_home.webhooks.verify`."""
        data, text = await self._open_engine().send(self._api.webhook_secret_request())
        return require_string(data, "key", text)

    async def upload_file(
        self,
        file: Any,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Any = None,
    ) -> UploadedFile:
        """Upload a file to Replicate's Files API (``POST /v1/files``) and return it;
        pass its ``url`` as a model input. ``file`` is a path (``pathlib`` or
        ``anyio``), a binary file object (sent from its start) or bytes; httpx reads a
        file in pieces as the request goes out, so a large one is not held in memory.
        ``filename`` and ``content_type`` default to the file's name and a type guessed
        from it (or its first bytes); ``metadata`` is any JSON. The upload takes its
        turn in the rate budget and is retried like any request."""
        if filename is not None and (not isinstance(filename, str) or not filename):
            raise ValueError("filename must be a non-empty string")
        if content_type is not None and (not isinstance(content_type, str) or not content_type):
            raise ValueError("content_type must be a non-empty string")
        if metadata is not None:
            check_input(metadata)
        engine = self._open_engine()
        if not is_file_input(file):
            raise ValueError(
                f"a file to upload must be a path, a binary file or bytes, not {file!r}"
            )
        check_file_input(file)
        source = await anyio.to_thread.run_sync(open_source, file)
        try:
            name = filename or source.name
            if content_type is None:
                content_type = source.content_type
                if filename is not None:  # a name that says its type wins over the bytes
                    by_name = content_type_of(filename, b"")
                    if by_name != "application/octet-stream":
                        content_type = by_name
            spec = self._api.file_create_request(source.content, name, content_type, metadata)
            return read_uploaded_file(*await engine.send(spec))
        finally:
            source.close()

    async def get_file(self, file_id: str) -> UploadedFile:
        """One file of the Files API (``GET /v1/files/{id}``)."""
        spec = self._api.file_request("GET", file_id)
        return read_uploaded_file(*await self._open_engine().send(spec))

    async def delete_file(self, file: str | UploadedFile) -> None:
        """Delete a file of the Files API (``DELETE /v1/files/{id}``)."""
        file_id = file.id if isinstance(file, UploadedFile) else file
        await self._open_engine().send(self._api.file_request("DELETE", file_id))
        self._api.uploads.forget(file_id)  # never reused for a file input again

    def list_files(self) -> AsyncIterator[UploadedFile]:
        """Every file of the Files API, newest first, page after page
        (``GET /v1/files``). Stop iterating at any time."""
        engine = self._open_engine()
        return pages(engine.send, self._api.file_list_request, self._api.read_file_page)

    def list(
        self,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> AsyncIterator[Prediction]:
        """Every prediction of the account, newest first, page after page
        (``GET /v1/predictions``; list items carry no ``logs``). ``created_after`` and
        ``created_before`` (timezone-aware) narrow it. Stop iterating at any time."""
        engine = self._open_engine()
        self._api.list_request(None, created_after, created_before)  # validates now

        def request(cursor: str | None) -> RequestSpec:
            return self._api.list_request(cursor, created_after, created_before)

        def read(data: dict[str, Any], text: str) -> tuple[list[Prediction], str | None]:
            page, cursor = self._api.read_page(data, text)
            return [replace(item, _downloads=self._downloads) for item in page], cursor

        return pages(engine.send, request, read)


#: The call behind a bare read: the answer names the model and version itself.
_ANY_CALL = PredictionCall(model="", version=None, input={}, kind="text", prompt=None)


def _target(prediction: object) -> str | Prediction:
    if isinstance(prediction, Prediction):
        check_prediction_id(prediction.id)
        return prediction
    return check_prediction_id(prediction)
