"""Response helpers shared by the emulator's route layers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ._scenarios import Fault

__all__ = ["detail_response", "fault_response", "json_bytes", "problem", "routing_error"]

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


async def routing_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404, 405): problem details under ``/v1``, plain text elsewhere."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path == "/v1" or request.url.path.startswith("/v1/"):
        title = "Not found" if exc.status_code == 404 else "Method not allowed"
        detail = (
            f"No such API route: {request.url.path}"
            if exc.status_code == 404
            else f"{request.method} is not allowed on {request.url.path}"
        )
        return problem(exc.status_code, title, detail, headers=headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)
