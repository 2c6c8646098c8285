"""Replicate's Files API under ``/v1/files``, as the OpenAPI description gives it.

- ``POST /v1/files``: a ``multipart/form-data`` upload (the file in the ``content``
  part; optional ``filename``, ``type`` and JSON ``metadata`` parts), answered 201 with
  the file object (``id``, ``name``, ``content_type``, ``size``, ``etag``,
  ``checksums.sha256``, ``metadata``, ``created_at``, ``expires_at``, ``urls.get``);
  larger than the limit: 413.
- ``GET /v1/files`` lists them, newest first, paginated (``next``/``previous``);
  ``GET /v1/files/{id}`` answers one; ``DELETE /v1/files/{id}`` answers 204, then 404.
- ``GET /v1/files/{id}/download?owner=&expiry=&signature=``: the bytes, for whoever has
  a valid signed URL (no token), as the real API serves them.

``urls.get`` is the file resource on the API origin (its JSON, with a token), the URL a
client passes as a model input. The multipart
body is read with the standard library's ``email`` parser (no extra dependency).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import ApiGate
from ._file_store import FILE_LIFETIME, MAX_FILE_SIZE, FileStore, StoredFile
from ._responses import json_bytes, problem

__all__ = ["files_routes"]


def files_routes(gate: ApiGate, store: FileStore) -> list[BaseRoute]:
    """The ``/v1/files`` routes over ``store``, gated (token, rate limit) by ``gate`` like
    the other ``/v1`` routes (the signed download excepted)."""
    return _FilesRoutes(gate, store).routes


class _FilesRoutes:
    """The ``/v1/files`` routes, gated (token, rate limit) like the other ``/v1`` routes."""

    def __init__(self, gate: ApiGate, store: FileStore) -> None:
        self._gate = gate
        self._store = store

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/files", self._files, methods=["GET", "POST"]),
            Route("/v1/files/{file_id}", self._file, methods=["GET", "DELETE"]),
            Route("/v1/files/{file_id}/download", self._download, methods=["GET"]),
        ]

    def _object(self, request: Request, stored: StoredFile) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "id": stored.id,
            "name": stored.name,
            "content_type": stored.content_type,
            "size": len(stored.content),
            "etag": f'"{stored.sha256[:32]}"',
            "checksums": {"sha256": stored.sha256},
            "metadata": stored.metadata,
            "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
            "expires_at": (stored.created_at + FILE_LIFETIME).isoformat().replace("+00:00", "Z"),
            "urls": {"get": f"{base}/v1/files/{stored.id}"},
        }

    async def _files(self, request: Request) -> Response:
        refused = self._gate.check(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return self._list(request)
        body = await request.body()
        if len(body) > MAX_FILE_SIZE + 64 * 1024:
            return problem(413, "Request Entity Too Large", "Files must be less than 100MB in size")
        parts = _form_parts(request.headers.get("content-type", ""), body)
        if parts is None or "content" not in parts:
            return problem(
                400, "Bad Request", "a multipart/form-data body with 'content' is required"
            )
        content_part = parts["content"]
        content = content_part.get_payload(decode=True)
        if not isinstance(content, bytes):
            content = b""
        if len(content) > MAX_FILE_SIZE:
            return problem(413, "Request Entity Too Large", "Files must be less than 100MB in size")
        name = _text(parts.get("filename")) or content_part.get_filename() or "file"
        content_type = (
            _text(parts.get("type"))
            or content_part.get_content_type()
            or "application/octet-stream"
        )
        metadata: Any = {}
        raw_metadata = _text(parts.get("metadata"))
        if raw_metadata:
            try:
                metadata = json.loads(raw_metadata)
            except ValueError:
                return problem(422, "Unprocessable Entity", "metadata must be valid JSON")
            if not isinstance(metadata, dict):
                return problem(422, "Unprocessable Entity", "metadata must be a JSON object")
        if len(name.encode()) > 255:
            return problem(422, "Unprocessable Entity", "filename must be at most 255 bytes")
        stored = StoredFile(
            id=secrets.token_hex(13),
            name=name,
            content_type=content_type,
            content=content,
            metadata=metadata,
            created_at=datetime.now(timezone.utc),
        )
        self._store.add(stored)
        return Response(
            json_bytes(self._object(request, stored)),
            status_code=201,
            media_type="application/json",
        )

    def _list(self, request: Request) -> Response:
        newest = list(reversed(self._store.files.values()))
        try:
            start = max(0, int(request.query_params.get("cursor", "0")))
        except ValueError:
            return problem(400, "Bad Request", "invalid cursor")
        size = 100
        page = newest[start : start + size]
        base = str(request.base_url).rstrip("/")
        after = start + size
        return Response(
            json_bytes(
                {
                    "next": f"{base}/v1/files?{urlencode({'cursor': after})}"
                    if after < len(newest)
                    else None,
                    "previous": f"{base}/v1/files?{urlencode({'cursor': max(0, start - size)})}"
                    if start > 0
                    else None,
                    "results": [self._object(request, stored) for stored in page],
                }
            ),
            media_type="application/json",
        )

    async def _file(self, request: Request) -> Response:
        refused = self._gate.check(request)
        if refused is not None:
            return refused
        file_id: str = request.path_params["file_id"]
        stored = self._store.files.get(file_id)
        if stored is None:
            return problem(404, "Not found", "File not found")
        if request.method == "DELETE":
            del self._store.files[file_id]
            return Response(status_code=204)
        return Response(json_bytes(self._object(request, stored)), media_type="application/json")

    async def _download(self, request: Request) -> Response:
        file_id: str = request.path_params["file_id"]
        stored = self._store.files.get(file_id)
        if stored is None or not self._store.valid_download(file_id, request.query_params):
            return problem(404, "Not found", "File not found")
        return Response(stored.content, media_type=stored.content_type)


def _form_parts(content_type: str, body: bytes) -> dict[str, Message] | None:
    """The named parts of a ``multipart/form-data`` body, or ``None`` if it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    parts: dict[str, Message] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts[name] = part
    return parts


def _text(part: Message | None) -> str:
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace").strip() if isinstance(payload, bytes) else ""
