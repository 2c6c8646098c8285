"""The image a vision judge is given: the run's own copy from the output archive when
the archive holds it, else the service's URL.

Output URLs on the real service expire an hour after the prediction (its data-retention
rule), so a judge sent the URL later (a long run, a resume, a judge added tomorrow)
would be sent a dead address. A kept copy goes as a file input instead: the client
uploads it through the Files API or sends it as a ``data:`` URI, as its
``file_encoding`` says. Only the official API takes file inputs; on the homepage service
a judge is sent the URL.

A judge's create lost before its answer was recorded is found again by its input
(:func:`same_image`): the listed prediction holds the URL, a ``data:`` URI, or a Files
API URL in place of the file, each compared by the bytes' SHA-256 with the archive's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._exceptions import ReplicateHomeError
from .._replicate_api import ReplicateAPI
from .._uploads import MAX_DATA_BYTES
from ._file_store import ArchivedFile
from ._store import ResultsStore

__all__ = ["first_kept_images", "same_image"]


async def first_kept_images(
    store: ResultsStore, run_id: str, cells: Sequence[int]
) -> dict[int, ArchivedFile]:
    """The archived first image of each of ``cells`` whose copy is kept and still on disk
    (a cell whose file is not kept is left out: its judge gets the URL)."""
    wanted = set(cells)
    kept: dict[int, ArchivedFile] = {}
    for file in await store.files(run_id):
        on_disk = file.path is not None and file.path.is_file()
        if file.cell in wanted and file.position == 0 and file.state == "kept" and on_disk:
            kept[file.cell] = file
    return kept


def kept_path(file: ArchivedFile | None) -> Path | None:
    """Where a kept file's bytes are (a file input), or ``None``."""
    return file.path if file is not None else None


def _data_sha256(uri: str) -> str | None:
    """The SHA-256 of a base64 ``data:`` URI's bytes (``None`` if it is not one, or
    larger than a create may carry)."""
    header, comma, payload = uri.partition(",")
    if not comma or not header.endswith(";base64") or len(payload) > MAX_DATA_BYTES * 4 // 3 + 4:
        return None
    try:
        return hashlib.sha256(base64.b64decode(payload, validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


def _files_api_id(client: ReplicateAPI, url: str) -> str | None:
    """The Files API id of ``url`` if it is one of the client's own files
    (``{base}/v1/files/{id}``), else ``None``: no other host is asked anything."""
    prefix = client.base_url.rstrip("/")
    prefix = prefix if prefix.endswith("/v1") else prefix + "/v1"
    prefix += "/files/"
    if not url.startswith(prefix):
        return None
    file_id = url[len(prefix) :]
    return file_id if file_id and file_id.isascii() and "/" not in file_id else None


async def same_image(
    client: ReplicateAPI, value: object, url: str, kept: ArchivedFile | None
) -> bool:
    """Whether a listed prediction's image input ``value`` is the cell's image: its
    ``url``, or (the archive's copy sent as a file) bytes of the kept file's SHA-256."""
    if value == url:
        return True
    if kept is None or kept.sha256 is None or not isinstance(value, str):
        return False
    if value.startswith("data:"):
        return _data_sha256(value) == kept.sha256
    file_id = _files_api_id(client, value)
    if file_id is None:
        return False
    try:
        uploaded = await client.get_file(file_id)
    except ReplicateHomeError:  # deleted, expired, or not ours: not this cell's
        return False
    return uploaded.checksums.get("sha256") == kept.sha256


async def same_judge_input(
    client: ReplicateAPI,
    listed: Mapping[str, Any],
    wanted: Mapping[str, Any],
    image_input: str | None,
    url: str | None,
    kept: ArchivedFile | None,
) -> bool:
    """Whether a listed prediction's input is the judge input ``wanted``: equal but for
    the image (``image_input``, if any), which :func:`same_image` compares."""
    if image_input is None or url is None:
        return dict(listed) == dict(wanted)
    if set(listed) != set(wanted):
        return False
    others_equal = all(listed[key] == wanted[key] for key in wanted if key != image_input)
    return others_equal and await same_image(client, listed.get(image_input), url, kept)
