"""The output archive: every output file of a run kept on disk as its cell ends.

Replicate deletes an API prediction's inputs, outputs and files an hour after it ends,
and an emulator's files die with it; a results database that kept only URLs would show
dead links a day later. So when a cell ends, its output files (images, audio, video, any
file) are recorded ``pending`` with the cell's end, then downloaded into the archive
beside the database (:attr:`ResultsStore.archive`) and recorded ``kept``; text outputs
are in the database itself. The report, and any later reader, read the archive
(:meth:`ResultsStore.files`), never the service.

Each file is named by the SHA-256 of its bytes (``ab/ab12…ef.png``): one copy however
many cells made it, and a name no server chose. Its content type is taken from its
bytes where they tell (PNG, JPEG, GIF, WebP, WAV, MP3, Ogg, FLAC, MP4, WebM, PDF), else
from what the service declared; the suffix comes from a short list of media types, so
no kept output opens as a page. Downloads go through the client's
:class:`~replicate_home.FileOutput` (its connection pool, request gate, deadline and
credential rules; streamed in pieces, never held whole) into a temporary file renamed
into place once complete. A file that could not be kept is recorded ``failed`` (with
why) or ``too large`` (over the size cap), and a resume or ``fetch_files`` (``report
--fetch``) tries again while the service still has it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from .._client import BaseClient
from .._downloads import FileOutput, file_urls
from .._exceptions import ReplicateHomeError
from .._media import sniff
from .._replicate_api import ReplicateAPI
from .._saving import write_atomically
from ._file_store import ArchivedFile
from ._store import ResultsStore

__all__ = [
    "ARCHIVE_DOWNLOADS",
    "DEFAULT_MAX_FILE_BYTES",
    "RETRIED",
    "ArchivePolicy",
    "archive_name",
    "fetch_files",
    "keep_cell_files",
    "output_files",
    "sniff_content_type",
]

#: The largest output file a run keeps unless told otherwise: 1 GiB.
DEFAULT_MAX_FILE_BYTES = 1024 * 1024 * 1024
#: Output files a run downloads at once (each also passes the client's request gate).
ARCHIVE_DOWNLOADS = 4
#: How long removing a staged file may take while a download is being cancelled.
CLEANUP_GRACE = 2.0

#: The suffixes a kept file may get; any other content type is kept as ``.bin``, so
#: that no output opens as a page (``.html``, ``.svg``) from the report.
_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/avif": ".avif",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/ogg": ".ogv",
    "video/quicktime": ".mov",
    "text/plain": ".txt",
    "application/json": ".json",
    "application/pdf": ".pdf",
}


@dataclass(frozen=True)
class ArchivePolicy:
    """What a run keeps of its output files: all of them (``keep``), each up to
    ``max_file_bytes`` (``None``: no cap), or none. Recorded with the run, so a resume
    keeps what the run would have."""

    keep: bool = True
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        cap = self.max_file_bytes
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"max_file_bytes must be a positive whole number or None, not {cap!r}")

    def settings(self) -> dict[str, Any]:
        """As the run's settings record it."""
        return {"keep": self.keep, "max_file_bytes": self.max_file_bytes}

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> ArchivePolicy:
        """The policy a run recorded (a run from before the archive: the default)."""
        recorded = settings.get("archive")
        if not isinstance(recorded, Mapping):
            return cls()
        cap = recorded.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            cap = DEFAULT_MAX_FILE_BYTES  # not a cap this library wrote: the default
        return cls(bool(recorded.get("keep", True)), cap)


def output_files(output: Any) -> list[str]:
    """The URLs of the files in a finished prediction's ``output``: a file URL, a list of
    them, or file URLs anywhere in an object. A text output (a string, or chunks, that
    is not all file URLs) has none, even if a chunk is a URL."""
    if isinstance(output, str) or (
        isinstance(output, (list, tuple)) and all(isinstance(item, str) for item in output)
    ):
        items = [output] if isinstance(output, str) else list(output)
        urls = file_urls(items)
        return urls if items and len(urls) == len(items) else []
    return file_urls(output)


def sniff_content_type(head: bytes, declared: str | None) -> str:
    """A file's content type: from its first bytes where they tell, else ``declared``
    (what the service said, or its URL's suffix), else ``application/octet-stream``."""
    base = (declared or "").split(";", 1)[0].strip().lower()
    return sniff(head) or base or "application/octet-stream"


def archive_name(sha256: str, content_type: str | None) -> str:
    """Where a kept file is in the archive, relative to it: ``ab/ab12…ef.png``, the
    SHA-256 of its bytes and a suffix for its content type (``.bin`` for a type not in
    a short list of media, text and document types)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return f"{sha256[:2]}/{sha256}{_SUFFIXES.get(base, '.bin')}"


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the run's cap of {limit} bytes (max_file_bytes)")


@dataclass(frozen=True)
class _Kept:
    name: str
    sha256: str
    content_type: str
    size: int


async def _download(file: FileOutput, archive: Path, max_bytes: int | None) -> _Kept:
    """Stream ``file`` into the archive; its name there once complete."""
    digest = hashlib.sha256()
    head = bytearray()
    size = 0

    async def fill(out: anyio.AsyncFile[bytes]) -> None:
        nonlocal size
        async with contextlib.aclosing(file.aiter_bytes()) as pieces:
            async for piece in pieces:
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise _TooLarge(max_bytes)
                if len(head) < 64:
                    head.extend(piece[: 64 - len(head)])
                digest.update(piece)
                await out.write(piece)

    # Written under a staging name (removed if the download fails or is cancelled), then
    # moved to the name of its bytes.
    staged = await write_atomically(archive, f".staged-{secrets.token_hex(8)}", fill)
    try:
        sha256 = digest.hexdigest()
        content_type = sniff_content_type(bytes(head), file.content_type)
        name = archive_name(sha256, content_type)
        await anyio.to_thread.run_sync(_settle, staged, archive / name)
    except BaseException:
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_GRACE):
            await anyio.to_thread.run_sync(_remove, staged)
        raise
    return _Kept(name, sha256, content_type, size)


def _settle(staged: Path, final: Path) -> None:
    """Move complete bytes to their content address (in a worker thread); a file there
    already holds the same bytes, so the staged copy is dropped. Kept files are
    read-only: a report links them (hard links), and an edit through a link must not
    change what the archive holds under their hash."""
    final.parent.mkdir(exist_ok=True)
    if final.exists():
        staged.unlink()
    else:
        os.chmod(staged, 0o444)
        os.replace(staged, final)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _keep_one(
    store: ResultsStore,
    record: ArchivedFile,
    file: FileOutput,
    policy: ArchivePolicy,
    limiter: anyio.CapacityLimiter,
) -> None:
    """Keep one file and record how it went; a failure is recorded, never raised."""
    async with limiter:
        try:
            kept = await _download(file, store.archive, policy.max_file_bytes)
        except _TooLarge as error:
            await store.record_file_problem(record, state="too large", error=str(error))
            return
        except (ReplicateHomeError, OSError, ValueError) as error:
            await store.record_file_problem(record, state="failed", error=str(error))
            return
    await store.record_file_kept(
        record,
        name=kept.name,
        sha256=kept.sha256,
        content_type=kept.content_type,
        size=kept.size,
    )


async def keep_cell_files(
    store: ResultsStore,
    run_id: str,
    cell: int,
    files: Sequence[FileOutput],
    policy: ArchivePolicy,
    limiter: anyio.CapacityLimiter,
) -> None:
    """Keep a just-ended cell's ``files`` (recorded ``pending`` with its end, in
    order), at most ``limiter`` downloads at once."""
    records = await store.files(run_id, cell)
    async with anyio.create_task_group() as group:
        for record in records:
            if record.state == "pending" and record.position < len(files):
                file = files[record.position]
                group.start_soon(_keep_one, store, record, file, policy, limiter)


#: The files a resume tries to keep again: those a run meant to keep and has not.
RETRIED = ("pending", "failed")


async def fetch_files(
    store: ResultsStore,
    run_id: str,
    *,
    client: BaseClient | None = None,
    http_client: httpx.AsyncClient | None = None,
    states: Sequence[str] = ("pending", "failed", "too large", "not kept"),
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    api_token: str | None = None,
) -> list[ArchivedFile]:
    """Try to keep the files of run ``run_id`` that the archive lacks (those in
    ``states``) while the service still has them; return every file of the run as it
    stands after (see :meth:`ResultsStore.files`).

    Downloads go through ``client`` (an open client: its pool, request gate, deadline
    and credentials), else ``http_client``, else, for a run on the official API given
    ``api_token``, a client of the API at the run's recorded origin (the token goes to
    that origin only, where the Files API serves files, never to another host), else a
    short-lived HTTP client with no credentials (Replicate's delivery hosts need none);
    each up to ``max_file_bytes``.
    """
    if client is None and http_client is None and api_token:
        run = await store.run(run_id)
        if run.service == "api" and run.origin and not run.emulator:
            async with ReplicateAPI(api_token, base_url=run.origin) as bound:
                return await fetch_files(
                    store, run_id, client=bound, states=states, max_file_bytes=max_file_bytes
                )
    policy = ArchivePolicy(True, max_file_bytes)
    missing = [file for file in await store.files(run_id) if file.state in states]
    if missing:
        limiter = anyio.CapacityLimiter(ARCHIVE_DOWNLOADS)
        async with anyio.create_task_group() as group:
            for record in missing:
                output = _output_file(record.url, client, http_client)
                if output is None:
                    await store.record_file_problem(record, state="failed", error=_GONE)
                else:
                    group.start_soon(_keep_one, store, record, output, policy, limiter)
    return await store.files(run_id)


#: Why a file whose address was not kept can't be fetched again.
_GONE = "its address was not recorded in full: it can't be fetched again"


def _output_file(
    url: str, client: BaseClient | None, http_client: httpx.AsyncClient | None
) -> FileOutput | None:
    try:
        if client is not None:
            return FileOutput._via(url, client._downloads)
        return FileOutput(url, http_client=http_client)
    except ValueError:  # not a file URL (a data: URI's header only)
        return None
