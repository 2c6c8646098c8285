"""Response helpers shared by the emulator's route layers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from ._simulation import Fault

__all__ = ["detail_response", "fault_response", "json_bytes", "problem"]

PROBLEM_JSON = "application/problem+json"


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the services send it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def detail_response(status_code: int, detail: str) -> JSONResponse:
    """The homepage's error answer: ``{"detail": ...}``."""
    return JSONResponse({"detail": detail}, status_code=status_code)


def fault_response(fault: Fault) -> Response:
    """A scripted :class:`Fault` answer."""
    return Response(fault.body_bytes, status_code=fault.status, headers=fault.headers)


def problem(
    status_code: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The ``/v1`` error answer: RFC 9457 problem details, ``{"title", "detail", "status"}``."""
    body = {"title": title, "detail": detail, "status": status_code, **extra}
    return Response(
        json_bytes(body), status_code=status_code, headers=headers, media_type=PROBLEM_JSON
    )
