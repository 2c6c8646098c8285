"""The HTML report of a run: one self-contained page, prompts x models, that works offline.

Rendered by Jinja2 with autoescaping on (every model output is untrusted text), under a
Content-Security-Policy that allows no script at all, so even a template mistake can't
let an output run code. Images are downloaded beside the page (``NAME_files/``), never
hot-linked: a service's image URLs expire, an emulator's die with it. Only files whose
bytes are PNG, JPEG, GIF or WebP are kept, named by what they are, not by their URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx

from ._store import CellRecord, ResultsStore, RunRecord

__all__ = ["MAX_IMAGE_BYTES", "write_report"]

#: The largest image the report saves, in bytes; a larger answer is left out.
MAX_IMAGE_BYTES = 25 * 1024 * 1024
#: Image downloads at once.
DOWNLOADS = 8
#: Seconds one image download may take.
DOWNLOAD_TIMEOUT = 30.0

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
)


def _image_suffix(data: bytes) -> str | None:
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


@dataclass
class _SavedImage:
    url: str
    src: str | None = None  # the page-relative path, when saved
    problem: str | None = None


@dataclass
class _CellView:
    record: CellRecord
    images: list[_SavedImage] = field(default_factory=list)

    @property
    def input_json(self) -> str:
        return json.dumps(dict(self.record.input), indent=2, ensure_ascii=False)


async def write_report(
    store: ResultsStore,
    run_id: str,
    path: str | Path,
    *,
    http_client: httpx.AsyncClient | None = None,
) -> Path:
    """Write the report of run ``run_id`` to ``path`` (an ``.html`` file), its images in
    ``<stem>_files/`` beside it; return the page's path. Needs the ``report`` extra
    (Jinja2). ``http_client`` downloads the images (one without credentials is opened
    by default: image hosts get no token)."""
    try:
        import jinja2
    except ImportError:
        raise ImportError("the report needs Jinja2: pip install 'replicate-home[report]'") from None
    page = Path(path)
    run = await store.run(run_id)
    cells = await store.cells(run_id)
    files = page.with_name(f"{page.stem}_files")
    views = [_CellView(cell) for cell in cells]
    if any(cell.images for cell in cells):
        await anyio.Path(files).mkdir(parents=True, exist_ok=True)
        await _save_images(views, files, http_client)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("replicate_home.comparisons", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = environment.get_template("report.html.j2").render(**_context(run, views))
    await anyio.Path(page).write_text(html, encoding="utf-8")
    return page


def _context(run: RunRecord, views: Sequence[_CellView]) -> dict[str, Any]:
    models = list(run.models)
    rows: dict[int, list[_CellView | None]] = {}
    prompts: dict[int, CellRecord] = {}
    for view in views:
        cell = view.record
        rows.setdefault(cell.prompt_index, [None] * len(models))[cell.model_index] = view
        prompts.setdefault(cell.prompt_index, cell)
    counts: dict[str, int] = {}
    for view in views:
        key = view.record.status or view.record.state
        counts[key] = counts.get(key, 0) + 1
    return {
        "run": run,
        "models": models,
        "rows": [(prompts[index], rows[index]) for index in sorted(rows)],
        "counts": sorted(counts.items()),
        "total": len(views),
        "webhook": _webhook(run),
    }


def _webhook(run: RunRecord) -> str | None:
    """The run's webhook as the report shows it: scheme, host and path (a query may
    carry a secret, and a report is shared), with its events filter."""
    url = run.settings.get("webhook")
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    shown = f"{parts.scheme}://{host}{parts.path}"
    if parts.query:
        shown += "?…"
    events = run.settings.get("webhook_events_filter")
    if isinstance(events, list) and events:
        shown += f" (events: {', '.join(str(event) for event in events)})"
    return shown


async def _save_images(
    views: Sequence[_CellView],
    files: Path,
    http_client: httpx.AsyncClient | None,
) -> None:
    limiter = anyio.CapacityLimiter(DOWNLOADS)
    owned = http_client is None
    http = http_client or httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)
    try:
        async with anyio.create_task_group() as group:
            for view in views:
                for number, url in enumerate(view.record.images):
                    image = _SavedImage(url)
                    view.images.append(image)
                    name = f"cell-{view.record.cell}-{number}"
                    group.start_soon(_save_one, http, image, files / name, limiter)
    finally:
        if owned:
            with anyio.CancelScope(shield=True):
                await http.aclose()


async def _save_one(
    http: httpx.AsyncClient,
    image: _SavedImage,
    stem: Path,
    limiter: anyio.CapacityLimiter,
) -> None:
    async with limiter:
        try:
            data = await _fetch(http, image.url)
        except (httpx.HTTPError, ValueError) as error:
            image.problem = f"not saved: {error}"
            return
        suffix = _image_suffix(data)
        if suffix is None:
            image.problem = "not saved: not a PNG, JPEG, GIF or WebP image"
            return
        target = stem.with_suffix(suffix)
        await anyio.Path(target).write_bytes(data)
        image.src = f"{quote(target.parent.name)}/{quote(target.name)}"


async def _fetch(http: httpx.AsyncClient, url: str) -> bytes:
    """The bytes behind an output URL (``https``/``http``, or a ``data:`` URI), at most
    :data:`MAX_IMAGE_BYTES`."""
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("a data URI that is not base64")
        if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise ValueError("larger than the report keeps")
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise ValueError("a data URI that is not valid base64") from None
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    async with http.stream("GET", url) as response:
        if not response.is_success:
            raise ValueError(f"HTTP {response.status_code}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                raise ValueError("larger than the report keeps")
            chunks.append(chunk)
    return b"".join(chunks)
