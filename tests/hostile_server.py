"""A small hostile ``/v1`` server for the robustness tests, run in a process of its own.

``python tests/hostile_server.py MODE`` listens on a free loopback port, prints its URL,
and answers as ``MODE`` says (see :data:`MODES`). Plain asyncio and HTTP/1.1 by hand, so
it can send what no well-behaved framework would: endless bodies, gzip bombs, endless
event-stream lines, absurd ``Retry-After`` headers, ids like ``..``, echoed credentials.
Every request is logged; ``GET /_log`` answers the log as JSON (method, path, headers).
Big bodies are generated piece by piece: the server itself stays small.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from collections.abc import Awaitable, Callable
from functools import cache

MB = 1024 * 1024

Writer = asyncio.StreamWriter
Handler = Callable[["Request", Writer], Awaitable[None]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body

    @property
    def prompt(self) -> str:
        try:
            return str(json.loads(self.body)["input"]["prompt"])
        except (ValueError, KeyError, TypeError):
            return ""


LOG: list[dict[str, object]] = []
POLLS: dict[str, int] = {}
BASE = ""


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send(writer: Writer, status: str, body: bytes, **headers: str) -> None:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    writer.write(
        head(
            status, {"content-type": "application/json", "content-length": str(len(body)), **extra}
        )
        + body
    )
    await writer.drain()


async def send_json(writer: Writer, status: str, value: object, **headers: str) -> None:
    await send(writer, status, json.dumps(value).encode(), **headers)


def prediction(
    pid: str, status: str = "starting", stream: bool = True, **fields: object
) -> dict[str, object]:
    url = f"{BASE}/v1/predictions/{pid}"
    urls = {"get": url, "cancel": f"{url}/cancel"}
    if stream:
        urls["stream"] = f"{url}/stream"
    return {"id": pid, "status": status, "output": None, "error": None, "urls": urls, **fields}


async def endless(writer: Writer, piece: bytes, chunked: bool) -> None:
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    while True:
        writer.write(frame)
        await writer.drain()


async def sized(writer: Writer, prefix: bytes, size: int, status: str = "200 OK") -> None:
    """A JSON-looking body of exactly ``size`` bytes, sent a megabyte at a time."""
    writer.write(head(status, {"content-type": "application/json", "content-length": str(size)}))
    writer.write(prefix)
    left = size - len(prefix)
    piece = b"a" * MB
    while left > 0:
        writer.write(piece[: min(left, MB)])
        left -= MB
        await writer.drain()


@cache
def gzip_bomb(size: int) -> bytes:
    """A gzip body that inflates to a ``size``-byte JSON object."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b'{"id": "bomb", "status": "starting", "output": "')]
    piece = b"a" * MB
    for _ in range(size // MB):
        parts.append(packer.compress(piece))
    parts.append(packer.compress(b'"}'))
    parts.append(packer.flush())
    return b"".join(parts)


# -- modes ----------------------------------------------------------------------------


async def stream_mode(request: Request, writer: Writer) -> None:
    """``events=N`` streams N output events and done; polls answer the final output."""
    count = int(request.prompt.removeprefix("events=") or 0) if request.method == "POST" else 0
    path = request.path
    if request.method == "POST" and path.endswith("/predictions"):
        await send_json(writer, "201 Created", prediction(f"events-{count}"))
    elif path.endswith("/stream"):
        count = int(path.split("/")[3].removeprefix("events-"))
        await send(writer, "200 OK", _events(count), content_type="text/event-stream")
    elif path.endswith("/cancel"):
        await send_json(writer, "200 OK", {})
    else:
        count = int(path.split("/")[3].removeprefix("events-"))
        output = [f" w{i}" for i in range(count)]
        await send_json(
            writer, "200 OK", prediction(path.split("/")[3], "succeeded", output=output)
        )


@cache
def _events(count: int) -> bytes:
    events = [f"event: output\nid: {i}\ndata:  w{i}\n\n" for i in range(count)]
    return ("".join(events) + "event: done\ndata: {}\n\n").encode()


async def huge_mode(request: Request, writer: Writer) -> None:
    """The create's answer is as the prompt says: ``sized``, ``chunked``, ``close``
    (endless bodies), ``gzip``, ``error`` (120 MB body with 500), ``sse-line``, ``sse-event``
    (an endless event-stream line, or an event that never ends)."""
    path = request.path
    if request.method == "POST" and path.endswith("/cancel"):
        await send_json(writer, "200 OK", {})
        return
    if request.method == "POST":
        kind = request.prompt
        if kind == "sized":
            await sized(writer, b'{"id": "big", "status": "starting", "output": "', 120 * MB)
        elif kind == "error":
            await sized(writer, b'{"detail": "', 120 * MB, status="500 Internal Server Error")
        elif kind == "chunked":
            writer.write(
                head("200 OK", {"content-type": "application/json", "transfer-encoding": "chunked"})
            )
            await endless(writer, b"a" * 65536, chunked=True)
        elif kind == "close":
            writer.write(
                head("200 OK", {"content-type": "application/json", "connection": "close"})
            )
            await endless(writer, b"a" * 65536, chunked=False)
        elif kind == "gzip":
            body = gzip_bomb(160 * MB)
            await send(writer, "200 OK", body, content_encoding="gzip")
        else:
            await send_json(writer, "201 Created", prediction(f"sse-{kind}"))
        return
    if path.endswith("/stream"):
        writer.write(head("200 OK", {"content-type": "text/event-stream", "connection": "close"}))
        if "sse-sse-line" in path:
            writer.write(b"event: output\ndata: ")
            await endless(writer, b"a" * 65536, chunked=False)
        else:
            writer.write(b"event: output\n")
            await endless(writer, b"data: " + b"a" * 65530 + b"\n", chunked=False)
        return
    pid = path.split("/")[3]
    await send_json(writer, "200 OK", prediction(pid, "processing", stream=False))


async def retry_after_mode(request: Request, writer: Writer) -> None:
    """Prompt ``poll``: each prediction's first poll answers 429 with Retry-After 1e12,
    later ones ``processing`` (``slow``) or ``succeeded``. Prompt ``create``: the first
    create of the server answers 429 likewise. No event streams."""
    path = request.path
    if request.method == "POST" and path.endswith("/cancel"):
        await send_json(writer, "200 OK", prediction(path.split("/")[3], "canceled", stream=False))
    elif request.method == "POST":
        if request.prompt == "create" and not POLLS.get("created"):
            POLLS["created"] = 1
            await send_json(
                writer, "429 Too Many Requests", {"detail": "slow down"}, retry_after="1e12"
            )
            return
        POLLS["next"] = POLLS.get("next", 0) + 1
        pid = f"{request.prompt}-{POLLS['next']}"
        await send_json(writer, "201 Created", prediction(pid, stream=False))
    else:
        pid = path.split("/")[3]
        POLLS[pid] = POLLS.get(pid, 0) + 1
        if pid.startswith("poll") and POLLS[pid] == 1:
            await send_json(
                writer, "429 Too Many Requests", {"detail": "slow down"}, retry_after="1e12"
            )
        elif pid.startswith("slow"):
            await send_json(writer, "200 OK", prediction(pid, "processing", stream=False))
        else:
            await send_json(
                writer, "200 OK", prediction(pid, "succeeded", stream=False, output="ok")
            )


async def ids_mode(request: Request, writer: Writer) -> None:
    """The create answers the prompt as the prediction's id, without ``urls``."""
    if request.method == "POST" and request.path.endswith("/predictions"):
        await send_json(writer, "201 Created", {"id": request.prompt, "status": "starting"})
    else:
        await send_json(writer, "404 Not Found", {"detail": "not here"})


async def echo_mode(request: Request, writer: Writer) -> None:
    """Every answer echoes the request's Authorization header: the prompt says the
    status of the create's answer (``failed``: a prediction failed with it as error)."""
    secret = request.headers.get("authorization", "")
    if request.method == "POST" and request.path.endswith("/predictions"):
        kind = request.prompt
        if kind == "failed":
            await send_json(
                writer,
                "201 Created",
                prediction("echo", "failed", stream=False, error=f"bad {secret}"),
            )
        elif kind == "escaped":  # the echo spelled with JSON escapes, \u0072 …
            escaped = "".join(f"\\u{ord(char):04x}" for char in secret)
            text = f'{{"id": "echo", "status": "failed", "error": "bad {escaped}"}}'
            await send(writer, "201 Created", text.encode())
        elif kind == "poll":
            await send_json(writer, "201 Created", prediction("echo-poll", stream=False))
        else:
            problem = {"detail": f"you sent {secret}", "title": secret}
            await send_json(writer, f"{kind} Echo", problem, retry_after="0")
        return
    body = {"detail": f"you sent {secret}"}
    await send_json(writer, "503 Echo", body, retry_after="0")


async def done_mode(request: Request, writer: Writer) -> None:
    """The stream says ``done`` at once; polls answer 500 (prompt ``500``) or reset the
    connection (prompt ``reset``)."""
    path = request.path
    if request.method == "POST" and path.endswith("/predictions"):
        await send_json(writer, "201 Created", prediction(f"done-{request.prompt}"))
    elif path.endswith("/stream"):
        body = b"event: output\ndata: hi\n\nevent: done\ndata: {}\n\n"
        await send(writer, "200 OK", body, content_type="text/event-stream")
    elif path.endswith("/cancel"):
        await send_json(writer, "200 OK", {})
    elif "reset" in path:
        writer.transport.abort()
    else:
        await send_json(writer, "500 Internal Server Error", {"detail": "down"})


MODES: dict[str, Handler] = {
    "stream": stream_mode,
    "huge": huge_mode,
    "retry-after": retry_after_mode,
    "ids": ids_mode,
    "echo": echo_mode,
    "done": done_mode,
}


async def serve(handler: Handler, reader: asyncio.StreamReader, writer: Writer) -> None:
    try:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = raw.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            if path == "/_log":
                await send_json(writer, "200 OK", LOG)
                continue
            LOG.append({"method": method, "path": path, "headers": headers})
            await handler(Request(method, path, headers, body), writer)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(mode: str) -> None:
    global BASE
    handler = MODES[mode]
    server = await asyncio.start_server(lambda r, w: serve(handler, r, w), "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    BASE = f"http://{host}:{port}"
    print(f"hostile server listening on {BASE}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
