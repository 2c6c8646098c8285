"""Reading a results database for the viewer: read-only, by windows, cheap to poll.

The viewer never loads a run whole. A grid page is a window of prompt rows (``LIMIT``
and ``OFFSET`` over the ``cells`` table's primary key), the run list counts cells with
``GROUP BY``, and watching a run for changes asks SQLite's ``PRAGMA data_version``
(which changes when any *other* connection commits: the runner's process or this one's
store) before it reads anything; only then does it read one narrow signature per cell
(state, status, end time, output length, attempt) to find which cells changed.

The connection is opened read-only (``mode=ro``): the viewer writes only votes and
thumbs, through :class:`~replicate_home.comparisons.ResultsStore`. It is used from
worker threads one call at a time (``check_same_thread=False`` behind a lock), so the
event loop never waits on the disk.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CELL_COLUMNS", "Reader", "RunInfo", "Window", "media_kind"]

#: The cell columns the viewer shows (every schema version has them).
CELL_COLUMNS = (
    "cell, prompt_index, model_index, model, prompt, state, status, output_text, images,"
    " error, latency, predict_time, ended_at"
)

#: The states of a cell that has not ended.
OPEN_STATES = ("pending", "sending", "running", "interrupted")

_AUDIO = (".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac", ".opus")
_VIDEO = (".mp4", ".webm", ".ogv", ".mov", ".m4v")
_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp")


def media_kind(url: str, content_type: str | None = None) -> str:
    """What an output file is for the page: ``image``, ``audio``, ``video`` or ``file``
    (from its media type when known, else from its URL's suffix or ``data:`` header)."""
    if content_type:
        head = content_type.split("/", 1)[0].lower()
        if head in ("image", "audio", "video"):
            return head
        return "file"
    if url.startswith("data:"):
        head = url[5:].split("/", 1)[0].lower()
        return head if head in ("image", "audio", "video") else "file"
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for suffixes, kind in ((_IMAGE, "image"), (_AUDIO, "audio"), (_VIDEO, "video")):
        if path.endswith(suffixes):
            return kind
    return "file"


@dataclass(frozen=True)
class RunInfo:
    """One run as the list shows it."""

    id: str
    created_at: str
    service: str
    models: tuple[str, ...]
    cells: int
    done: int
    failed: int
    prompts: int


@dataclass(frozen=True)
class Window:
    """A window of a run's grid: the prompt rows shown, their cells, and how many rows
    match the filters in all (for paging)."""

    rows: tuple[int, ...]
    cells: tuple[dict[str, Any], ...]
    matching: int


def _media(images: str | None) -> list[dict[str, str]]:
    try:
        urls = json.loads(images) if images else []
    except ValueError:
        return []
    media = []
    for url in urls if isinstance(urls, list) else []:
        # Only what a page may load: http(s) URLs and data: URIs; nothing else is shown.
        if isinstance(url, str) and url.startswith(("https://", "http://", "data:")):
            media.append({"url": url, "kind": media_kind(url)})
    return media


#: An archived file's name (``ab/ab12…ef.png``): content-addressed, so no path a
#: request chose can leave the archive.
ARCHIVE_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}(\.[a-z0-9]{1,8})?")


def _archived(files: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    """A cell's output files as the page shows them: from the archive when kept (the
    viewer serves them under ``/files/``), else from the service's URL, with why not."""
    media: list[dict[str, Any]] = []
    for file in files:
        name = file["name"]
        if file["state"] == "kept" and isinstance(name, str) and ARCHIVE_NAME.fullmatch(name):
            kind = media_kind(name, file["content_type"])
            media.append({"url": f"/files/{name}", "kind": kind, "kept": True})
            continue
        url = file["url"]
        problem = file["error"] or f"not in the archive ({file['state']})"
        if isinstance(url, str) and url.startswith(("https://", "http://", "data:")):
            media.append({"url": url, "kind": media_kind(url), "kept": False, "problem": problem})
        else:
            media.append({"url": None, "kind": "file", "kept": False, "problem": problem})
    return media


def cell_json(row: sqlite3.Row, files: Sequence[sqlite3.Row] = ()) -> dict[str, Any]:
    """A cell as the page gets it (JSON; every string shown as text, never markup); its
    media from the archive's ``files`` rows when there are any, else its output URLs."""
    return {
        "cell": row["cell"],
        "prompt_index": row["prompt_index"],
        "model_index": row["model_index"],
        "model": row["model"],
        "prompt": row["prompt"],
        "state": row["state"],
        "status": row["status"],
        "text": row["output_text"],
        "media": _archived(files) if files else _media(row["images"]),
        "error": row["error"],
        "latency": row["latency"],
        "predict_time": row["predict_time"],
    }


class Reader:
    """A read-only connection to a results database."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"no results database at {path}")
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._connection.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def data_version(self) -> int:
        """A number that changes whenever another connection committed."""
        ((version,),) = self._rows("PRAGMA data_version")
        return int(version)

    def runs(self) -> list[RunInfo]:
        """Every run, newest first, with its counts."""
        counts = {
            row["run_id"]: row
            for row in self._rows(
                "SELECT run_id, COUNT(*) AS cells, SUM(state = 'done') AS done,"
                " SUM(state = 'done' AND status != 'succeeded') AS failed,"
                " MAX(prompt_index) + 1 AS prompts FROM cells GROUP BY run_id"
            )
        }
        runs = []
        for row in self._rows(
            "SELECT id, created_at, service, models FROM runs ORDER BY created_at DESC, id"
        ):
            count = counts.get(row["id"])
            runs.append(
                RunInfo(
                    row["id"],
                    row["created_at"],
                    row["service"],
                    tuple(json.loads(row["models"])),
                    count["cells"] if count else 0,
                    (count["done"] or 0) if count else 0,
                    (count["failed"] or 0) if count else 0,
                    (count["prompts"] or 0) if count else 0,
                )
            )
        return runs

    def run(self, run_id: str, *, counts: bool = True) -> RunInfo | None:
        """The run named ``run_id``, or ``None``. Without ``counts`` only its row is
        read (and its last prompt row, through the primary key): the cost of a small
        run's, whatever its size."""
        rows = self._rows(
            "SELECT id, created_at, service, models FROM runs WHERE id = ?", (run_id,)
        )
        if not rows:
            return None
        row = rows[0]
        prompts = self.prompt_rows(run_id)
        cells = done = failed = 0
        if counts:
            ((cells, done, failed),) = self._rows(
                "SELECT COUNT(*), SUM(state = 'done'),"
                " SUM(state = 'done' AND status != 'succeeded') FROM cells WHERE run_id = ?",
                (run_id,),
            )
        return RunInfo(
            row["id"],
            row["created_at"],
            row["service"],
            tuple(json.loads(row["models"])),
            cells or 0,
            done or 0,
            failed or 0,
            prompts,
        )

    def prompt_rows(self, run_id: str) -> int:
        """How many prompt rows the run has (its last cell's, by the primary key)."""
        rows = self._rows(
            "SELECT prompt_index FROM cells WHERE run_id = ? ORDER BY cell DESC LIMIT 1",
            (run_id,),
        )
        return int(rows[0][0]) + 1 if rows else 0

    def window(
        self,
        run_id: str,
        *,
        offset: int,
        limit: int,
        models: Sequence[int] | None = None,
        status: str | None = None,
    ) -> Window:
        """Prompt rows ``offset`` .. ``offset + limit`` of the run that match the filters:
        ``models`` (column numbers shown), ``status`` (a row matches when one of its shown
        cells has it: an end status, or a state such as ``running`` or ``pending``).

        Without ``status`` the window is a range of cell numbers (the primary key: the
        same cost in any run); with it, the run's cells are searched."""
        columns = self.columns(run_id)
        shown = "" if models is None else f" AND model_index IN ({','.join('?' * len(models))})"
        if status is None:
            matching = self.prompt_rows(run_id)
            rows = list(range(offset, min(offset + limit, matching)))
            found = self._rows(
                f"SELECT {CELL_COLUMNS} FROM cells WHERE run_id = ? AND cell >= ? AND cell < ?"
                f"{shown} ORDER BY cell",
                [run_id, offset * columns, (offset + limit) * columns, *(models or ())],
            )
            return Window(tuple(rows), tuple(self._json(run_id, found)), matching)
        where = f"run_id = ?{shown}"
        parameters: list[Any] = [run_id, *(models or ())]
        if status in OPEN_STATES:
            where += " AND state = ?"
        else:
            where += " AND state = 'done' AND status = ?"
        parameters.append(status)
        ((matching,),) = self._rows(
            f"SELECT COUNT(DISTINCT prompt_index) FROM cells WHERE {where}", parameters
        )
        rows = [
            row[0]
            for row in self._rows(
                f"SELECT DISTINCT prompt_index FROM cells WHERE {where}"
                " ORDER BY prompt_index LIMIT ? OFFSET ?",
                [*parameters, limit, offset],
            )
        ]
        cells: list[dict[str, Any]] = []
        for row in rows:  # each prompt row's cells: a range of the primary key
            found = self._rows(
                f"SELECT {CELL_COLUMNS} FROM cells WHERE run_id = ? AND cell >= ?"
                f" AND cell < ?{shown} ORDER BY cell",
                [run_id, row * columns, (row + 1) * columns, *(models or ())],
            )
            cells.extend(self._json(run_id, found))
        return Window(tuple(rows), tuple(cells), matching or 0)

    def columns(self, run_id: str) -> int:
        """The run's number of models (cells per prompt row)."""
        rows = self._rows("SELECT models FROM runs WHERE id = ?", (run_id,))
        return len(json.loads(rows[0][0])) if rows else 0

    def signatures(self, run_id: str, low: int, high: int) -> dict[int, tuple[Any, ...]]:
        """One narrow tuple per cell numbered ``low`` .. ``high - 1``, which changes
        whenever the cell does."""
        return {
            row[0]: tuple(row[1:])
            for row in self._rows(
                "SELECT cell, state, status, ended_at, prediction_id, length(output_text),"
                " length(images) FROM cells WHERE run_id = ? AND cell >= ? AND cell < ?",
                (run_id, low, high),
            )
        }

    def progress(self, run_id: str) -> dict[str, int]:
        """The run's cells in all, done, failed and running: the states counted from the
        ``cells_by_state`` index alone, the failed ones among the ended cells."""
        states: dict[str, int] = {
            row[0]: int(row[1])
            for row in self._rows(
                "SELECT state, COUNT(*) FROM cells WHERE run_id = ? GROUP BY state", (run_id,)
            )
        }
        ((failed,),) = self._rows(
            "SELECT COUNT(*) FROM cells WHERE run_id = ? AND state = 'done'"
            " AND status != 'succeeded'",
            (run_id,),
        )
        return {
            "total": sum(states.values()),
            "done": states.get("done", 0),
            "failed": failed,
            "running": states.get("sending", 0) + states.get("running", 0),
        }

    def cells(self, run_id: str, numbers: Sequence[int]) -> list[dict[str, Any]]:
        """These cells of the run, as the page gets them."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(numbers), 500):  # SQLite's parameter limit
            chunk = list(numbers[start : start + 500])
            rows = self._rows(
                f"SELECT {CELL_COLUMNS} FROM cells WHERE run_id = ?"
                f" AND cell IN ({','.join('?' * len(chunk))}) ORDER BY cell",
                [run_id, *chunk],
            )
            found.extend(self._json(run_id, rows))
        return found

    def _json(self, run_id: str, rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
        """``rows`` of cells as the page gets them, with their archived files (one read
        of the ``files`` table over the cells' range of numbers)."""
        if not rows:
            return []
        files: dict[int, list[sqlite3.Row]] = {}
        try:
            for file in self._rows(
                "SELECT f.cell, f.position, f.url, f.state, f.name, f.content_type, f.error"
                " FROM files f JOIN cells c ON c.run_id = f.run_id AND c.cell = f.cell"
                " AND c.attempt = f.attempt WHERE f.run_id = ? AND f.cell >= ? AND f.cell <= ?"
                " ORDER BY f.cell, f.position",
                (run_id, rows[0]["cell"], rows[-1]["cell"]),
            ):
                files.setdefault(file["cell"], []).append(file)
        except sqlite3.OperationalError:  # a database from before the archive
            pass
        return [cell_json(row, files.get(row["cell"], ())) for row in rows]

    def vote_count(self, run_id: str) -> int:
        """The run's votes so far (0 before the votes table exists)."""
        try:
            ((count,),) = self._rows("SELECT COUNT(*) FROM votes WHERE run_id = ?", (run_id,))
        except sqlite3.OperationalError:  # a database from before votes
            return 0
        return int(count)

    def votable(self, run_id: str, row: int) -> list[sqlite3.Row]:
        """The succeeded cells (number, prompt row, model) of prompt row ``row``."""
        columns = self.columns(run_id)
        return self._rows(
            "SELECT cell, prompt_index, model_index, model FROM cells WHERE run_id = ?"
            " AND cell >= ? AND cell < ? AND state = 'done' AND status = 'succeeded'"
            " ORDER BY cell",
            (run_id, row * columns, (row + 1) * columns),
        )

    def pairs_for_vote(self, run_id: str) -> list[sqlite3.Row]:
        """Every succeeded cell (number, prompt row, model) of the run."""
        return self._rows(
            "SELECT cell, prompt_index, model_index, model FROM cells WHERE run_id = ?"
            " AND state = 'done' AND status = 'succeeded' ORDER BY cell",
            (run_id,),
        )
