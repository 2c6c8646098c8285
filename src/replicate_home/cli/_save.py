"""``--save DIR`` for the command line: every output file of every model, and text.

File names come from the model and the output's position only, never from a URL:
``<model>-<n><suffix>`` for ``generate`` and ``<k>-<model>-<n><suffix>`` for
``compare`` (``k`` is the model's place among the ``-m`` options), the suffix from the
file's content type. A text output is written as ``<model>.txt``. A name already taken
gets ``-2``, ``-3`` … before its suffix: nothing is overwritten, and nothing is written
outside DIR (see :meth:`FileOutput.save_as`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._downloads import FileOutput, file_urls
from .._fanout import ComparisonResult
from .._saving import safe_file_name, save_bytes
from ._common import UsageError

__all__ = [
    "SAVE_HELP",
    "check_save_directory",
    "model_stem",
    "nearest_existing",
    "save_files",
    "save_result",
    "save_text",
]

SAVE_HELP = (
    "save every output file into DIR (created if needed), data: URIs and URLs alike, as "
    "MODEL-N.EXT (compare: K-MODEL-N.EXT, K the model's place in the -m list); a text "
    "output is written as MODEL.txt; a taken name gets -2, -3 …, nothing is overwritten"
)


def check_save_directory(directory: Path) -> None:
    """A :class:`UsageError`, before anything is paid for, when ``--save DIR`` can't be a
    directory: DIR is a file, or the nearest of its parents that exists is one."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(
            f"--save {directory}: a file is there, and --save takes a directory (created if needed)"
        )
    parent = nearest_existing(directory)
    if not parent.is_dir():
        raise UsageError(f"--save {directory}: {parent} is a file, not a directory")


def nearest_existing(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists (the current directory for a
    relative path none of whose parts exist)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def model_stem(model: str) -> str:
    """The part of a model reference that names its files: ``owner/name:version`` →
    ``name``, made a safe file name."""
    return safe_file_name(model.split(":", 1)[0].rsplit("/", 1)[-1])


def _report(path: Path) -> None:
    print(f"saved {path}", file=sys.stderr, flush=True)


async def save_files(files: Sequence[FileOutput], directory: Path, stem: str) -> list[Path]:
    """Save ``files`` as ``stem-1.ext``, ``stem-2.ext`` … in ``directory``."""
    saved = []
    for number, file in enumerate(files, start=1):
        path = await file.save_as(directory, f"{stem}-{number}{file.suffix}", rename=True)
        _report(path)
        saved.append(path)
    return saved


async def save_text(text: str, directory: Path, stem: str) -> Path:
    """Write a text output as ``stem.txt`` (atomically, like a file), or, when the text
    is JSON holding file URLs (a model with file outputs), save those files instead."""
    files = _files_in_json(text)
    if files:
        return (await save_files(files, directory, stem))[-1]
    path = await save_bytes(directory, f"{stem}.txt", text.encode())
    _report(path)
    return path


async def save_result(result: ComparisonResult, directory: Path) -> None:
    """Save one compare row's files (or its text) as ``K-MODEL-N.EXT``."""
    stem = f"{result.index + 1}-{model_stem(result.model)}"
    prediction = result.prediction
    if prediction is not None and prediction.status == "succeeded":
        files = prediction.files
        if files:
            await save_files(files, directory, stem)
            return
    if result.images:
        await save_files([FileOutput(url) for url in result.images], directory, stem)
    elif result.text is not None and result.ok:
        await save_text(result.text, directory, stem)


def _files_in_json(text: str) -> list[FileOutput]:
    try:
        value: Any = json.loads(text)
    except ValueError:
        return []
    if isinstance(value, str):
        return []  # a JSON string is text, even if it looks like a URL
    return [FileOutput(url) for url in file_urls(value)]
