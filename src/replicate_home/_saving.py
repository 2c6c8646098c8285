"""Writing files to disk safely: a temporary file in the target directory, renamed
into place once complete, so a failed or cancelled write leaves nothing behind and
nothing is ever written outside that directory; names made plain file names.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

__all__ = ["CLEANUP_GRACE", "safe_file_name", "save_bytes", "write_atomically"]

#: How long removing a partial file may take when the write is being cancelled.
CLEANUP_GRACE = 2.0

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
    """``name`` made a plain file name: letters, digits, ``.``, ``_`` and ``-`` only, no
    leading dot, so it can't name a directory, a hidden file or a path elsewhere."""
    cleaned = _SAFE_NAME.sub("-", name).strip(".-") or "output"
    return cleaned[:200]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name, not {name!r}")
    if "/" in name or "\\" in name or "\x00" in name or os.sep in name:
        raise ValueError(f"name must be a plain file name without a directory, not {name!r}")
    return name


async def write_atomically(
    directory: str | os.PathLike[str],
    name: str,
    fill: Callable[[anyio.AsyncFile[bytes]], Awaitable[None]],
    *,
    overwrite: bool = False,
    rename: bool = False,
) -> Path:
    """Create ``directory/name`` with what ``fill`` writes: into a temporary file in
    ``directory``, renamed into place once ``fill`` returns; removed (shielded) if it
    fails or is cancelled. See :meth:`FileOutput.save_as` for ``overwrite``/``rename``."""
    folder = Path(os.fspath(directory))
    name = _check_name(name)
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    handle, temp_name = await anyio.to_thread.run_sync(
        lambda: tempfile.mkstemp(prefix=".partial-", suffix=".tmp", dir=folder)
    )
    temp = Path(temp_name)
    try:
        async with await anyio.open_file(handle, "wb", closefd=True) as file:
            await fill(file)
        return await anyio.to_thread.run_sync(_place, temp, folder, name, overwrite, rename)
    except BaseException:
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_GRACE):
            await anyio.to_thread.run_sync(_unlink_quietly, temp)
        raise


async def save_bytes(
    directory: str | os.PathLike[str], name: str, data: bytes, *, rename: bool = True
) -> Path:
    """Write ``data`` as ``directory/name`` atomically (a taken name gets ``-2`` …)."""

    async def fill(file: anyio.AsyncFile[bytes]) -> None:
        await file.write(data)

    return await write_atomically(directory, name, fill, rename=rename)


def _place(temp: Path, folder: Path, name: str, overwrite: bool, may_rename: bool) -> Path:
    """Move the complete ``temp`` to ``folder/name`` (in a worker thread). Without
    ``overwrite`` the name is claimed atomically (a hard link fails if it exists)."""
    os.chmod(temp, 0o644)  # mkstemp makes it private; a saved output is a normal file
    final = folder / name
    # The name is a plain file name, so this holds; checked anyway, as the promise is
    # that nothing lands outside ``folder``.
    if final.parent.resolve() != folder.resolve():
        raise ValueError(f"{name!r} is not a file name inside {folder}")
    if overwrite:
        os.replace(temp, final)
        return final
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    number = 1
    while True:
        try:
            _claim(temp, final)
        except FileExistsError:
            if not may_rename:
                raise FileExistsError(
                    f"{final} exists; pass overwrite=True to replace it"
                ) from None
            number += 1
            final = folder / f"{stem}-{number}{dot}{ext}"
        else:
            return final


def _claim(temp: Path, final: Path) -> None:
    """Rename ``temp`` to ``final`` unless ``final`` exists (atomically where the file
    system has hard links; else by creating ``final`` exclusively first)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError:
        descriptor = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(descriptor)
        os.replace(temp, final)
        return
    os.unlink(temp)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
