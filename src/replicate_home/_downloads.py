"""Output files of predictions, downloaded: read, streamed or saved.

A :class:`FileOutput` is one file a prediction produced, an ``https:`` URL or a ``data:``
URI. Reading it streams in bounded memory, retries transient failures, checks the
length the server promised and follows the caller's cancellation; saving it writes a
temporary file in the target directory and renames it into place, so a failed or
cancelled download leaves nothing behind and nothing is ever written outside that
directory.

The API token goes only to the origin it belongs to (the client's own service URL);
Replicate's delivery hosts (``replicate.delivery``) serve outputs without it, so a
``FileOutput`` taken from :attr:`Prediction.files` sends no credentials at all.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import mimetypes
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote_to_bytes, urlsplit

import anyio
import httpx

from ._bounded import BodyReader
from ._exceptions import DownloadFailed, UnexpectedResponseFormat
from ._media import suffix_for
from ._saving import CLEANUP_GRACE, write_atomically

__all__ = [
    "DEFAULT_READ_LIMIT",
    "Downloads",
    "FileOutput",
    "file_urls",
    "origin_of",
]

#: ``read()`` refuses a file larger than this (stream or save bigger ones).
DEFAULT_READ_LIMIT = 256 * 1024 * 1024
#: Seconds a whole download may take unless the caller says otherwise.
DEFAULT_DOWNLOAD_TIMEOUT = 300.0
#: Size of the pieces read from the network and written to disk.
CHUNK_SIZE = 64 * 1024
#: Transient failures retried per download, and the first backoff (doubling).
DOWNLOAD_RETRIES = 3
RETRY_DELAY = 0.25

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_DATA_URI = re.compile(r"^data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*?)(?P<b64>;base64)?,", re.I)


def _is_file_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value[:5].lower() == "data:":
        return _DATA_URI.match(value) is not None
    parts = urlsplit(value)
    return parts.scheme in ("https", "http") and bool(parts.netloc)


def file_urls(output: Any) -> list[str]:
    """Every file URL in ``output`` (``https:``, ``http:`` or ``data:`` strings), in
    order, however deep in lists and objects. Text is not a file, even if it is a URL
    inside a longer string."""
    found: list[str] = []
    stack: list[Any] = [output]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _is_file_url(value):
                found.append(value)
        elif isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
    return found


def _shown(url: str) -> str:
    """A URL as an error shows it: a ``data:`` URI cut short, no query (it may be a
    signature)."""
    if url[:5].lower() == "data:":
        return url[:40] + "…" if len(url) > 40 else url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Gate(Protocol):
    """A client's limit on requests in flight (the exchange's ``RequestGate``)."""

    async def acquire(self) -> None: ...

    def release(self) -> None: ...


class Downloads:
    """How the :class:`FileOutput` values a client hands out download: through the
    client's own connection pool and request gate while it is open (a short-lived HTTP
    client of their own once it is closed), with its token for its own origin only, its
    ``timeout`` for a whole download and its ``max_response_bytes`` for ``read()``."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        auth_origin: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.auth_origin = auth_origin
        self.headers: dict[str, str] = dict(headers or {})
        #: The client's HTTP client and gate while it is open (set by the client).
        self.http: httpx.AsyncClient | None = None
        self.gate: Gate | None = None

    def __repr__(self) -> str:
        return f"Downloads(auth_origin={self.auth_origin!r}, timeout={self.timeout!r})"


def origin_of(url: httpx.URL) -> str:
    """``scheme://host[:port]`` (the port only when not the scheme's default)."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = url.port or default
    host = url.host
    suffix = "" if port == default else f":{port}"
    return f"{url.scheme}://{host}{suffix}"


class FileOutput:
    """One output file of a prediction: read it, stream it or save it.

    ``url`` is the file's ``https:`` URL or ``data:`` URI, exactly as the service gave it;
    ``content_type`` is its media type where known before downloading (a ``data:`` URI
    says it; otherwise it is guessed from the URL's suffix), else ``None``.

    A ``FileOutput`` from a client (``prediction.files``, ``ImageResponse.files``)
    downloads through that client's connection pool while the client is open, bounds a
    download by the client's ``timeout`` and ``read()`` by its ``max_response_bytes``.
    Given ``http_client``, it uses that one (left open); otherwise a short-lived client
    of its own. ``headers`` (e.g. the API token) are sent only when a request goes to
    ``auth_origin`` (``scheme://host[:port]``): never to any other host, nor after a
    redirect to one. ``timeout`` bounds a whole ``read()``, ``save()`` or
    ``aiter_bytes()`` (seconds; each also takes a ``timeout=`` of its own, and any
    caller can bound one with ``anyio.fail_after``).
    """

    __slots__ = (
        "_auth_origin",
        "_downloads",
        "_headers",
        "_http",
        "_timeout",
        "content_type",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        auth_origin: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not _is_file_url(url):
            raise ValueError("url must be an https:, http: or data: URL")
        self.url = url
        self._http = http_client
        self._headers = dict(headers or {})
        self._auth_origin = auth_origin
        self._timeout = None if timeout is None else _check_timeout(timeout)
        self._downloads: Downloads | None = None
        self.content_type = self._guess_type()

    @classmethod
    def _via(cls, url: str, downloads: Downloads | None) -> FileOutput:
        """A file that downloads as a client says (``downloads``)."""
        file = cls(url)
        file._downloads = downloads
        return file

    def __repr__(self) -> str:
        return f"FileOutput({_shown(self.url)!r}, content_type={self.content_type!r})"

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileOutput):
            return NotImplemented
        return self.url == other.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def is_data(self) -> bool:
        """Whether the file is inline (a ``data:`` URI): reading it needs no request."""
        return self.url[:5].lower() == "data:"

    @property
    def suffix(self) -> str:
        """The file suffix :meth:`save` gives it (from its content type)."""
        return suffix_for(self.content_type)

    def _guess_type(self) -> str | None:
        if self.is_data:
            match = _DATA_URI.match(self.url)
            assert match is not None  # checked in __init__
            return match["type"].strip().lower() or "text/plain"
        guessed, _ = mimetypes.guess_type(urlsplit(self.url).path)
        return guessed

    def _data(self) -> bytes:
        match = _DATA_URI.match(self.url)
        assert match is not None
        payload = self.url[match.end() :]
        if match["b64"]:
            try:
                return base64.b64decode(unquote_to_bytes(payload), validate=False)
            except (binascii.Error, ValueError) as error:
                raise DownloadFailed(_shown(self.url), f"bad base64 data: {error}") from None
        return unquote_to_bytes(payload)

    # -- what applies: this file's own options, else its client's ----------------------

    def _seconds(self, timeout: float | None) -> float:
        if timeout is not None:
            return _check_timeout(timeout)
        if self._timeout is not None:
            return self._timeout
        if self._downloads is not None:
            return self._downloads.timeout
        return DEFAULT_DOWNLOAD_TIMEOUT

    def _credentials(self) -> tuple[str | None, dict[str, str]]:
        if self._auth_origin is not None or self._headers:
            return self._auth_origin, self._headers
        if self._downloads is not None:
            return self._downloads.auth_origin, self._downloads.headers
        return None, {}

    # -- reading --------------------------------------------------------------------

    async def aiter_bytes(
        self, chunk_size: int = CHUNK_SIZE, *, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Yield the file's bytes in pieces of at most ``chunk_size``, in bounded memory.
        A transient failure (an error status worth retrying, a broken connection, a
        short body) is retried, the download resuming after the bytes already yielded.
        The whole download is bounded by ``timeout`` seconds (the file's by default).
        Close the generator if you stop early."""
        if self.is_data:
            data = self._data()
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            return
        deadline = anyio.current_time() + self._seconds(timeout)
        async with contextlib.aclosing(self._pieces(deadline)) as pieces:
            async for piece in pieces:
                for start in range(0, len(piece), chunk_size):
                    yield piece[start : start + chunk_size]

    async def read(self, *, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
        """The whole file. Raises :class:`DownloadFailed` if it is larger than
        ``max_bytes`` (by default the client's ``max_response_bytes``, or 256 MiB for a
        ``FileOutput`` of your own: stream or save a bigger file instead), on a failed
        download, or after ``timeout`` seconds."""
        limit = max_bytes
        if limit is None:
            limit = DEFAULT_READ_LIMIT if self._downloads is None else self._downloads.max_bytes
        if self.is_data:
            data = self._data()
            if len(data) > limit:
                raise DownloadFailed(_shown(self.url), f"larger than {limit} bytes")
            return data
        deadline = anyio.current_time() + self._seconds(timeout)
        parts: list[bytes] = []
        async with contextlib.aclosing(self._pieces(deadline, limit)) as pieces:
            async for piece in pieces:
                parts.append(piece)
        return b"".join(parts)

    async def save(
        self,
        path_or_dir: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        timeout: float | None = None,
    ) -> Path:
        """Write the file to disk and return its path.

        A directory gets a file named by this library (``output`` and the suffix of the
        content type; ``output-2`` … if taken, never a name from the URL): an existing
        one, or a path that doesn't exist and has no suffix (``"saved"``, ``"out/"``),
        which is created, as the command line's ``--save DIR`` does. A path with a
        suffix (``"cat.png"``) is the file itself, its directory created if needed. The
        bytes go to a temporary file in the same directory, renamed into place once
        complete: a failed or cancelled download leaves no partial file. An existing
        file is never replaced unless ``overwrite`` (then ``FileExistsError``).
        ``timeout`` as for :meth:`read`.
        """
        raw = os.fspath(path_or_dir)
        target = Path(raw)
        if await _names_a_directory(raw, target):
            return await self.save_as(target, "output" + self.suffix, rename=True, timeout=timeout)
        return await self.save_as(target.parent, target.name, overwrite=overwrite, timeout=timeout)

    async def save_as(
        self,
        directory: str | os.PathLike[str],
        name: str,
        *,
        overwrite: bool = False,
        rename: bool = False,
        timeout: float | None = None,
    ) -> Path:
        """Write the file as ``name`` in ``directory`` (created if needed) and return its
        path. ``name`` is a plain file name (no directory part, else ``ValueError``). A
        taken name is replaced with ``overwrite``, given ``-2``, ``-3`` … before its
        suffix with ``rename``, else refused (``FileExistsError``)."""
        seconds = self._seconds(timeout)

        async def fill(file: anyio.AsyncFile[bytes]) -> None:
            if self.is_data:
                await file.write(self._data())
                return
            deadline = anyio.current_time() + seconds
            async with contextlib.aclosing(self._pieces(deadline)) as pieces:
                async for piece in pieces:
                    await file.write(piece)

        return await write_atomically(directory, name, fill, overwrite=overwrite, rename=rename)

    # -- the one download loop --------------------------------------------------------

    async def _pieces(
        self, deadline: float, limit: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The file's decoded bytes, piece by piece: every network wait under
        ``deadline`` (never a scope across a ``yield``), at most ``limit`` bytes in all.
        A transient failure before or during the body is retried (up to
        :data:`DOWNLOAD_RETRIES` times, backing off), resuming after the bytes already
        delivered; the length a server promised is checked."""
        delivered = 0
        attempt = 0
        async with self._connection() as http:
            while True:
                try:
                    pieces = self._attempt(http, deadline, skip=delivered)
                    async with contextlib.aclosing(pieces):
                        async for piece in pieces:
                            delivered += len(piece)
                            _check_size(delivered, limit, self.url)
                            yield piece
                except DownloadFailed as failure:
                    if not failure.transient or attempt >= DOWNLOAD_RETRIES:
                        raise
                else:
                    return
                attempt += 1
                with anyio.CancelScope(deadline=deadline) as scope:
                    await anyio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
                if scope.cancelled_caught:
                    self._timed_out()

    async def _attempt(
        self, http: httpx.AsyncClient, deadline: float, *, skip: int
    ) -> AsyncGenerator[bytes, None]:
        """One request's body, after its first ``skip`` bytes (what an earlier attempt
        delivered already)."""
        async with self._response(http, deadline) as body:
            while (piece := await self._next(body, deadline)) is not None:
                if skip:
                    if len(piece) <= skip:
                        skip -= len(piece)
                        continue
                    piece, skip = piece[skip:], 0
                yield piece
            _check_length(body, self.url)

    def _timed_out(self) -> NoReturn:
        raise DownloadFailed(_shown(self.url), "timed out (the download's timeout passed)")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """The HTTP client to download with: the one given, else the owning client's
        while it is open, else a short-lived one of this download's own."""
        if self._http is not None:
            yield self._http
            return
        downloads = self._downloads
        if downloads is not None and downloads.http is not None and not downloads.http.is_closed:
            yield downloads.http
            return
        async with _own_client() as http:
            yield http

    async def _next(self, body: BodyReader, deadline: float) -> bytes | None:
        piece: bytes | None = None
        with anyio.CancelScope(deadline=deadline) as scope:
            try:
                piece = await body.next()
            except _TRANSIENT_ERRORS as error:
                raise _failure(self.url, error, transient=True) from error
            except (httpx.HTTPError, UnexpectedResponseFormat) as error:
                raise _failure(self.url, error) from error
        if scope.cancelled_caught:
            self._timed_out()
        return piece

    @contextlib.asynccontextmanager
    async def _response(
        self, http: httpx.AsyncClient, deadline: float
    ) -> AsyncIterator[BodyReader]:
        """The file's response body, its status checked, under the owning client's
        request gate (held until the body is closed, as its connection is)."""
        downloads = self._downloads
        gate = downloads.gate if downloads is not None and http is downloads.http else None
        if gate is not None:
            with anyio.CancelScope(deadline=deadline) as scope:
                await gate.acquire()
            if scope.cancelled_caught:
                self._timed_out()
        try:
            response: httpx.Response | None = None
            with anyio.CancelScope(deadline=deadline) as scope:
                response = await self._follow(http)
            if response is None:
                self._timed_out()
            body = BodyReader(response, _NO_LIMIT, "the file")
            try:
                _check_status(response, self.url)
                yield body
            finally:
                await body.aclose()  # shielded inside, with a short deadline
        finally:
            if gate is not None:
                gate.release()

    async def _follow(self, http: httpx.AsyncClient) -> httpx.Response:
        """The response to the file's GET, redirects followed by hand (at most
        :data:`MAX_REDIRECTS`): credentials only ever to their own origin, and never from
        https down to http."""
        auth_origin, headers = self._credentials()
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send(http, url, auth_origin, headers)
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_GRACE):
                await response.aclose()
            url = _redirect_target(response.url, location, self.url)
        raise DownloadFailed(_shown(self.url), f"more than {MAX_REDIRECTS} redirects")

    async def _send(
        self, http: httpx.AsyncClient, url: str, auth_origin: str | None, headers: dict[str, str]
    ) -> httpx.Response:
        """One GET, never redirected; the credentials only on ``auth_origin`` (and not
        even a header or cookie the HTTP client adds by default anywhere else)."""
        try:
            request = http.build_request("GET", url)
        except (httpx.InvalidURL, ValueError) as error:
            raise DownloadFailed(_shown(self.url), f"a URL it can't send: {error}") from None
        home = auth_origin is not None and origin_of(request.url) == auth_origin
        if home:
            request.headers.update(headers)
        else:
            for name in ("authorization", "cookie"):
                request.headers.pop(name, None)
        try:
            return await http.send(
                request,
                stream=True,
                follow_redirects=False,
                auth=httpx.USE_CLIENT_DEFAULT if home else None,
            )
        except _TRANSIENT_ERRORS as error:
            raise _failure(self.url, error, transient=True) from error
        except httpx.HTTPError as error:
            raise _failure(self.url, error) from error


#: Redirects a download follows at most.
MAX_REDIRECTS = 5
#: ``BodyReader``'s limit where the caller applies its own (or none: a save).
_NO_LIMIT = 1 << 62


def _check_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (timeout > 0 and math.isfinite(timeout))
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _check_size(size: int, limit: int | None, url: str) -> None:
    if limit is not None and size > limit:
        raise DownloadFailed(_shown(url), f"larger than {limit} bytes")


def _check_status(response: httpx.Response, url: str) -> None:
    if not response.is_success:
        failure = DownloadFailed(_shown(url), f"HTTP {response.status_code}")
        failure.transient = response.status_code in _TRANSIENT_STATUSES
        raise failure


def _redirect_target(at: httpx.URL, location: str, url: str) -> str:
    """Where a redirect points, if a download may follow it: http(s), and not from
    https down to http."""
    try:
        target = at.join(location)
    except (httpx.InvalidURL, ValueError):
        raise DownloadFailed(_shown(url), "redirected to a URL it can't follow") from None
    if target.scheme not in ("http", "https") or (at.scheme == "https" and target.scheme == "http"):
        raise DownloadFailed(_shown(url), "redirected to a URL it won't follow")
    return str(target)


def _failure(url: str, error: Exception, *, transient: bool = False) -> DownloadFailed:
    failure = DownloadFailed(_shown(url), f"{type(error).__name__}: {error}", transient=transient)
    failure.__cause__ = error
    return failure


def _check_length(body: BodyReader, url: str) -> None:
    """A body shorter or longer than its ``Content-Length`` is not the file (only for
    an unencoded body: a compressed one's length is of what was sent)."""
    headers = body.response.headers
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return
    raw = headers.get("content-length", "")
    if raw.isdigit() and int(raw) != body.size:
        raise DownloadFailed(
            _shown(url), f"got {body.size} of {int(raw)} bytes promised", transient=True
        )


@contextlib.asynccontextmanager
async def _own_client() -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_GRACE):
            await client.aclose()


async def _names_a_directory(raw: str, target: Path) -> bool:
    """Whether ``save()``'s path means a directory: an existing one, one that ends with
    a separator, or a path that doesn't exist and whose name has no suffix (an output
    file is never wanted without one: ``save("saved")`` is a directory to create, not a
    PNG file named ``saved``)."""
    path = anyio.Path(target)
    if await path.is_dir() or raw.endswith(("/", os.sep)):
        return True
    return not target.suffix and not await path.exists()
