"""A minimal ``/v1`` server whose predictions stream many events: ``python -m
benchmarks._stream_server``.

A create whose prompt is ``events=N`` answers at once with a prediction whose event
stream sends ``N`` ``output`` events (one short token each) and ``done``, all at once;
a poll answers the finished prediction with the same ``N`` chunks. Events and answers
are built once per ``N``, so the server's own cost per event is a memory copy: what is
measured is the client. Plain asyncio and HTTP/1.1 by hand, in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
from functools import cache

_CREATE = re.compile(rb'"prompt"\s*:\s*"events=(\d+)"')


def token(index: int) -> str:
    """The ``index``-th chunk of every stream (a short word, as an LLM's token)."""
    return f" w{index % 1000}"


@cache
def stream_body(count: int) -> bytes:
    events = [f"event: output\nid: {i}\ndata: {token(i)}\n\n" for i in range(count)]
    events.append("event: done\ndata: {}\n\n")
    return "".join(events).encode()


@cache
def final_body(count: int, prediction_id: str, base: str) -> bytes:
    return json.dumps(_prediction(prediction_id, base, "succeeded", count)).encode()


def _prediction(prediction_id: str, base: str, status: str, count: int) -> dict[str, object]:
    url = f"{base}/v1/predictions/{prediction_id}"
    return {
        "id": prediction_id,
        "status": status,
        "output": [token(i) for i in range(count)] if status == "succeeded" else None,
        "error": None,
        "urls": {"get": url, "cancel": f"{url}/cancel", "stream": f"{url}/stream"},
    }


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host, port = writer.get_extra_info("sockname")[:2]
    base = f"http://{host}:{port}"
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            writer.write(_answer(method, path, body, base))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _answer(method: str, path: str, body: bytes, base: str) -> bytes:
    parts = path.strip("/").split("/")
    if method == "POST" and parts[-1] == "predictions":
        match = _CREATE.search(body)
        count = int(match.group(1)) if match else 0
        answer = _prediction(f"events-{count}", base, "starting", count)
        return _response("201 Created", json.dumps(answer).encode())
    if method == "POST" and parts[-1] == "cancel":
        return _response("200 OK", b"{}")
    if method == "GET" and len(parts) >= 3 and parts[2].startswith("events-"):
        count = int(parts[2].removeprefix("events-"))
        if parts[-1] == "stream":
            return _response("200 OK", stream_body(count), "text/event-stream")
        return _response("200 OK", final_body(count, parts[2], base))
    return _response("404 Not Found", b'{"detail": "not found"}')


async def main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"stream server listening on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
