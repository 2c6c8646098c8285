"""Pure rules of the emulated ``/v1`` API: header grammars, rate limits, cursors, wire
formats and the API's objects (predictions, models, versions, deployments).

No I/O and no HTTP framework here: the ``/v1`` route modules and the webhook sender call
these.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from ._catalogue import ModelInfo
from ._scenarios import FileOutput
from ._schemas import TEXT_KINDS, input_schema, output_schema
from ._simulation import Prediction, StreamEvent, render

__all__ = [
    "MIN_CANCEL_AFTER",
    "TokenBucket",
    "api_object",
    "decode_cursor",
    "deployment_object",
    "encode_cursor",
    "format_event",
    "model_description",
    "model_object",
    "parse_cancel_after",
    "parse_prefer_wait",
    "parse_timestamp",
    "quirky_json",
    "version_object",
]

#: The shortest ``Cancel-After`` deadline the API accepts, in seconds.
MIN_CANCEL_AFTER = 5.0
#: ``Prefer: wait`` without a number waits this long, and no wait is longer.
MAX_WAIT = 60

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_PLAIN_SECONDS = re.compile(_NUMBER)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_WAIT = re.compile(r"wait(?:\s*=\s*(\S*))?", re.IGNORECASE)


def parse_cancel_after(value: str) -> float:
    """Seconds of a ``Cancel-After`` header: ``5s``, ``1m30s``, ``2h``, ``1.5m`` or plain
    seconds (``90``). Raises ``ValueError`` when malformed or under :data:`MIN_CANCEL_AFTER`.
    """
    text = value.strip()
    if _PLAIN_SECONDS.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
        )
    else:
        raise ValueError(
            f"Cancel-After must be a duration like 30s, 1m30s or 2h, or plain seconds; "
            f"got {value!r}"
        )
    if not math.isfinite(seconds) or seconds < MIN_CANCEL_AFTER:
        raise ValueError(
            f"Cancel-After must be at least {MIN_CANCEL_AFTER:g} seconds; got {value!r}"
        )
    return seconds


_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,12}))?(Z|z|[+-]\d{2}:\d{2})?"
)


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 date-time of a query (UTC without an offset), or ``None`` if malformed."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    zone = match[3] if match[3] not in (None, "Z", "z") else "+00:00"
    try:
        moment = datetime.fromisoformat(f"{match[1]}.{fraction}{zone}")
    except ValueError:
        return None
    return moment.astimezone(timezone.utc)


def parse_prefer_wait(value: str | None) -> int | None:
    """Seconds to hold a create for, from its ``Prefer`` header; ``None``: answer at once.

    ``wait`` means :data:`MAX_WAIT` seconds, ``wait=n`` n seconds (an integer from 1 to 60).
    Other preferences are ignored, as RFC 7240 asks; a ``wait`` with a bad value raises
    ``ValueError``.
    """
    if value is None:
        return None
    for preference in value.split(","):
        token = preference.split(";", 1)[0].strip()
        match = _WAIT.fullmatch(token)
        if match is None:
            continue
        raw = match.group(1)
        if raw is None:
            return MAX_WAIT
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_WAIT:
            raise ValueError(
                f"Prefer: wait=n needs a whole number of seconds from 1 to {MAX_WAIT}; "
                f"got {preference.strip()!r}"
            )
        return int(raw)
    return None


class TokenBucket:
    """A token bucket: ``per_minute`` requests a minute on average, bursts of ``burst``.

    Times are seconds on any monotonic clock.
    """

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
            raise ValueError(f"a rate limit must be a positive int, got {per_minute!r}")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        #: Default burst: one second's worth of requests, at least one.
        self.burst = max(1, math.ceil(self.rate)) if burst is None else burst
        self._tokens = float(self.burst)
        self._last: float | None = None

    def take(self, now: float) -> float:
        """Spend a token at ``now`` if there is one (answer 0), else answer the seconds until
        there is one (nothing is spent)."""
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def encode_cursor(direction: str, number: int) -> str:
    """An opaque pagination cursor: ``direction`` ``"n"`` (older than) or ``"p"`` (newer than)
    the prediction with creation ``number``."""
    raw = f"{direction}:{number}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The ``(direction, number)`` of a cursor from :func:`encode_cursor`; ``ValueError`` if bad."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid cursor {cursor!r}") from None
    direction, _, number = raw.partition(":")
    if direction not in ("n", "p") or not number.isdigit():
        raise ValueError(f"invalid cursor {cursor!r}")
    return direction, int(number)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def format_event(event: StreamEvent) -> bytes:
    """One server-sent event on the wire: ``event``, ``id``, then one ``data`` line per line
    of its data (so that a client joining them with ``\\n`` gets the data back)."""
    lines = [f"event: {event.event}", f"id: {event.id}"]
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(event.data))
    return ("\n".join(lines) + "\n\n").encode()


# --------------------------------------------------------------------------- models


_VERSION_CREATED_AT = "2024-01-01T00:00:00.000000Z"
_COG_VERSION = "0.9.0"


def _openapi_schema(kind: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/predictions": {
                "post": {
                    "summary": "Predict",
                    "operationId": "predict_predictions_post",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictionRequest"}
                            }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "Successful Response",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/PredictionResponse"}
                                }
                            },
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Input": input_schema(kind),
                "Output": output_schema(kind),
                "Status": {
                    "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
                    "type": "string",
                    "title": "Status",
                    "description": "An enumeration.",
                },
                "PredictionRequest": {
                    "type": "object",
                    "title": "PredictionRequest",
                    "properties": {
                        "id": {"type": "string", "title": "Id"},
                        "input": {"$ref": "#/components/schemas/Input"},
                    },
                },
                "PredictionResponse": {
                    "type": "object",
                    "title": "PredictionResponse",
                    "properties": {
                        "id": {"type": "string", "title": "Id"},
                        "input": {"$ref": "#/components/schemas/Input"},
                        "output": {"$ref": "#/components/schemas/Output"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "logs": {"type": "string", "title": "Logs", "default": ""},
                        "error": {"type": "string", "title": "Error"},
                        "metrics": {"type": "object", "title": "Metrics"},
                    },
                },
            }
        },
    }


def version_object(info: ModelInfo, created_at: str | None = None) -> dict[str, Any]:
    """The version object of a model (``GET /v1/models/{owner}/{name}/versions/{id}``);
    ``created_at`` for a version the emulator made (a trained one)."""
    return {
        "id": info.version,
        "created_at": created_at or _VERSION_CREATED_AT,
        "cog_version": _COG_VERSION,
        "openapi_schema": _openapi_schema(info.kind),
    }


_KIND_DESCRIPTIONS = {
    "text": "text-generation",
    "image": "text-to-image",
    "upscale": "image upscaling",
    "image-to-image": "image-to-image",
    "speech-to-text": "speech-to-text",
    "video": "text-to-video",
    "vision": "image-to-text",
}


def model_description(info: ModelInfo) -> str:
    """The description of one of the emulator's catalogue models (what it does)."""
    return f"An emulated {_KIND_DESCRIPTIONS[info.kind]} model"


def model_object(model: str, info: ModelInfo, run_count: int) -> dict[str, Any]:
    """The model object of ``owner/name`` (``GET /v1/models/{owner}/{name}``)."""
    owner, name = model.split("/", 1)
    return {
        "url": f"https://replicate.com/{model}",
        "owner": owner,
        "name": name,
        "description": model_description(info),
        "visibility": "public",
        "is_official": info.official,
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": run_count,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_object(info),
    }


def deployment_object(
    name: str, model: str, version: str, release: int, configuration: dict[str, Any]
) -> dict[str, Any]:
    """The deployment object of ``owner/name`` (``GET /v1/deployments/{owner}/{name}``)."""
    owner, deployment = name.split("/", 1)
    return {
        "owner": owner,
        "name": deployment,
        "current_release": {
            "number": release,
            "model": model,
            "version": version,
            "created_at": _VERSION_CREATED_AT,
            "created_by": {"type": "organization", "username": owner, "name": owner},
            "configuration": configuration,
        },
    }


# --------------------------------------------------------------------------- quirks


def quirky_json(obj: dict[str, Any], kind: str) -> bytes:
    """``obj`` (a prediction object) as the real API sometimes writes it: ``logs: null``
    while there are none, extra unknown fields, a richer ``metrics`` object, and the ``id``
    key twice in the JSON text (both with the same value)."""
    quirky = dict(obj)
    if not quirky.get("logs"):
        quirky["logs"] = None
    metrics = dict(quirky.get("metrics") or {})
    if "predict_time" in metrics:
        metrics.setdefault("total_time", round(metrics["predict_time"] + 0.05, 6))
        output = quirky.get("output")
        if kind in TEXT_KINDS:
            produced = len(output) if isinstance(output, list) else 1
            metrics["input_token_count"] = len(
                str(quirky.get("input", {}).get("prompt", "")).split()
            )
            metrics["output_token_count"] = produced
            metrics["time_to_first_token"] = 0.01
        elif kind == "image":
            metrics["image_count"] = len(output) if isinstance(output, list) else 1
    quirky["metrics"] = metrics
    quirky["source"] = "api"
    quirky["webhook_completed"] = None
    quirky["deployment"] = None
    quirky["x_emulator"] = {"note": "an unknown field", "nested": [1, {"deep": True}]}
    text = json.dumps(quirky, ensure_ascii=False, separators=(",", ":"))
    duplicate = json.dumps(quirky["id"])
    return ('{"id":' + duplicate + "," + text[1:]).encode()


def api_object(
    base: str,
    pred: Prediction,
    now: float,
    *,
    as_created: bool = False,
    stream_url: str | None = None,
    file_output: FileOutput = "data",
) -> dict[str, Any]:
    """The ``/v1`` prediction object of ``pred`` at ``now``: its URLs under ``base``, its
    output stream under ``stream_url`` (the stream origin) if it has one, image outputs
    as ``file_output`` says where the scenario does not."""
    obj = render(
        pred,
        now,
        file_url=lambda prediction_id, name: f"{base}/_emulator/files/{prediction_id}/{name}",
        as_created=as_created,
        file_output=file_output,
    )
    for moment in ("started_at", "completed_at"):
        # Left out until they happen, as the real API answers (never null).
        if obj[moment] is None:
            del obj[moment]
    if pred.is_terminal(now) and not as_created:
        # Documented beside predict_time: from creation to the terminal status.
        obj["metrics"]["total_time"] = round(pred.end_time - pred.created, 6)
    path = "trainings" if pred.training is not None else "predictions"
    urls = {
        "cancel": f"{base}/v1/{path}/{pred.id}/cancel",
        "get": f"{base}/v1/{path}/{pred.id}",
    }
    if pred.stream_key and stream_url is not None and pred.training is None:
        urls["stream"] = f"{stream_url}/v1/streams/{pred.stream_key}"
    urls["web"] = f"{base}/p/{pred.id}"
    obj["source"] = pred.source  # on every prediction object, as the real API answers
    obj["data_removed"] = False
    obj["urls"] = urls
    return obj
