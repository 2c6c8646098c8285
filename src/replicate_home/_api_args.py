"""The official API's call arguments, checked before any request is sent: model
references (the homepage models' aliases too), webhooks and their events filter,
``Cancel-After``, prediction ids and a listing's time bounds. Pure: a bad argument is a
``ValueError`` here, not a request the API refuses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from urllib.parse import urlsplit

from ._catalog import MODEL_ALIASES, MODEL_VERSIONS
from ._models import Deployment, Prediction

__all__ = [
    "BARE_VERSION",
    "MIN_CANCEL_AFTER",
    "WEBHOOK_EVENTS",
    "ModelRef",
    "check_cancel_after",
    "check_prediction_id",
    "check_timestamp",
    "check_webhook",
    "parse_model_ref",
]

#: The shortest Cancel-After the API accepts, in seconds.
MIN_CANCEL_AFTER = 5

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_VERSION = r"[0-9a-f]{64}"
_MODEL_REF = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?::(?P<version>{_VERSION}))?$")
#: A bare version id (64 hex digits).
BARE_VERSION = re.compile(rf"^{_VERSION}$")
#: The events a webhook can be sent for.
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
#: The longest prediction id accepted from a caller (ids are 26 characters today).
MAX_ID_LENGTH = 128
_PREDICTION_ID = re.compile(r"[A-Za-z0-9_-]+")


class ModelRef:
    """A parsed model reference: ``owner/name``, ``owner/name:version``, a version id,
    or a deployment."""

    __slots__ = ("deployment", "name", "version")

    def __init__(self, name: str | None, version: str | None, deployment: str | None = None):
        self.name = name
        self.version = version
        self.deployment = deployment

    @property
    def display(self) -> str:
        """How events and results name the model."""
        if self.deployment is not None:
            return f"deployment:{self.deployment}"
        if self.name is None:
            return self.version or ""
        return self.name


def parse_model_ref(model: object) -> ModelRef:
    """Parse a model reference; aliases of the homepage models are accepted too.

    The homepage models resolve to their pinned versions. Anything else malformed raises
    ``ValueError`` before any request is sent.
    """
    if isinstance(model, Deployment):
        return ModelRef(None, None, model.name)
    if not isinstance(model, str) or not model:
        raise ValueError("model must be 'owner/name', 'owner/name:version' or a version id")
    model = MODEL_ALIASES.get(model, model)
    if BARE_VERSION.match(model):
        return ModelRef(None, model)
    match = _MODEL_REF.match(model)
    if match is None:
        raise ValueError(
            f"malformed model reference {model!r}: use 'owner/name', "
            "'owner/name:<64-hex version id>' or a version id"
        )
    name = f"{match['owner']}/{match['name']}"
    return ModelRef(name, match["version"] or MODEL_VERSIONS.get(name))


def check_webhook(webhook: object, events: object) -> tuple[str | None, tuple[str, ...] | None]:
    """A webhook URL and its events filter, validated (``ValueError`` before any request)."""
    if webhook is not None:
        if not isinstance(webhook, str):
            raise ValueError(f"webhook must be a URL string, not {type(webhook).__name__}")
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook must be an http:// or https:// URL, not {webhook!r}")
    if events is None:
        return webhook, None
    if webhook is None:
        raise ValueError("webhook_events_filter needs a webhook")
    if isinstance(events, str) or not isinstance(events, Sequence):
        raise ValueError("webhook_events_filter must be a list of event names")
    unknown = [event for event in events if event not in WEBHOOK_EVENTS]
    if unknown or not events:
        raise ValueError(
            f"webhook_events_filter must list some of {', '.join(WEBHOOK_EVENTS)}; "
            f"got {list(events)!r}"
        )
    return webhook, tuple(dict.fromkeys(events))


def check_cancel_after(seconds: object) -> float | None:
    """A ``Cancel-After`` in seconds (at least the API's minimum), or ``None``."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"cancel_after must be a number of seconds, not {seconds!r}")
    if not (math.isfinite(seconds) and seconds >= MIN_CANCEL_AFTER):
        raise ValueError(f"cancel_after must be at least {MIN_CANCEL_AFTER} seconds")
    return float(seconds)


def check_prediction_id(prediction_id: object) -> str:
    """A caller's prediction id, validated (it becomes part of a URL path)."""
    if isinstance(prediction_id, Prediction):
        prediction_id = prediction_id.id
    if (
        not isinstance(prediction_id, str)
        or len(prediction_id) > MAX_ID_LENGTH
        or not _PREDICTION_ID.fullmatch(prediction_id)
    ):
        raise ValueError(f"not a prediction id: {prediction_id!r}")
    return prediction_id


def check_timestamp(moment: object, name: str) -> str:
    """A listing's bound as the API takes it (UTC, ISO 8601); ``ValueError`` unless
    a timezone-aware ``datetime``."""
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(timezone.utc).isoformat()
