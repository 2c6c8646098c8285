"""The homepage service (``homepage.replicate.com``): the original provider's endpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ._catalog import MODEL_VERSIONS, model_kind, resolve_model
from ._decode import require_string
from ._exceptions import NotFoundError, RateLimitError, ReplicateHomeError, ResponseStatusError
from ._models import Deployment, Prediction
from ._prompt import Messages, format_prompt, last_message_content
from ._service import PredictionCall, RequestSpec, Send

__all__ = ["DEFAULT_BASE_URL", "HomeService", "resolve_base_url"]

DEFAULT_BASE_URL = "https://homepage.replicate.com"
BASE_URL_ENV = "REPLICATE_HOME_BASE_URL"

#: The browser-like headers the original provider sent; the endpoint expects a page origin.
BROWSER_HEADERS = {
    "accept": "*/*",
    "accept-language": "en-US,en;q=0.9",
    "content-type": "application/json",
    "origin": "https://replicate.com",
    "referer": "https://replicate.com/",
    "user-agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/128.0.0.0 Safari/537.36"
    ),
}


def resolve_base_url(base_url: str | None, env: str, default: str) -> str:
    """The argument, else the environment variable ``env``, else ``default``; validated."""
    chosen = base_url if base_url is not None else os.environ.get(env) or default
    if not isinstance(chosen, str):
        raise ValueError(f"base_url must be a string, not {type(chosen).__name__}")
    parts = urlsplit(chosen.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http:// or https:// URL, not {chosen!r}")
    return chosen.strip().rstrip("/")


class HomeService:
    """Builds the homepage endpoint's requests and reads its answers."""

    name = "home"
    can_cancel = False
    secrets: tuple[str, ...] = ()

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = resolve_base_url(base_url, BASE_URL_ENV, DEFAULT_BASE_URL)

    def __repr__(self) -> str:
        return f"HomeService(base_url={self.base_url!r})"

    def prepare(
        self,
        model: str | Deployment | None,
        messages: Messages | None,
        prompt: str | None,
        input: Mapping[str, Any] | None = None,
    ) -> PredictionCall:
        if isinstance(model, Deployment):
            raise ValueError("deployments run on the official API: use ReplicateAPI")
        if input is not None:
            raise ValueError(
                "the homepage service takes only a prompt; use ReplicateAPI for model inputs"
            )
        resolved = resolve_model(model)
        kind = model_kind(resolved)
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ValueError(f"prompt must be a string, not {type(prompt).__name__}")
            text = prompt
        elif messages is None:
            raise ValueError("give messages or prompt")
        elif kind == "image":
            text = last_message_content(messages)
        else:
            text = format_prompt(messages)
        if not text.strip():
            raise ValueError("the prompt is empty")
        return PredictionCall(
            model=resolved,
            version=MODEL_VERSIONS[resolved],
            input={"prompt": text},
            kind=kind,
            prompt=text,
        )

    async def resolve(self, call: PredictionCall, send: Send) -> PredictionCall:
        return call

    async def retry_create(
        self, call: PredictionCall, error: ReplicateHomeError, send: Send
    ) -> PredictionCall | None:
        return None

    def settled(self, call: PredictionCall, created: bool) -> None:
        return None

    def create_request(
        self, call: PredictionCall, *, remaining: float, wait: float | None
    ) -> RequestSpec:
        return RequestSpec(
            "POST",
            f"{self.base_url}/api/prediction",
            json={"model": call.model, "version": call.version, "input": dict(call.input)},
            headers=BROWSER_HEADERS,
        )

    def poll_request(self, prediction: Prediction) -> RequestSpec:
        return RequestSpec(
            "GET",
            f"{self.base_url}/api/poll?id={quote(prediction.id, safe='')}",
            headers=BROWSER_HEADERS,
        )

    def stream_request(self, prediction: Prediction) -> RequestSpec | None:
        return None  # the homepage endpoint has no event stream

    def cancel_request(self, prediction: Prediction) -> RequestSpec | None:
        return None  # the homepage endpoint has no way to cancel

    def read_prediction(
        self, data: dict[str, Any], text: str, *, call: PredictionCall, known_id: str | None
    ) -> Prediction:
        if known_id is None:
            prediction_id = require_string(data, "id", text)
            status = require_string(data, "status", text) if "status" in data else "starting"
        else:
            status = require_string(data, "status", text)
            prediction_id = known_id
        return Prediction(
            id=prediction_id,
            model=call.model,
            version=call.version,
            status=status,
            output=data.get("output"),
            error=data.get("error"),
        )

    def error_for(
        self, status_code: int, text: str, url: str, retry_after: float | None
    ) -> ReplicateHomeError:
        if status_code == 429:
            return RateLimitError(status_code, text, url, retry_after)
        if status_code == 404:
            return NotFoundError(status_code, text, url)
        return ResponseStatusError(status_code, text, url)
