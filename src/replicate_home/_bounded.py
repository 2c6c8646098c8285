"""Reading untrusted response bodies under a size limit, piece by piece.

Every answer is untrusted: a body may be endless, far larger than any real answer, or a
gzip bomb (a few hundred kilobytes that inflate to gigabytes). So nothing here buffers a
body before looking at its size. :class:`BodyReader` reads a streamed ``httpx`` response
one decoded piece at a time (gzip and deflate are inflated here, at most
:data:`PIECE` bytes at a time, so even a bomb costs no more than the limit), counts the
decoded size and raises :class:`ResponseTooLarge` as soon as it passes the limit.
:func:`read_body` reads a whole body that way, :func:`read_prefix` at most the start of
one (for error messages), and :class:`EventReader` parses server-sent events from a
:class:`BodyReader` with every line and event under the limit.

Closing: httpx's body iterators are async generators nested several deep; one left
suspended is finalised by the garbage collector, which trio reports as a
``ResourceWarning``. :meth:`BodyReader.aclose` closes the response first, then runs the
iterator to its end (the closed connection ends it at once), so every generator in the
chain finishes in order and nothing is left to the collector.

The file downloads of other features use the same helpers: ``read_body(response,
limit, what="the file")``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
from httpx_sse import ServerSentEvent

from ._exceptions import ResponseTooLarge, UnexpectedResponseFormat

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ERROR_BODY_LIMIT",
    "PIECE",
    "BodyReader",
    "EventReader",
    "check_limit",
    "close_and_finish",
    "read_body",
    "read_prefix",
]

#: The default limit on one response's decoded size (and on one event of a stream, and
#: on the output a stream delivers): 32 MiB. Real answers are far smaller: a 16000-token
#: answer is about 200 KB of JSON; an image as a ``data:`` URI a few megabytes.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

#: How much of an error body is read for its message (the rest is not read).
ERROR_BODY_LIMIT = 64 * 1024

#: The most one decoding step produces: what a compressed body costs beyond its limit.
PIECE = 64 * 1024

#: How long closing a response (and finishing its iterators) may take.
CLOSE_GRACE = 2.0


def check_limit(value: object) -> int:
    """Validate a ``max_response_bytes`` option: a whole number of bytes, at least 1 KiB."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ValueError(f"max_response_bytes must be a whole number >= 1024, not {value!r}")
    return value


class _Inflater:
    """gzip or deflate, inflated at most :data:`PIECE` bytes at a time."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._engine: zlib._Decompress | None = (
            zlib.decompressobj(zlib.MAX_WBITS | 16) if self._gzip else None
        )

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._engine is None:
            # deflate: with the zlib header (RFC 1950) or raw (as some servers send it)
            zlib_header = (
                len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0
            )
            self._engine = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        engine = self._engine
        try:
            while data and not engine.eof:
                piece = engine.decompress(data, PIECE)
                data = engine.unconsumed_tail
                if piece:
                    yield piece
        except zlib.error as error:
            raise UnexpectedResponseFormat(
                "", f"a compressed body that can't be read: {error}"
            ) from None


async def _pieces(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), PIECE):
        yield content[start : start + PIECE]


class BodyReader:
    """One streamed response's decoded body, a piece at a time, never more than ``limit``
    bytes in all: past it, :class:`ResponseTooLarge` naming ``what``."""

    def __init__(self, response: httpx.Response, limit: int, what: str) -> None:
        self.response = response
        self.limit = limit
        self.what = what
        self.size = 0
        encoding = response.headers.get("content-encoding", "").strip().lower()
        self._inflater: _Inflater | None = None
        self._chunks: AsyncIterator[bytes]
        try:  # a body read before it came here (a mock transport's): its decoded pieces
            content: bytes | None = response.content
        except httpx.ResponseNotRead:
            content = None
        if content is not None:
            self._chunks = _pieces(content)
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = _Inflater(encoding)
            self._chunks = response.aiter_raw()
        elif encoding in ("", "identity"):
            self._chunks = response.aiter_raw()
        else:  # an encoding httpx decodes itself (br, zstd, stacked): its pieces, counted
            self._chunks = response.aiter_bytes()
        self._pending: Iterator[bytes] = iter(())

    def too_large(self) -> ResponseTooLarge:
        return ResponseTooLarge(self.what, self.limit, str(self.response.request.url))

    async def next(self) -> bytes | None:
        """The next decoded piece, or ``None`` at the end of the body."""
        while True:
            piece = next(self._pending, None)
            if piece is None:
                try:
                    data = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return None
                if self._inflater is None:
                    piece = data
                else:
                    self._pending = self._inflater.feed(data)
                    continue
            if not piece:
                continue
            self.size += len(piece)
            if self.size > self.limit:
                raise self.too_large()
            return piece

    async def aclose(self) -> None:
        """Close the response, then finish its iterators (see :func:`close_and_finish`)."""
        await close_and_finish(self.response, self._chunks)


async def close_and_finish(response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
    """Close ``response``, then run ``chunks`` (its ``aiter_raw()`` or ``aiter_bytes()``,
    maybe left mid-body) to its end: the closed connection ends it at once, so every
    generator httpx nests inside it finishes in order and none is left to the garbage
    collector (which trio reports as a ``ResourceWarning``). Shielded, with a short
    deadline of its own: it runs while the caller is being cancelled too."""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLOSE_GRACE):
        try:
            await response.aclose()
        finally:
            try:
                async for _ in chunks:
                    pass
            except Exception:  # the closed connection: what ends the chain
                pass


async def read_body(response: httpx.Response, limit: int, *, what: str) -> bytes:
    """The whole decoded body of a streamed ``response``, which is closed after; raises
    :class:`ResponseTooLarge` as soon as it passes ``limit`` bytes (at once when its
    ``Content-Length`` already says so)."""
    reader = BodyReader(response, limit, what)
    try:
        declared = response.headers.get("content-length", "")
        if (
            declared.isdigit()
            and int(declared) > limit
            and response.headers.get("content-encoding", "identity").strip().lower() == "identity"
        ):
            raise reader.too_large()
        body = bytearray()
        while (piece := await reader.next()) is not None:
            body += piece
        return bytes(body)
    finally:
        await reader.aclose()


async def read_prefix(
    response: httpx.Response, limit: int = ERROR_BODY_LIMIT
) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the start of ``response``'s decoded body, and whether
    there was more (which is not read). The response is closed after."""
    reader = BodyReader(response, limit, "an error body")
    body = bytearray()
    try:
        while (piece := await reader.next()) is not None:
            body += piece
    except ResponseTooLarge:
        return bytes(body), True
    finally:
        await reader.aclose()
    return bytes(body), False


_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventReader:
    """Server-sent events from a :class:`BodyReader`, each line and each event's data
    at most the reader's limit (past it, :class:`ResponseTooLarge`).

    Lines end at CRLF, CR or LF; ``event``, ``data`` and ``id`` fields are read as the
    SSE specification says, comments and other fields are skipped.
    """

    def __init__(self, body: BodyReader) -> None:
        self._body = body
        self._buffer = bytearray()
        self._scanned = 0  # where the search for a line end resumes (no rescan: linear)
        self._ended = False
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._id = ""

    async def _line(self) -> str | None:
        while True:
            match = _LINE_END.search(self._buffer, self._scanned)
            if match is not None and not (
                match.group() == b"\r" and match.end() == len(self._buffer) and not self._ended
            ):
                line = bytes(self._buffer[: match.start()])
                del self._buffer[: match.end()]
                self._scanned = 0
                return line.decode("utf-8", errors="replace")
            if self._ended:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                return line.decode("utf-8", errors="replace")
            self._scanned = max(0, len(self._buffer) - 1)  # a CR may pair with what follows
            piece = await self._body.next()
            if piece is None:
                self._ended = True
                continue
            self._buffer += piece
            if len(self._buffer) > self._body.limit:
                raise self._body.too_large()

    async def next(self) -> ServerSentEvent | None:
        """The next event, or ``None`` when the stream ended."""
        while True:
            line = await self._line()
            if line is None:
                return None
            if not line:
                if self._data or self._event:
                    event = ServerSentEvent(
                        event=self._event or "message", data="\n".join(self._data), id=self._id
                    )
                    self._event, self._data, self._data_size = "", [], 0
                    return event
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data_size += len(value) + 1
                if self._data_size > self._body.limit:
                    raise self._body.too_large()
                self._data.append(value)
            elif name == "id" and "\0" not in value:
                self._id = value
