"""A tiny HTTP/1.1 server on loopback, run inside a test's own task group (asyncio and
trio alike), for the file tests: it reads each request's body piece by piece without
keeping it (its SHA-256 and size are recorded), and answers what ``answer`` says.

Used where the emulator can't act the part: a Files API that refuses uploads, and an
upload sink whose own memory stays small, so that a test measures the client's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    size: int
    sha256: str


@dataclass(frozen=True)
class Body:
    """An answer of ``size`` bytes of one repeated piece (``content-length`` set), sent
    piece by piece as the client takes them: the server holds one piece only."""

    size: int
    piece: bytes = b"\x07" * 65536
    content_type: str = "application/octet-stream"


#: ``answer(request) -> (status, JSON body or a Body)``; status 0: never answer.
Answer = Callable[[Seen], tuple[int, object]]


class SinkServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Seen] = []
        self.url = ""

    async def _handle(self, stream: SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                left = int(headers.get("content-length", "0"))
                digest, size = hashlib.sha256(), 0
                while left > 0:
                    if not buffer:
                        try:
                            buffer = await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            return
                    piece, buffer = buffer[:left], buffer[left:]
                    digest.update(piece)
                    size += len(piece)
                    left -= len(piece)
                seen = Seen(method, path, headers, size, digest.hexdigest())
                self.requests.append(seen)
                status, value = self.answer(seen)
                if status == 0:  # never answer
                    await anyio.sleep_forever()
                if isinstance(value, Body):
                    await stream.send(
                        f"HTTP/1.1 {status} X\r\ncontent-type: {value.content_type}\r\n"
                        f"content-length: {value.size}\r\n\r\n".encode()
                    )
                    left = value.size
                    while left > 0:
                        piece = value.piece if left >= len(value.piece) else value.piece[:left]
                        await stream.send(piece)
                        left -= len(piece)
                    continue
                body = json.dumps(value).encode()
                await stream.send(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )


@asynccontextmanager
async def sink_server(answer: Answer) -> AsyncIterator[SinkServer]:
    """Serve ``answer`` on a free loopback port for the length of the block."""
    server = SinkServer(answer)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server._handle)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()
