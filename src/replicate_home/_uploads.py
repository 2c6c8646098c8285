"""File inputs on their way to a model: uploaded to the Files API or sent inline as
``data:`` URIs, each file once per call (and once per fan-out), read off the event loop.

Two ways to send a file input, as the official clients have them:

- ``"upload"`` (the default on the official API): ``POST /v1/files`` (a streamed
  multipart body), then the file's ``urls.get`` goes in the input. Any size the Files
  API takes (Replicate: 100 MB), and the create request stays small.
- ``"data"``: a ``data:`` URI inside the create request. No extra request, but the file
  travels base64-encoded in the JSON (a third larger), so it is refused above
  :data:`MAX_DATA_BYTES` per call (replicate-javascript's limit for inline files) with
  :class:`FileTooLarge`, which names the upload mode.

Uploading once. Within one call or one fan-out, the same object (a path, a file object,
a bytes object) is read and encoded once: a :class:`FileGroup` shares the result, and
concurrent calls wait for the one in flight. Across calls, a client's
:class:`UploadCache` reuses an upload of the same content (a path with the same
inode, size and modification time; bytes or a seekable file with the same SHA-256) until
the file is about to expire. It is bounded (:data:`CACHE_SIZE` files, least recently
used dropped), per client (no global state), and concurrent callers share the upload in
flight instead of racing. A failed upload is not remembered: the next call tries again.

Reading never blocks the event loop: files are opened, hashed and read in worker
threads, and an upload's multipart body is produced by httpx's encoder, one 64 KiB
piece at a time, in a worker thread (:class:`ThreadedBody`), so a large file is never
held in memory.

An uploaded file is an :class:`UploadedFile`, the Files API's record of it.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import anyio

from ._exceptions import FileTooLarge, UnexpectedResponseFormat
from ._file_inputs import is_file_input
from ._media import content_type_of, data_uri, suffix_for

__all__ = [
    "CACHE_SIZE",
    "FILE_ENCODINGS",
    "MAX_DATA_BYTES",
    "FileEncoding",
    "FileGroup",
    "Source",
    "ThreadedBody",
    "UploadCache",
    "UploadedFile",
    "check_data_size",
    "check_file_encoding",
    "encode_inputs",
    "file_inputs",
    "open_source",
    "read_uploaded_file",
]

#: How file inputs are sent: ``"upload"`` (the Files API, then the file's URL) or
#: ``"data"`` (a ``data:`` URI in the create request).
FileEncoding = Literal["upload", "data"]
FILE_ENCODINGS: tuple[FileEncoding, ...] = ("upload", "data")

#: The most file bytes one call sends inline as ``data:`` URIs (all its files together):
#: replicate-javascript's limit. Bigger files go through the Files API.
MAX_DATA_BYTES = 10_000_000

#: Uploads a client remembers for reuse (least recently used dropped first).
CACHE_SIZE = 256
#: How long an upload is reused when the API gives no ``expires_at`` (seconds).
CACHE_LIFETIME = 3600.0
#: An upload is not reused within this long of its ``expires_at`` (seconds): a model may
#: fetch its input minutes after the create.
EXPIRY_MARGIN = 600.0

#: Pieces in which a file is hashed.
_HASH_PIECE = 1024 * 1024

_T = TypeVar("_T")

#: One lock per file object, so that two calls never read one object at once.
_FILE_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_FILE_LOCKS_GUARD = threading.Lock()


def check_file_encoding(value: object) -> FileEncoding | None:
    """A ``file_encoding`` option, validated (``None``: the client's)."""
    if value is None:
        return None
    if value == "upload":
        return "upload"
    if value == "data":
        return "data"
    raise ValueError(f"file_encoding must be 'upload' or 'data', not {value!r}")


def file_inputs(value: Any) -> Iterator[Any]:
    """Every file input in ``value``, however deep, each object once."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if is_file_input(item):
            if id(item) not in seen:
                seen.add(id(item))
                yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _known_size(value: Any) -> int | None:
    """A file input's size where it is known without reading it (one ``stat``)."""
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (os.PathLike, anyio.Path)):
        try:
            return os.stat(os.fspath(value)).st_size
        except OSError:
            return None
    fileno = getattr(value, "fileno", None)
    if fileno is not None:
        try:
            return os.fstat(fileno()).st_size
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
    if isinstance(value, io.BytesIO):
        return value.getbuffer().nbytes
    return None


def check_data_size(value: Any, limit: int = MAX_DATA_BYTES) -> None:
    """Raise :class:`FileTooLarge` (a ``ValueError``) if the file inputs in ``value``
    whose size is known without reading them add up to more than ``limit`` bytes: too
    large to send as ``data:`` URIs. Others are checked as they are read."""
    total = 0
    for item in file_inputs(value):
        total += _known_size(item) or 0
        if total > limit:
            raise FileTooLarge(total, limit)


class _Flight(Generic[_T]):
    """One piece of work that several tasks want: the first does it, the rest wait."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ok = False
        self.value: _T | None = None
        self.error: Exception | None = None


async def _shared(
    flights: dict[Any, _Flight[_T]], key: Any, make: Callable[[], Awaitable[_T]], *, keep: bool
) -> _T:
    """``make()``'s result, done once for ``key``: concurrent callers wait for the one
    in flight and share its result or its error. A cancelled one is not an outcome: a
    waiter then does the work itself. ``keep``: a success stays for later callers."""
    while True:
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = _Flight()
            try:
                value = await make()
            except Exception as error:
                flight.error = error
                raise
            else:
                flight.value, flight.ok = value, True
                return value
            finally:
                if not (flight.ok and keep):
                    del flights[key]
                flight.done.set()
        if not flight.ok:
            await flight.done.wait()
        if flight.ok:
            return flight.value  # type: ignore[return-value]  # set with ok
        if flight.error is not None:
            raise flight.error
        # The one doing it was cancelled: try again (maybe doing it ourselves).


class FileGroup:
    """The file inputs of one call, or of every call of one fan-out: each object is
    encoded (read, or uploaded) once, and calls running at once share the work."""

    def __init__(self) -> None:
        self._flights: dict[tuple[int, str], _Flight[tuple[str, int]]] = {}
        #: Keeps each object alive while the group is, so that its ``id`` stays its own.
        self._objects: dict[int, Any] = {}

    async def encoded(
        self, value: Any, mode: str, make: Callable[[], Awaitable[tuple[str, int]]]
    ) -> tuple[str, int]:
        """``make()``'s ``(text to send, size)`` for ``value``, done once per group."""
        self._objects.setdefault(id(value), value)
        return await _shared(self._flights, (id(value), mode), make, keep=True)


@dataclass
class Source:
    """A file input opened for upload: what httpx sends (bytes, or a binary file it
    reads in pieces), its name and content type, its size where known, and ``key``
    (what identifies its content for :class:`UploadCache`; ``None``: not reusable)."""

    content: Any
    name: str
    content_type: str
    size: int | None
    key: tuple[Any, ...] | None
    opened: io.BufferedReader | None = None

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


def _lock_for(file: Any) -> threading.Lock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(file, threading.Lock())


def _hash_file(file: Any) -> tuple[str, int, bytes]:
    """SHA-256, size and first bytes of a seekable binary file, read from its start."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    file.seek(0)
    while piece := file.read(_HASH_PIECE):
        if not isinstance(piece, bytes):
            raise ValueError("file input must be open in binary mode; open it with 'rb'")
        if not head:
            head = piece[:16]
        digest.update(piece)
        size += len(piece)
    file.seek(0)
    return digest.hexdigest(), size, head


def open_source(value: Any) -> Source:
    """Open a file input for upload (in a worker thread: it opens, stats and hashes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        kind = content_type_of(None, data[:16])
        name = "file" + suffix_for(kind)
        key: tuple[Any, ...] = ("sha256", hashlib.sha256(data).hexdigest(), len(data), name, kind)
        return Source(data, name, kind, len(data), key)
    if isinstance(value, (os.PathLike, anyio.Path)):
        path = Path(os.fspath(value))
        opened = path.open("rb")
        try:
            status = os.fstat(opened.fileno())
            head = opened.read(16)
            opened.seek(0)
        except BaseException:
            opened.close()
            raise
        kind = content_type_of(path.name, head)
        key = (
            "path",
            str(path.resolve()),
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            kind,
        )
        return Source(opened, path.name, kind, status.st_size, key, opened)
    raw_name = getattr(value, "name", None)
    given = os.path.basename(raw_name) if isinstance(raw_name, str) and raw_name else None
    if value.seekable():
        with _lock_for(value):
            digest, size, head = _hash_file(value)
        kind = content_type_of(given, head)
        name = given or "file" + suffix_for(kind)
        return Source(value, name, kind, size, ("sha256", digest, size, name, kind))
    kind = content_type_of(given, b"")
    return Source(value, given or "file" + suffix_for(kind), kind, None, None)


def _read_data(value: Any, limit: int) -> tuple[str, int]:
    """A file input as a ``data:`` URI and its size (in a worker thread): at most
    ``limit`` bytes are read, past them :class:`FileTooLarge`."""
    name: str | None = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, (os.PathLike, anyio.Path)):
        path = Path(os.fspath(value))
        name = path.name
        with path.open("rb") as opened:
            data = opened.read(limit + 1)
    else:
        raw_name = getattr(value, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
        with _lock_for(value):
            if value.seekable():
                value.seek(0)
            data = value.read(limit + 1)
        if not isinstance(data, bytes):
            raise ValueError("file input must be open in binary mode; open it with 'rb'")
    if len(data) > limit:
        raise FileTooLarge(len(data), limit)
    return data_uri(data, content_type_of(name, data[:16])), len(data)


async def encode_inputs(
    value: Any,
    *,
    mode: FileEncoding,
    group: FileGroup,
    upload: Callable[[Any], Awaitable[tuple[str, int]]],
    limit: int = MAX_DATA_BYTES,
) -> Any:
    """A copy of a model input with every file input replaced by what is sent for it:
    its uploaded URL (``upload(value)``), or a ``data:`` URI (all of the call's files
    together at most ``limit`` bytes). Each object is encoded once per ``group``."""
    total = 0
    counted: set[int] = set()

    async def encode(item: Any) -> Any:
        nonlocal total
        if is_file_input(item):
            if mode == "data":
                text, size = await group.encoded(
                    item, mode, lambda: anyio.to_thread.run_sync(_read_data, item, limit)
                )
                if id(item) not in counted:
                    counted.add(id(item))
                    total += size
                    if total > limit:
                        raise FileTooLarge(total, limit)
                return text
            text, _ = await group.encoded(item, mode, lambda: upload(item))
            return text
        if isinstance(item, Mapping):
            return {key: await encode(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [await encode(inner) for inner in item]
        return item

    return await encode(value)


@dataclass
class _Cached:
    url: str
    file_id: str
    until: float  # on the event loop's clock


def _valid_for(uploaded: UploadedFile) -> float:
    """How long (seconds from now) an upload may be reused."""
    if uploaded.expires_at:
        try:
            expires = datetime.fromisoformat(uploaded.expires_at.replace("Z", "+00:00"))
        except ValueError:
            return CACHE_LIFETIME
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        left = (expires - datetime.now(timezone.utc)).total_seconds() - EXPIRY_MARGIN
        return max(0.0, min(left, CACHE_LIFETIME))
    return CACHE_LIFETIME


class UploadCache:
    """A client's uploads, reused by content while they live (see the module's text).
    Bounded to ``size`` files; concurrent uploads of one content share one request."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()
        self._flights: dict[tuple[Any, ...], _Flight[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _hit(self, key: tuple[Any, ...]) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until <= anyio.current_time():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.url

    async def url(
        self, key: tuple[Any, ...] | None, upload: Callable[[], Awaitable[UploadedFile]]
    ) -> str:
        """The URL of an upload of ``key``'s content: a live one from before, else
        ``upload()``'s (``key`` ``None``: always a new upload, not remembered)."""
        if key is None:
            return (await upload()).url
        cache_key = key

        async def fresh() -> str:
            uploaded = await upload()
            until = anyio.current_time() + _valid_for(uploaded)
            self._entries[cache_key] = _Cached(uploaded.url, uploaded.id, until)
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return uploaded.url

        hit = self._hit(key)
        if hit is not None:
            return hit
        return await _shared(self._flights, key, fresh, keep=False)

    def forget(self, file_id: str) -> None:
        """Drop the upload ``file_id`` (it was deleted)."""
        for key in [key for key, entry in self._entries.items() if entry.file_id == file_id]:
            del self._entries[key]


class ThreadedBody:
    """A request body from a synchronous iterator of bytes (httpx's multipart encoder,
    which reads a file as it goes), each piece produced in a worker thread so that no
    file read blocks the event loop. Not an async generator: nothing is left to the
    garbage collector when a request stops early."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._iterator: Iterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = iter(self._chunks)
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._chunks)
        piece = await anyio.to_thread.run_sync(next, self._iterator, None)
        if piece is None:
            raise StopAsyncIteration
        return piece


# -- the Files API ----------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """A file on Replicate's Files API. Pass ``url`` (the API's ``urls.get``) as a model
    input; it lives until ``expires_at`` or until deleted."""

    id: str
    url: str
    name: str | None = None
    content_type: str | None = None
    size: int | None = None
    checksums: Mapping[str, str] = field(default_factory=dict, repr=False)
    metadata: Any = field(default=None, repr=False)
    created_at: str | None = None
    expires_at: str | None = None


def read_uploaded_file(data: Mapping[str, Any], text: str) -> UploadedFile:
    """A file object of the Files API; :class:`UnexpectedResponseFormat` without an
    ``id`` or a ``urls.get``."""
    file_id, urls = data.get("id"), data.get("urls")
    url = urls.get("get") if isinstance(urls, dict) else None
    if not isinstance(file_id, str) or not file_id or not isinstance(url, str) or not url:
        raise UnexpectedResponseFormat(text, "a file object needs an id and urls.get")

    def text_of(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    size = data.get("size")
    checksums = data.get("checksums")
    return UploadedFile(
        id=file_id,
        url=url,
        name=text_of("name"),
        content_type=text_of("content_type"),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        checksums={k: v for k, v in checksums.items() if isinstance(v, str)}
        if isinstance(checksums, dict)
        else {},
        metadata=data.get("metadata"),
        created_at=text_of("created_at"),
        expires_at=text_of("expires_at"),
    )
