"""Replicate's official HTTP API (``api.replicate.com/v1``): requests and responses."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ._catalog import IMAGE_MODELS, MODEL_ALIASES, MODEL_VERSIONS, ModelKind
from ._decode import require_string
from ._exceptions import (
    AuthenticationError,
    InvalidInputError,
    RateLimitError,
    ReplicateHomeError,
    ResponseStatusError,
    excerpt,
)
from ._home import resolve_base_url
from ._models import Prediction
from ._prompt import Messages, format_prompt
from ._service import PredictionCall, RequestSpec, Send
from ._version import __version__

__all__ = ["DEFAULT_API_URL", "ApiService", "ModelRef", "parse_model_ref", "resolve_token"]

DEFAULT_API_URL = "https://api.replicate.com"
BASE_URL_ENV = "REPLICATE_BASE_URL"
TOKEN_ENV = "REPLICATE_API_TOKEN"

#: The shortest Cancel-After the API accepts, in seconds.
MIN_CANCEL_AFTER = 5
#: The longest Prefer: wait the API honours, in seconds.
MAX_WAIT = 60

#: Models known to produce images. Any other model is followed as a text model, and its
#: output still becomes an ``ImageResponse`` when it turns out to be image files.
API_IMAGE_MODELS = frozenset({*IMAGE_MODELS, "stability-ai/sdxl", "black-forest-labs/flux-schnell"})

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_VERSION = r"[0-9a-f]{64}"
_MODEL_REF = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?::(?P<version>{_VERSION}))?$")
_BARE_VERSION = re.compile(rf"^{_VERSION}$")
_PREDICTION_PATH = re.compile(r"/v1/predictions/(?P<id>[^/]+)")
_MODEL_PATH = re.compile(r"/v1/models/(?P<model>[^/]+/[^/]+)")


class ModelRef:
    """A parsed model reference: ``owner/name``, ``owner/name:version`` or a version id."""

    __slots__ = ("name", "version")

    def __init__(self, name: str | None, version: str | None) -> None:
        self.name = name
        self.version = version

    @property
    def display(self) -> str:
        """How events and results name the model."""
        if self.name is None:
            return self.version or ""
        return self.name


def parse_model_ref(model: object) -> ModelRef:
    """Parse a model reference; aliases of the homepage models are accepted too.

    The homepage models resolve to their pinned versions. Anything else malformed raises
    ``ValueError`` before any request is sent.
    """
    if not isinstance(model, str) or not model:
        raise ValueError("model must be 'owner/name', 'owner/name:version' or a version id")
    model = MODEL_ALIASES.get(model, model)
    if _BARE_VERSION.match(model):
        return ModelRef(None, model)
    match = _MODEL_REF.match(model)
    if match is None:
        raise ValueError(
            f"malformed model reference {model!r}: use 'owner/name', "
            "'owner/name:<64-hex version id>' or a version id"
        )
    name = f"{match['owner']}/{match['name']}"
    return ModelRef(name, match["version"] or MODEL_VERSIONS.get(name))


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

    def __init__(self, api_token: str | None = None, base_url: str | None = None) -> None:
        self._token = resolve_token(api_token)
        self.base_url = resolve_base_url(base_url, BASE_URL_ENV, DEFAULT_API_URL)
        self._headers = {
            "authorization": f"Bearer {self._token}",
            "user-agent": f"replicate-home/{__version__}",
            "accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"ApiService(base_url={self.base_url!r})"  # never the token

    def prepare(
        self,
        model: str | None,
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
        try:
            json.dumps(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"input must be JSON-serialisable: {error}") from None
        text = values.get("prompt")
        kind: ModelKind = "image" if ref.name in API_IMAGE_MODELS else "text"
        return PredictionCall(
            model=ref.display,
            version=ref.version,
            input=values,
            kind=kind,
            prompt=text if isinstance(text, str) else None,
        )

    async def resolve(self, call: PredictionCall, send: Send) -> PredictionCall:
        return call

    def create_request(
        self, call: PredictionCall, *, remaining: float, wait: float | None
    ) -> RequestSpec:
        headers = dict(self._headers)
        headers["content-type"] = "application/json"
        headers["cancel-after"] = f"{max(MIN_CANCEL_AFTER, math.ceil(remaining))}s"
        if wait is not None:
            seconds = max(1, min(MAX_WAIT, math.ceil(min(wait, remaining))))
            headers["prefer"] = f"wait={seconds}"
        body: dict[str, Any] = {"input": dict(call.input)}
        if call.version is not None:
            body["version"] = call.version
            url = f"{self.base_url}/v1/predictions"
        else:
            owner, name = call.model.split("/", 1)
            url = f"{self.base_url}/v1/models/{quote(owner)}/{quote(name)}/predictions"
        return RequestSpec("POST", url, json=body, headers=headers)

    def _prediction_url(self, prediction: Prediction, key: str, suffix: str) -> str:
        url = prediction.urls.get(key)
        if url and _same_origin(url, self.base_url):
            return url
        return f"{self.base_url}/v1/predictions/{quote(prediction.id, safe='')}{suffix}"

    def poll_request(self, prediction: Prediction) -> RequestSpec:
        return RequestSpec(
            "GET", self._prediction_url(prediction, "get", ""), headers=self._headers
        )

    def stream_request(self, prediction: Prediction) -> RequestSpec | None:
        url = prediction.urls.get("stream")
        if not url or not _same_origin(url, self.base_url):
            # A stream elsewhere would need the token sent to another host: poll instead.
            return None
        headers = {**self._headers, "accept": "text/event-stream", "cache-control": "no-store"}
        return RequestSpec("GET", url, headers=headers)

    def cancel_request(self, prediction: Prediction) -> RequestSpec | None:
        url = self._prediction_url(prediction, "cancel", "/cancel")
        return RequestSpec("POST", url, headers=self._headers)

    def read_prediction(
        self, data: dict[str, Any], text: str, *, call: PredictionCall, known_id: str | None
    ) -> Prediction:
        prediction_id = require_string(data, "id", text) if known_id is None else known_id
        status = require_string(data, "status", text)
        urls = data.get("urls")
        model, version = data.get("model"), data.get("version")
        return Prediction(
            id=prediction_id,
            model=model if isinstance(model, str) and model else call.model,
            version=version if isinstance(version, str) and version else call.version,
            status=status,
            output=data.get("output"),
            error=data.get("error"),
            urls={k: v for k, v in urls.items() if isinstance(v, str)}
            if isinstance(urls, dict)
            else {},
        )

    def error_for(
        self, status_code: int, text: str, url: str, retry_after: float | None
    ) -> ReplicateHomeError:
        detail = _problem_detail(text)
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
            return ResponseStatusError(status_code, text, url, message=_not_found(url, detail))
        return ResponseStatusError(status_code, text, url, message=detail or None)


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _problem_detail(text: str) -> str:
    """The ``detail`` (or ``title``) of a problem-JSON body; empty if there is none."""
    try:
        problem = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(problem, dict):
        return ""
    for key in ("detail", "title"):
        value = problem.get(key)
        if isinstance(value, str) and value:
            return excerpt(value)
    return ""


def _not_found(url: str, detail: str) -> str:
    path = urlsplit(url).path
    suffix = f" ({detail})" if detail else ""
    if match := _PREDICTION_PATH.search(path):
        return f"prediction {match['id']} not found{suffix}"
    if match := _MODEL_PATH.search(path):
        return f"model {match['model']} not found{suffix}"
    return f"not found{suffix}"
