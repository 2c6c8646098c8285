"""The viewer's web app: the run list, a run's live grid, and the JSON and event
streams its page script reads.

Starlette, served by hypercorn (:meth:`Viewer.serve`), under asyncio or trio alike.
Pages are Jinja2 templates with autoescaping; the grid itself is drawn by the package's
own script (``static/viewer.js``) from JSON, with ``textContent`` only, so an output is
always text. Database reads run in worker threads, one at a time, on a read-only
connection (:class:`~._reading.Reader`).
"""

from __future__ import annotations

import json
import mimetypes
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..comparisons import ResultsStore
from ..comparisons._ranking import VoteResult
from ..comparisons._standings import standings
from ._live import Hub
from ._reading import ARCHIVE_NAME, Reader, RunInfo
from ._security import TOKEN_HEADER, SecurityMiddleware
from ._votes import PairBook, choose_pair, parse_thumb, parse_vote

__all__ = ["PAGE_ROWS", "Viewer"]

#: Prompt rows in one page of a run's grid (at most :data:`MAX_ROWS`).
PAGE_ROWS = 25
MAX_ROWS = 200
#: Prompt rows drawn at random for a vote before every succeeded cell is read.
PAIR_TRIES = 8
#: Seconds between two keep-alive comments on an idle event stream.
KEEPALIVE = 15.0

_STATIC = Path(__file__).with_name("static")


class Viewer:
    """The viewer of the results database at ``database``.

    ``app`` is its ASGI app (it needs :meth:`serve`, or :meth:`running`, for its reader
    and live updates); :attr:`hub` takes the text chunks of a run this process runs
    (``compare --view``)."""

    def __init__(self, database: str | Path, *, loopback_only: bool = True) -> None:
        self.database = Path(database)
        self.token = secrets.token_urlsafe(24)
        self._reader: Reader | None = None
        self._store: ResultsStore | None = None
        self._pairs = PairBook()
        self._random = random.Random()
        self._limiter = anyio.CapacityLimiter(1)
        self.hub = Hub(self._call)
        self._templates = jinja2.Environment(
            # The run's standings are drawn by the report's own template, shared.
            loader=jinja2.ChoiceLoader(
                [
                    jinja2.PackageLoader("replicate_home.viewer", "templates"),
                    jinja2.PackageLoader("replicate_home.comparisons", "templates"),
                ]
            ),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._extra_routes: list[Route] = []
        self.app = SecurityMiddleware(
            self._starlette(), token=self.token, loopback_only=loopback_only
        )

    # -- lifetime ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Viewer]:
        """Open the database and watch it for the length of the block."""
        self._reader = await anyio.to_thread.run_sync(Reader, self.database)
        try:
            # Votes and thumbs are written through the store (its own connection).
            async with (
                ResultsStore.open(self.database) as store,
                anyio.create_task_group() as group,
            ):
                self._store = store
                group.start_soon(self.hub.run)
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        finally:
            self._store = None
            reader, self._reader = self._reader, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(reader.close)

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the viewer on ``host:port`` for the length of the block; yields its URL."""
        # The package's one hypercorn runner (listening socket first, graceful stop).
        from ..emulator import serve_asgi

        async with self.running(), serve_asgi(self.app, host, port) as url:
            yield url

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        if self._reader is None:
            raise RuntimeError("the viewer is not running")
        return await anyio.to_thread.run_sync(
            partial(method, self._reader, *args), limiter=self._limiter
        )

    # -- routes ----------------------------------------------------------------------------

    def _starlette(self) -> Starlette:
        routes = [
            Route("/", self._runs_page),
            Route("/runs/{run_id:path}/grid", self._grid_page),
            Route("/runs/{run_id:path}/vote", self._vote_page),
            Route("/runs/{run_id:path}/leaderboard", self._leaderboard_page),
            Route("/api/runs", self._runs_json),
            Route("/api/runs/{run_id:path}/window", self._window_json),
            Route("/api/runs/{run_id:path}/events", self._events),
            Route("/api/runs/{run_id:path}/pair", self._pair_json),
            Route("/api/runs/{run_id:path}/votes", self._vote, methods=["POST"]),
            Route("/api/runs/{run_id:path}/thumbs", self._thumb, methods=["POST"]),
            Route("/files/{name:path}", self._archived_file),
            Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        ]
        return Starlette(routes=routes)

    def page(self, name: str, **context: Any) -> HTMLResponse:
        """A page rendered from the template ``name``."""
        html = self._templates.get_template(name).render(
            token=self.token, token_header=TOKEN_HEADER, **context
        )
        return HTMLResponse(html)

    async def run_info(self, run_id: str, *, counts: bool = False) -> RunInfo:
        """The run (its cell counts too, with ``counts``: a read of all its cells)."""
        info: RunInfo | None = await self._call(partial(Reader.run, counts=counts), run_id)
        if info is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return info

    async def _runs_page(self, request: Request) -> Response:
        runs = await self._call(Reader.runs)  # every run's counts: a read of all cells
        return self.page("runs.html.j2", runs=runs, database=str(self.database))

    async def _grid_page(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        return self.page("grid.html.j2", run=run, models_json=json.dumps(list(run.models)))

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            raise RuntimeError("the viewer is not running")
        return self._store

    async def _vote_page(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        return self.page("vote.html.j2", run=run)

    async def _leaderboard_page(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        # Reads the run's cells whole (the summary's percentiles need every latency).
        return self.page(
            "leaderboard.html.j2", run=run, standings=await standings(self.store, run.id)
        )

    async def _pair_json(self, request: Request) -> Response:
        """Two outputs of one prompt from two models, the models hidden."""
        run = await self.run_info(request.path_params["run_id"])
        chosen = await self._choose(run)
        if chosen is None:
            return JSONResponse({"pair": None, "votes": await self._vote_count(run.id)})
        first, second = await self._call(Reader.cells, run.id, list(chosen))
        if first["cell"] != chosen[0]:
            first, second = second, first
        pair = self._pairs.add(
            run.id, first["cell"], second["cell"], first["model"], second["model"]
        )
        return JSONResponse(
            {
                "pair": pair.id,
                "prompt": first["prompt"],
                "a": _blind(first),
                "b": _blind(second),
                "votes": await self._vote_count(run.id),
            }
        )

    async def _choose(self, run: RunInfo) -> tuple[int, int] | None:
        """A pair from a few prompt rows drawn at random (a read of one row each),
        else from every succeeded cell of the run (a run with few pairs to vote on)."""
        for _ in range(PAIR_TRIES if run.prompts else 0):
            row = self._random.randrange(run.prompts)
            chosen = choose_pair(await self._call(Reader.votable, run.id, row), self._random)
            if chosen is not None:
                return chosen
        return choose_pair(await self._call(Reader.pairs_for_vote, run.id), self._random)

    async def _vote_count(self, run_id: str) -> int:
        count: int = await self._call(Reader.vote_count, run_id)
        return count

    async def _vote(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        try:
            pair_id, choice, voter = parse_vote(await _json_body(request))
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        pair = self._pairs.take(run.id, pair_id)
        if pair is None:
            raise HTTPException(409, "that pair was voted on, skipped or forgotten: take another")
        if choice == "skip":
            return JSONResponse({"recorded": False})
        result: VoteResult = "a" if choice == "a" else "b" if choice == "b" else "tie"
        await self.store.record_vote(run.id, pair.cell_a, pair.cell_b, result, voter)
        return JSONResponse({"recorded": True, "a": pair.model_a, "b": pair.model_b})

    async def _thumb(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        try:
            cell, value, voter = parse_thumb(await _json_body(request))
            await self.store.record_thumb(run.id, cell, voter, value)
        except (ValueError, KeyError) as error:
            raise HTTPException(400, str(error)) from None
        return JSONResponse({"recorded": True, "cell": cell, "value": value})

    async def _archived_file(self, request: Request) -> Response:
        """A kept output file, from the archive beside the database (its name is its
        SHA-256: nothing else can be asked for)."""
        name = request.path_params["name"]
        if not ARCHIVE_NAME.fullmatch(name):
            raise HTTPException(404)
        path = self.store.archive / name
        if not await anyio.Path(path).is_file():
            raise HTTPException(404)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        # Never a page of the viewer's origin, whatever the bytes hold.
        return FileResponse(path, media_type=kind, headers={"content-disposition": "inline"})

    async def _runs_json(self, request: Request) -> Response:
        runs = await self._call(Reader.runs)
        return JSONResponse([_run_json(run) for run in runs])

    async def _window_json(self, request: Request) -> Response:
        run = await self.run_info(request.path_params["run_id"])
        return JSONResponse(await self._window(run, request))

    async def _window(self, run: RunInfo, request: Request) -> dict[str, Any]:
        offset, limit, models, status = _window_params(request, len(run.models))
        window = await self._call(
            partial(Reader.window, offset=offset, limit=limit, models=models, status=status),
            run.id,
        )
        cells = [self._with_partial(run.id, cell) for cell in window.cells]
        return {
            "run": _run_json(run),
            "progress": await self.hub.progress(run.id),
            "offset": offset,
            "limit": limit,
            "rows": list(window.rows),
            "matching": window.matching,
            "cells": cells,
        }

    def _with_partial(self, run_id: str, cell: dict[str, Any]) -> dict[str, Any]:
        if cell["state"] != "done":
            text = self.hub.partial_text(run_id, cell["cell"])
            if text is not None:
                return {**cell, "text": text}
        return cell

    async def _events(self, request: Request) -> Response:
        """Server-sent events: a snapshot of the window, then its cells as they change
        and text as it streams."""
        run = await self.run_info(request.path_params["run_id"])
        first = await self._window(run, request)
        cells = [cell["cell"] for cell in first["cells"]]
        return StreamingResponse(
            self._stream(run, cells, partial(self._window, run, request)),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _stream(
        self,
        run: RunInfo,
        cells: Sequence[int],
        window: Callable[[], Awaitable[dict[str, Any]]],
    ) -> AsyncIterator[str]:
        async with self.hub.watch(run.id, cells) as events:
            # Read once watched: a change between the two is in the snapshot or an event.
            yield _event({"type": "snapshot", **await window()})
            while True:
                # No cancel scope spans a yield: the keep-alive timeout wraps the receive.
                event: dict[str, Any] | None = None
                with anyio.move_on_after(KEEPALIVE):
                    try:
                        event = await events.receive()
                    except anyio.EndOfStream:
                        return  # dropped for falling behind: the page reconnects
                yield ": keep-alive\n\n" if event is None else _event(event)


#: The largest JSON body a vote or a thumb may have.
MAX_BODY = 4096


async def _json_body(request: Request) -> object:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ValueError("send JSON (application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ValueError("too large")
    try:
        return json.loads(body)
    except ValueError:
        raise ValueError("not JSON") from None


def _blind(cell: dict[str, Any]) -> dict[str, Any]:
    """What a voter sees of a cell: its output, nothing that names its model."""
    return {"text": cell["text"], "media": cell["media"]}


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "created_at": run.created_at,
        "service": run.service,
        "models": list(run.models),
        "cells": run.cells,
        "done": run.done,
        "failed": run.failed,
        "prompts": run.prompts,
    }


def _window_params(request: Request, columns: int) -> tuple[int, int, list[int] | None, str | None]:
    query = request.query_params
    try:
        offset = max(0, int(query.get("offset", "0")))
        limit = min(MAX_ROWS, max(1, int(query.get("limit", str(PAGE_ROWS)))))
        models = (
            sorted({int(part) for part in query["models"].split(",")})
            if query.get("models")
            else None
        )
    except ValueError as error:
        raise HTTPException(400, f"bad window: {error}") from None
    if models is not None and any(not 0 <= model < columns for model in models):
        raise HTTPException(400, "bad window: no such model column")
    status = query.get("status") or None
    return offset, limit, models, status
