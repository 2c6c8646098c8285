"""The whole record of an official-API prediction, read from an untrusted answer.

Everything here is optional: a missing or malformed field becomes ``None`` (or empty),
never an error, because the fields a call needs (``id``, ``status``) are checked by the
service and the rest is information for the caller.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from ._decode import require_id, require_string
from ._models import Prediction

__all__ = ["parse_timestamp", "prediction_from_object", "record_fields"]

#: ISO 8601 as the API writes it: ``2024-01-01T00:00:00.123456Z`` or with an offset,
#: with any number of fractional digits (the API sends up to seven).
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?"
)
#: Longer logs are kept only at their end (where progress and the latest lines are).
MAX_LOGS = 1_000_000


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware ``datetime`` (UTC when the text has no offset), or ``None``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = (match[7] or "0")[:6].ljust(6, "0")
    zone = match[8]
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError:
        return None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def record_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The record fields of a :class:`Prediction` from a prediction object."""
    fields: dict[str, Any] = {}
    model_input = data.get("input")
    if isinstance(model_input, dict):
        fields["input"] = model_input
    logs = data.get("logs")
    if isinstance(logs, str):
        fields["logs"] = logs[-MAX_LOGS:]
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        fields["metrics"] = metrics
    for name in ("created_at", "started_at", "completed_at", "deadline"):
        moment = parse_timestamp(data.get(name))
        if moment is not None:
            fields[name] = moment
    for name in ("source", "deployment", "webhook"):
        text = _string(data.get(name))
        if text:
            fields[name] = text
    if data.get("data_removed") is True:
        fields["data_removed"] = True
    return fields


def prediction_from_object(
    data: dict[str, Any],
    text: str,
    *,
    model: str = "",
    version: str | None = None,
    known_id: str | None = None,
) -> Prediction:
    """A :class:`Prediction` from an API prediction object (a create, poll, listing or
    webhook body). ``id`` (unless ``known_id``) and ``status`` are required
    (:class:`UnexpectedResponseFormat` without them); ``model`` and ``version`` stand in
    for what the object does not say."""
    prediction_id = require_id(data, "id", text) if known_id is None else known_id
    status = require_string(data, "status", text)
    urls = data.get("urls")
    named, pinned = data.get("model"), data.get("version")
    return Prediction(
        **record_fields(data),
        id=prediction_id,
        model=named if isinstance(named, str) and named else model,
        version=pinned if isinstance(pinned, str) and pinned else version,
        status=status,
        output=data.get("output"),
        error=data.get("error"),
        urls={k: v for k, v in urls.items() if isinstance(v, str)}
        if isinstance(urls, dict)
        else {},
    )
