"""The HTML report of a run: one self-contained page, prompts x models, that works offline.

Rendered by Jinja2 with autoescaping on (every model output is untrusted text), under a
Content-Security-Policy that allows no script at all, so even a template mistake can't
let an output run code. Output files come from the run's archive (see
:mod:`._archive`), never from the service: they are linked (or copied) beside the page
(``NAME_files/``), so the page shows every kept image, plays every kept audio and video,
and links any other file, with no network, days after the run. A file the archive does
not hold is named with why (``fetch=True``, ``report --fetch``, tries to keep it first).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx

from .._client import BaseClient
from ._archive import fetch_files
from ._file_store import ArchivedFile
from ._standings import standings
from ._store import CellRecord, ResultsStore, RunRecord

__all__ = ["write_report"]

#: Content types the page shows as an image (what every browser decodes).
_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif"})


@dataclass
class _FileView:
    """One output file as the page shows it."""

    file: ArchivedFile
    src: str | None = None  # the page-relative path, when kept

    @property
    def kind(self) -> str:
        """``image``, ``audio``, ``video`` or ``file`` (a link)."""
        content_type = (self.file.content_type or "").split(";", 1)[0]
        if content_type in _IMAGES:
            return "image"
        if content_type.startswith(("audio/", "video/")):
            return content_type.split("/", 1)[0]
        return "file"

    @property
    def shown_url(self) -> str:
        """The file's URL without its query (a signature, maybe), a ``data:`` URI cut."""
        url = self.file.url
        if url[:5].lower() == "data:":
            return url[: url.find(",") + 1 or 40] + "…"
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class _CellView:
    record: CellRecord
    files: list[_FileView] = field(default_factory=list)

    @property
    def input_json(self) -> str:
        return json.dumps(dict(self.record.input), indent=2, ensure_ascii=False)


async def write_report(
    store: ResultsStore,
    run_id: str,
    path: str | Path,
    *,
    fetch: bool = False,
    client: BaseClient | None = None,
    http_client: httpx.AsyncClient | None = None,
    api_token: str | None = None,
) -> Path:
    """Write the report of run ``run_id`` to ``path`` (an ``.html`` file), its files in
    ``<stem>_files/`` beside it (hard links to the archive where the file system allows,
    else copies); return the page's path. Needs the ``report`` extra (Jinja2).

    The page is written from the database and the archive alone, with no network.
    ``fetch`` first tries to keep the files the archive lacks (see
    :func:`fetch_files`), through ``client`` or ``http_client`` if given, else (a run on
    the official API) with ``api_token`` to the run's own API origin only, else an HTTP
    client with no credentials."""
    try:
        import jinja2
    except ImportError:
        raise ImportError("the report needs Jinja2: pip install 'replicate-home[report]'") from None
    page = Path(path)
    run = await store.run(run_id)
    cells = await store.cells(run_id)
    if fetch:
        await fetch_files(
            store, run_id, client=client, http_client=http_client, api_token=api_token
        )
    views = {cell.cell: _CellView(cell) for cell in cells}
    folder = page.with_name(f"{page.stem}_files")
    for file in await store.files(run_id):
        view = _FileView(file)
        if file.path is not None:
            name = file.path.name
            if await anyio.to_thread.run_sync(_place, file.path, folder / name):
                view.src = f"{quote(folder.name)}/{quote(name)}"
        if file.cell in views:
            views[file.cell].files.append(view)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("replicate_home.comparisons", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    context = _context(run, list(views.values()))
    context["standings"] = await standings(store, run_id)
    html = environment.get_template("report.html.j2").render(**context)
    await anyio.Path(page).write_text(html, encoding="utf-8")
    return page


def _place(source: Path, target: Path) -> bool:
    """Put a kept file beside the page (in a worker thread): a hard link, else a copy.
    ``False`` if the archive lost it (removed by hand)."""
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return True  # named by its bytes: it is this file
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links
        shutil.copyfile(source, target)
    return True


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
