"""What the ``/v1`` route modules share: the settings of the API, its gate (the token and
the rate limits every route of the main origin checks first), the common error answers,
``owner/name`` parsing and the rendering of prediction objects."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._account_models import ACCOUNT_NAME
from ._api_rules import TokenBucket, api_object, quirky_json
from ._responses import json_bytes, problem
from ._scenarios import FileOutput
from ._simulation import Prediction
from ._state import EmulatorState
from ._validation import InvalidField, problem_fields

__all__ = [
    "ACCOUNT",
    "EMULATOR_ACCOUNT",
    "JSON",
    "NAME",
    "ApiGate",
    "ApiSettings",
    "encode_prediction",
    "invalid",
    "model_name",
    "not_found",
    "prediction_object",
    "validation_failed",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
JSON = "application/json"
#: The account every token belongs to (the real API's ``GET /v1/account`` fields). It has
#: no avatar and no GitHub account: the real API leaves such fields out (they are
#: described as strings, never null).
ACCOUNT: dict[str, Any] = {
    "type": "user",
    "username": ACCOUNT_NAME,
    "name": "Replicate Home Emulator",
}
#: The account the emulator's token belongs to: deployments created over HTTP are its.
EMULATOR_ACCOUNT = str(ACCOUNT["username"])


@dataclass(frozen=True)
class ApiSettings:
    """How one emulator's ``/v1`` API behaves (see :class:`Emulator`'s arguments)."""

    token: str | None
    """The only token accepted, or ``None``: any non-empty one."""
    rate_limits: tuple[TokenBucket, TokenBucket] | None
    """The buckets of creates and of other requests, or ``None``: no limits."""
    page_size: int
    file_output: FileOutput
    webhook_secret: str


class ApiGate:
    """The 401 or 429 answer to a ``/v1`` request, if it gets one: the token the request
    carries, then the rate limit of its kind (counted in ``state.throttled``)."""

    def __init__(self, settings: ApiSettings, state: EmulatorState) -> None:
        self._settings = settings
        self._state = state

    async def check_create(self, request: Request) -> Response | None:
        """:meth:`check` for a create, after its body has arrived: an answer sent while
        hypercorn has not yet read the end of the request makes it close the connection,
        and a client that reuses it (keep-alive) sees "disconnected without a response"."""
        await request.body()  # kept by Starlette for the create itself
        return self.check(request, create=True)

    def check(self, request: Request, *, create: bool = False) -> Response | None:
        """The 401 or 429 answer to a request, if it gets one."""
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        # Both schemes the real API accepts: ``Bearer`` and the older, still documented
        # ``Token`` (which LiteLLM and other clients send).
        known_scheme = scheme.lower() in ("bearer", "token")
        if not header or (known_scheme and not credentials):
            return problem(
                401,
                "Unauthenticated",
                "You did not pass an authentication token",
                headers={"www-authenticate": "Bearer"},
            )
        expected = self._settings.token
        if not known_scheme or (
            expected is not None
            and not secrets.compare_digest(credentials.encode(), expected.encode())
        ):
            return problem(
                401,
                "Unauthenticated",
                "You did not pass a valid authentication token",
                headers={"www-authenticate": "Bearer"},
            )
        buckets = self._settings.rate_limits
        if buckets is not None:
            bucket = buckets[0 if create else 1]
            wait = bucket.take(self._state.now())
            if wait > 0:
                self._state.throttled += 1
                retry_after = max(1, math.ceil(wait))
                kind = "creating predictions" if create else "this kind of request"
                return problem(
                    429,
                    "Request was throttled",
                    f"Request was throttled. Your rate limit for {kind} is "
                    f"{bucket.per_minute} requests per minute with a burst of {bucket.burst}. "
                    f"Expected available in {retry_after} second(s).",
                    headers={"retry-after": str(retry_after)},
                    retry_after=retry_after,
                )
        return None


def invalid(description: str, *, field: str = "", kind: str = "invalid") -> Response:
    """The real API's 422 for one invalid field of a create's body."""
    return validation_failed([InvalidField(kind, field, description)])


def validation_failed(problems: list[InvalidField]) -> Response:
    """The real API's 422: ``detail`` lists the problems, ``invalid_fields`` holds them."""
    detail, fields = problem_fields(problems)
    return problem(422, "Input validation failed", detail, invalid_fields=fields)


def not_found(what: str) -> Response:
    """The ``/v1`` 404 for a thing the request names."""
    return problem(404, "Not found", f"{what} not found")


def model_name(owner: str, name: str) -> str | None:
    """``owner/name`` if both parts are valid names, else ``None``."""
    if NAME.fullmatch(owner) and NAME.fullmatch(name):
        return f"{owner}/{name}"
    return None


def prediction_object(
    request: Request,
    pred: Prediction,
    now: float,
    state: EmulatorState,
    settings: ApiSettings,
    *,
    as_created: bool = False,
) -> dict[str, Any]:
    """The ``/v1`` prediction object of ``pred`` at ``now``: its URLs on the request's
    origin, its output stream on the stream origin while ``state`` serves one, image
    outputs as ``settings.file_output`` says."""
    base = str(request.base_url).rstrip("/")
    return api_object(
        base,
        pred,
        now,
        as_created=as_created,
        stream_url=state.stream_url,
        file_output=settings.file_output,
    )


def encode_prediction(pred: Prediction, obj: dict[str, Any]) -> bytes:
    """A prediction object as JSON text, with the real API's quirks if its scenario has
    them."""
    return quirky_json(obj, pred.kind) if pred.scenario.quirks else json_bytes(obj)
