"""Replicate's official HTTP API (``api.replicate.com/v1``): requests and responses."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx

from ._api_args import (
    BARE_VERSION,
    MIN_CANCEL_AFTER,
    check_prediction_id,
    check_timestamp,
    parse_model_ref,
)
from ._api_errors import not_found_message, problem_detail
from ._api_urls import acceptable_stream_url, api_root, same_origin
from ._catalog import IMAGE_MODELS, ModelKind
from ._downloads import origin_of
from ._exceptions import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PredictionTimeout,
    RateLimitError,
    ReplicateHomeError,
    ResponseStatusError,
    UploadFailed,
    excerpt,
)
from ._file_inputs import check_input
from ._home import resolve_base_url
from ._model_routes import ModelRoutes
from ._models import Deployment, Prediction
from ._paging import next_cursor, results_of
from ._prompt import Messages, format_prompt
from ._record import prediction_from_object
from ._service import PredictionCall, RequestSpec, Send
from ._uploads import (
    FileEncoding,
    FileGroup,
    UploadCache,
    UploadedFile,
    check_data_size,
    check_file_encoding,
    encode_inputs,
    file_inputs,
    open_source,
    read_uploaded_file,
)
from ._version import __version__

__all__ = [
    "API_IMAGE_MODELS",
    "BASE_URL_ENV",
    "DEFAULT_API_URL",
    "MAX_WAIT",
    "TOKEN_ENV",
    "ApiService",
    "resolve_token",
]

DEFAULT_API_URL = "https://api.replicate.com"
BASE_URL_ENV = "REPLICATE_BASE_URL"
TOKEN_ENV = "REPLICATE_API_TOKEN"

#: The longest Prefer: wait the API honours, in seconds.
MAX_WAIT = 60

#: Models known to produce images. Any other model is followed as a text model, and its
#: output still becomes an ``ImageResponse`` when it turns out to be image files.
API_IMAGE_MODELS = frozenset({*IMAGE_MODELS, "stability-ai/sdxl", "black-forest-labs/flux-schnell"})


def resolve_token(api_token: str | None) -> str:
    """The argument, else ``REPLICATE_API_TOKEN``; none raises :class:`AuthenticationError`."""
    token = api_token if api_token is not None else os.environ.get(TOKEN_ENV, "")
    if not isinstance(token, str):
        raise AuthenticationError("the API token must be a string")
    token = token.strip()
    if not token:
        raise AuthenticationError(f"no Replicate API token: pass api_token= or set ${TOKEN_ENV}")
    return token


class ApiService:
    """Builds the official API's requests and reads its answers."""

    name = "api"
    can_cancel = True
    #: Creates may carry ``webhook`` and ``webhook_events_filter``.
    webhooks = True

    def __init__(
        self,
        api_token: str | None = None,
        base_url: str | None = None,
        file_encoding: FileEncoding = "upload",
    ) -> None:
        self._token = resolve_token(api_token)
        #: How file inputs are sent unless a call says otherwise.
        self.file_encoding: FileEncoding = check_file_encoding(file_encoding) or "upload"
        #: This client's uploads of file inputs, reused by content while they live.
        self.uploads = UploadCache()
        self.base_url = api_root(resolve_base_url(base_url, BASE_URL_ENV, DEFAULT_API_URL))
        self._headers = {
            "authorization": f"Bearer {self._token}",
            "user-agent": f"replicate-home/{__version__}",
            "accept": "application/json",
        }
        self._routes = ModelRoutes()

    def __repr__(self) -> str:
        return f"ApiService(base_url={self.base_url!r})"  # never the token

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def file_auth(self) -> tuple[str, dict[str, str]]:
        """The origin whose files need the token (the API's own: the Files API serves
        uploads there), and the header that carries it. Output files elsewhere
        (``replicate.delivery``) are downloaded with no credentials."""
        return origin_of(httpx.URL(self.base_url)), {
            "authorization": self._headers["authorization"]
        }

    def prepare(
        self,
        model: str | Deployment | None,
        messages: Messages | None,
        prompt: str | None,
        input: Mapping[str, Any] | None = None,
    ) -> PredictionCall:
        ref = parse_model_ref(model)
        if input is not None and not isinstance(input, Mapping):
            raise ValueError(f"input must be a mapping, not {type(input).__name__}")
        values: dict[str, Any] = dict(input or {})
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ValueError(f"prompt must be a string, not {type(prompt).__name__}")
            values["prompt"] = prompt
        elif messages is not None:
            values["prompt"] = format_prompt(messages)
        elif input is None:
            raise ValueError("give messages, prompt or input")
        # JSON values and file inputs (paths, binary files, bytes), checked here; the
        # files are read in resolve(), off the event loop.
        check_input(values)
        text = values.get("prompt")
        kind: ModelKind = "image" if ref.name in API_IMAGE_MODELS else "text"
        return PredictionCall(
            model=ref.display,
            version=ref.version,
            input=values,
            kind=kind,
            prompt=text if isinstance(text, str) else None,
            deployment=ref.deployment,
        )

    def call_for(self, prediction: Prediction | str, *, owned: bool) -> PredictionCall:
        """The call that follows a prediction that already runs (or its id)."""
        if isinstance(prediction, str):
            return PredictionCall(
                model="",
                version=None,
                input={},
                kind="text",
                prompt=None,
                owned=owned,
                existing=check_prediction_id(prediction),
            )
        text = prediction.input.get("prompt")
        return PredictionCall(
            model=prediction.model,
            version=prediction.version,
            input=prediction.input,
            kind="image" if prediction.model in API_IMAGE_MODELS else "text",
            prompt=text if isinstance(text, str) else None,
            owned=owned,
            existing=prediction,
        )

    # -- community models -----------------------------------------------------------

    def _by_model_route(self, call: PredictionCall) -> bool:
        return call.version is None and call.deployment is None

    def attach_files(
        self, call: PredictionCall, file_encoding: object, group: FileGroup | None
    ) -> PredictionCall:
        """``call`` with a per-call ``file_encoding`` and the fan-out's file ``group``;
        ``data`` with files already too large for it is a :class:`FileTooLarge` now,
        before any request."""
        mode = check_file_encoding(file_encoding)
        if (mode or self.file_encoding) == "data":
            check_data_size(call.input)
        return replace(call, file_encoding=mode, files=group)

    async def resolve(self, call: PredictionCall, send: Send) -> PredictionCall:
        """File inputs are uploaded (or become ``data:`` URIs); a community model already
        looked up runs at its latest version."""
        if next(file_inputs(call.input), None) is not None:
            mode = call.file_encoding or self.file_encoding

            async def upload(value: Any) -> tuple[str, int]:
                return await self._upload_input(value, send)

            encoded = await encode_inputs(
                dict(call.input), mode=mode, group=call.files or FileGroup(), upload=upload
            )
            call = replace(call, input=encoded)
        if self._by_model_route(call):

            async def learn() -> bool:
                try:
                    await self._look_up(call.model, send)
                except ReplicateHomeError:
                    return False
                return True

            await self._routes.take_turn(call.model, learn)
            version = self._routes.version(call.model)
            if version is not None:
                return replace(call, version=version)
        return call

    def settled(self, call: PredictionCall, created: bool) -> None:
        """The calls waiting for the first create to a model route go on
        (:class:`~._model_routes.ModelRoutes`)."""
        if self._by_model_route(call):
            self._routes.settled(call.model, created)

    async def _upload_input(self, value: Any, send: Send) -> tuple[str, int]:
        """Upload one file input (unless this client has a live upload of the same
        content) and return its URL and size. A failed upload is :class:`UploadFailed`;
        the call's deadline stays :class:`PredictionTimeout`."""
        source = await anyio.to_thread.run_sync(open_source, value)
        try:

            async def upload() -> UploadedFile:
                spec = self.file_create_request(
                    source.content, source.name, source.content_type, None
                )
                try:
                    return read_uploaded_file(*await send(spec))
                except PredictionTimeout:
                    raise
                except ReplicateHomeError as error:
                    raise UploadFailed(source.name, error) from error

            return await self.uploads.url(source.key, upload), source.size or 0
        finally:
            source.close()

    async def retry_create(
        self, call: PredictionCall, error: ReplicateHomeError, send: Send
    ) -> PredictionCall | None:
        """After the model route refused ``owner/name`` with a 404, the model may be a
        community model (the route serves official models only): look it up once per
        client (``GET /v1/models/{owner}/{name}``) and run it at ``latest_version``.
        ``None``: the error stands (an official model, or no version to run)."""
        if not (
            self._by_model_route(call)
            and isinstance(error, ResponseStatusError)
            and error.status_code == 404
        ):
            return None
        version = await self._look_up(call.model, send)
        return None if version is None else replace(call, version=version)

    async def _look_up(self, model: str, send: Send) -> str | None:
        """The latest version of a community model (``None`` for an official one), from
        one request per client."""

        async def fetch(model: str) -> str | None:
            owner, name = model.split("/", 1)
            url = f"{self.base_url}/v1/models/{quote(owner)}/{quote(name)}"
            data, _ = await send(RequestSpec("GET", url, headers=self._headers))
            return _community_version(data)

        return await self._routes.look_up(model, fetch)

    def create_request(
        self, call: PredictionCall, *, remaining: float, wait: float | None
    ) -> RequestSpec:
        if call.training:
            return self._training_request(call)
        headers = dict(self._headers)
        headers["content-type"] = "application/json"
        cancel_after = call.cancel_after
        if cancel_after is None and call.owned:
            cancel_after = remaining
        if cancel_after is not None:
            headers["cancel-after"] = f"{max(MIN_CANCEL_AFTER, math.ceil(cancel_after))}s"
        if wait is not None and self._by_model_route(call) and not self._routes.known(call.model):
            # The create that learns whether the route serves the model, held: the calls
            # of the same model learn it from the look-up instead (ModelRoutes).
            self._routes.holding(call.model)
        if wait is not None:
            seconds = max(1, min(MAX_WAIT, math.ceil(min(wait, remaining))))
            headers["prefer"] = f"wait={seconds}"
        body: dict[str, Any] = {"input": dict(call.input)}
        if call.webhook is not None:
            body["webhook"] = call.webhook
            if call.webhook_events_filter is not None:
                body["webhook_events_filter"] = list(call.webhook_events_filter)
        if call.deployment is not None:
            owner, name = call.deployment.split("/", 1)
            url = f"{self.base_url}/v1/deployments/{quote(owner)}/{quote(name)}/predictions"
        elif call.version is not None:
            body["version"] = call.version
            url = f"{self.base_url}/v1/predictions"
        else:
            owner, name = call.model.split("/", 1)
            url = f"{self.base_url}/v1/models/{quote(owner)}/{quote(name)}/predictions"
        return RequestSpec("POST", url, json=body, headers=headers)

    def _training_request(self, call: PredictionCall) -> RequestSpec:
        """``POST /v1/models/{owner}/{name}/versions/{id}/trainings``: no ``Prefer:
        wait`` (a training never answers with its result) and no ``Cancel-After``
        (the trainings endpoint does not document one)."""
        assert call.destination is not None
        assert call.version is not None
        owner, name = call.model.split("/", 1)
        body: dict[str, Any] = {"destination": call.destination, "input": dict(call.input)}
        if call.webhook is not None:
            body["webhook"] = call.webhook
            if call.webhook_events_filter is not None:
                body["webhook_events_filter"] = list(call.webhook_events_filter)
        return self.request(
            "POST", "models", owner, name, "versions", call.version, "trainings", json=body
        )

    def training_urls(self, training_id: str) -> dict[str, str]:
        """Where a training is read and cancelled: always this client's own URLs, never
        the ones an answer names."""
        url = f"{self.base_url}/v1/trainings/{quote(training_id, safe='')}"
        return {"get": url, "cancel": f"{url}/cancel"}

    # -- handles --------------------------------------------------------------------

    def get_request(self, prediction_id: str) -> RequestSpec:
        """``GET /v1/predictions/{id}``."""
        url = f"{self.base_url}/v1/predictions/{quote(prediction_id, safe='')}"
        return RequestSpec("GET", url, headers=self._headers)

    def cancel_by_id_request(self, prediction_id: str) -> RequestSpec:
        """``POST /v1/predictions/{id}/cancel``."""
        url = f"{self.base_url}/v1/predictions/{quote(prediction_id, safe='')}/cancel"
        return RequestSpec("POST", url, headers=self._headers)

    def list_request(
        self,
        cursor: str | None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> RequestSpec:
        """One page of ``GET /v1/predictions``. The next page's URL is never taken from
        an answer as it is: only its ``cursor`` is, on this client's own URL."""
        query: dict[str, str] = {}
        if created_after is not None:
            query["created_after"] = check_timestamp(created_after, "created_after")
        if created_before is not None:
            query["created_before"] = check_timestamp(created_before, "created_before")
        if cursor is not None:
            query["cursor"] = cursor
        url = f"{self.base_url}/v1/predictions"
        if query:
            url += "?" + urlencode(query)
        return RequestSpec("GET", url, headers=self._headers)

    def read_page(self, data: dict[str, Any], text: str) -> tuple[list[Prediction], str | None]:
        """A page of a listing: its predictions and the cursor of the next page."""
        call = PredictionCall(model="", version=None, input={}, kind="text", prompt=None)
        page = [
            self.read_prediction(item, text, call=call, known_id=None)
            for item in results_of(data, text)
        ]
        return page, next_cursor(data.get("next"))

    def file_create_request(
        self, content: Any, filename: str, content_type: str, metadata: Any
    ) -> RequestSpec:
        """``POST /v1/files``: a multipart upload (``content``, ``metadata``). The
        content type header is httpx's, with the multipart boundary."""
        data = {} if metadata is None else {"metadata": json.dumps(metadata)}
        return RequestSpec(
            "POST",
            f"{self.base_url}/v1/files",
            files={"content": (filename, content, content_type)},
            data=data,
            headers=self._headers,
        )

    def file_request(self, method: str, file_id: str) -> RequestSpec:
        """``GET`` or ``DELETE /v1/files/{id}``."""
        if not isinstance(file_id, str) or not file_id:
            raise ValueError("a file id must be a non-empty string")
        url = f"{self.base_url}/v1/files/{quote(file_id, safe='')}"
        return RequestSpec(method, url, headers=self._headers, expect_body=method != "DELETE")

    def file_list_request(self, cursor: str | None) -> RequestSpec:
        """One page of ``GET /v1/files`` (only the ``cursor`` of an answer's ``next``)."""
        query = "" if cursor is None else "?" + urlencode({"cursor": cursor})
        return RequestSpec("GET", f"{self.base_url}/v1/files{query}", headers=self._headers)

    def read_file_page(
        self, data: dict[str, Any], text: str
    ) -> tuple[list[UploadedFile], str | None]:
        """A page of ``GET /v1/files``: its files and the next page's cursor."""
        page = [read_uploaded_file(item, text) for item in results_of(data, text)]
        return page, next_cursor(data.get("next"))

    def request(
        self,
        method: str,
        *segments: str,
        query: Mapping[str, str] | None = None,
        json: Any = None,
        expect_body: bool = True,
        text_body: bool = False,
    ) -> RequestSpec:
        """A request to ``/v1/`` and the path ``segments`` (each quoted as one
        segment) on this client's own URL, with its credentials."""
        path = "/".join(quote(segment, safe="") for segment in segments)
        url = f"{self.base_url}/v1/{path}"
        if query:
            url += "?" + urlencode(dict(query))
        headers = dict(self._headers)
        if json is not None:
            headers["content-type"] = "application/json"
        return RequestSpec(
            method,
            url,
            json=json,
            headers=headers,
            expect_body=expect_body,
            text_body=text_body,
        )

    def webhook_secret_request(self) -> RequestSpec:
        """``GET /v1/webhooks/default/secret``."""
        return RequestSpec(
            "GET", f"{self.base_url}/v1/webhooks/default/secret", headers=self._headers
        )

    def _prediction_url(self, prediction: Prediction, key: str, suffix: str) -> str:
        url = prediction.urls.get(key)
        if url and same_origin(url, self.base_url):
            return url
        return f"{self.base_url}/v1/predictions/{quote(prediction.id, safe='')}{suffix}"

    def poll_request(self, prediction: Prediction) -> RequestSpec:
        return RequestSpec(
            "GET", self._prediction_url(prediction, "get", ""), headers=self._headers
        )

    def stream_request(self, prediction: Prediction) -> RequestSpec | None:
        """The stream wherever ``urls.stream`` points (Replicate serves streams from hosts
        of their own). Its URL is a capability: only the API's own origin is sent the
        token, any other stream host gets no credential at all."""
        url = prediction.urls.get("stream")
        if not url or not acceptable_stream_url(url, self.base_url):
            return None
        stream_headers = {"accept": "text/event-stream", "cache-control": "no-store"}
        if same_origin(url, self.base_url):
            return RequestSpec("GET", url, headers={**self._headers, **stream_headers})
        headers = {"user-agent": self._headers["user-agent"], **stream_headers}
        return RequestSpec("GET", url, headers=headers, anonymous=True)

    def cancel_request(self, prediction: Prediction) -> RequestSpec | None:
        url = self._prediction_url(prediction, "cancel", "/cancel")
        return RequestSpec("POST", url, headers=self._headers)

    def read_prediction(
        self, data: dict[str, Any], text: str, *, call: PredictionCall, known_id: str | None
    ) -> Prediction:
        prediction = prediction_from_object(
            data, text, model=call.model, version=call.version, known_id=known_id
        )
        if call.training:  # read and cancelled at /v1/trainings, no stream
            web = {k: v for k, v in prediction.urls.items() if k == "web"}
            prediction = replace(prediction, urls={**web, **self.training_urls(prediction.id)})
        return prediction

    def error_for(
        self, status_code: int, text: str, url: str, retry_after: float | None
    ) -> ReplicateHomeError:
        detail = problem_detail(text)
        if status_code in (401, 403):
            return AuthenticationError(
                f"the API refused the token (HTTP {status_code}): {detail or 'unauthorised'}",
                status_code,
            )
        if status_code == 422:
            return InvalidInputError(status_code, text, url, detail or excerpt(text))
        if status_code == 429:
            return RateLimitError(status_code, text, url, retry_after)
        if status_code == 404:
            message = not_found_message(url, detail)
            return NotFoundError(status_code, text, url, message=message)
        return ResponseStatusError(status_code, text, url, message=detail or None)


def _community_version(model: dict[str, Any]) -> str | None:
    """The version to run a model at: ``None`` for an official model (the model route
    runs it), else ``latest_version.id``."""
    if model.get("is_official") is True:
        return None
    latest = model.get("latest_version")
    version = latest.get("id") if isinstance(latest, dict) else None
    if isinstance(version, str) and BARE_VERSION.match(version):
        return version
    return None
