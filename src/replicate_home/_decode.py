"""The one response decoder used for every call, whatever its Content-Type says.

The homepage endpoint is known to send JSON under ``text/plain`` or ``text/html``, so the
body is parsed as JSON regardless of the header. Anything that is not a UTF-8 JSON object
becomes :class:`UnexpectedResponseFormat`, never a ``KeyError``, ``TypeError``,
``UnicodeDecodeError`` or ``json.JSONDecodeError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ._exceptions import UnexpectedResponseFormat

__all__ = ["body_text", "decode_json_object", "require_id", "require_string"]


def body_text(body: bytes) -> str:
    """Return ``body`` as text for error messages, never failing on bad bytes."""
    return body.decode("utf-8", errors="replace")


def decode_json_object(body: bytes) -> tuple[dict[str, Any], str]:
    """Parse ``body`` as a UTF-8 JSON object (a leading BOM is allowed).

    Returns the object and the decoded text. Raises :class:`UnexpectedResponseFormat`
    when the body is empty, not UTF-8, not JSON, or JSON that is not an object.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnexpectedResponseFormat(body_text(body), "not UTF-8") from None
    if not text.strip():
        raise UnexpectedResponseFormat(text, "empty body")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UnexpectedResponseFormat(text, f"not JSON: {error.msg}") from None
    except (ValueError, RecursionError):
        # Integers too long to convert, or nesting deeper than the parser allows.
        raise UnexpectedResponseFormat(text, "not JSON this client can read") from None
    if not isinstance(value, dict):
        raise UnexpectedResponseFormat(text, f"a JSON {_json_kind(value)}, not an object")
    return value, text


def require_string(data: Mapping[str, Any], field: str, text: str) -> str:
    """Return ``data[field]`` if it is a non-empty string, else raise the format error.

    JSON text may carry lone surrogates (``"\\ud800"``), which no URL or UTF-8 text can:
    such a string is rejected here too, not left to fail later in a poll URL.
    """
    value = data.get(field)
    if not isinstance(value, str) or not value:
        found = "missing" if field not in data else f"a JSON {_json_kind(value)}"
        raise UnexpectedResponseFormat(text, f"{field!r} is {found}, not a non-empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnexpectedResponseFormat(text, f"{field!r} is not valid Unicode") from None
    return value


#: What no identifier may hold once percent-decoded: a path separator or a control
#: character (URL parsers drop or reject them).
_NOT_IN_SEGMENT = re.compile(r"[/\\\x00-\x1f\x7f]")


def require_id(data: Mapping[str, Any], field: str, text: str) -> str:
    """:func:`require_string` for an identifier that becomes one segment of a URL path:
    ``.``, ``..``, or anything with ``/``, ``\\`` or a control character (also once
    percent-decoded) would send the next request to another path, so it is rejected."""
    value = require_string(data, field, text)
    for form in (value, unquote(value)):
        if form in (".", "..") or _NOT_IN_SEGMENT.search(form):
            raise UnexpectedResponseFormat(text, f"{field!r} is not a plain path segment")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string" if value else "empty string"
    if isinstance(value, list):
        return "array"
    return "object"
