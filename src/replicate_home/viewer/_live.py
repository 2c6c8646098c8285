"""Live updates for the viewer's pages: what changed in a run, pushed as it happens.

One :class:`Hub` per viewer. Every ``interval`` it asks the database whether anything
was committed since it last looked (``PRAGMA data_version``, a few microseconds); only
then does it read the signatures of the cells the pages show (a range of the primary key
per page: a window of prompt rows, never the whole run) and the run's counts, and it
sends the cells that changed to the pages watching them (server-sent events, one bounded
queue per page). A run recorded by another process therefore shows its new cells within
``interval`` plus a read, with no page reload.

Text as it is generated (token by token) does not go through the database: a run that
writes its partial outputs there would commit for every few tokens. When the viewer
runs in the process that runs the comparison (``compare --view``), the runner hands
each text chunk to :meth:`Hub.text` in memory; the hub sends the chunks gathered in each
interval, with the offset they start at, and forgets a cell's partial text once the
database has its end. A viewer in another process shows the whole text when the cell
ends.

A page that falls behind (its queue full) is dropped; the browser's ``EventSource``
reconnects and gets a fresh snapshot, so a slow page costs the viewer bounded memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._reading import Reader

__all__ = ["Hub"]

#: Seconds between two looks at the database (and two flushes of streamed text).
INTERVAL = 0.2
#: Events a page may have waiting before it is dropped (it reconnects).
QUEUE = 64


@dataclass(eq=False)
class _Watcher:
    run_id: str
    cells: frozenset[int]
    send: MemoryObjectSendStream[dict[str, Any]]

    @property
    def span(self) -> tuple[int, int]:
        """The cell numbers ``[low, high)`` its cells lie in."""
        return (min(self.cells), max(self.cells) + 1) if self.cells else (0, 0)


@dataclass
class _Partial:
    text: list[str] = field(default_factory=list)
    length: int = 0
    sent: int = 0  # chunks already sent


class Hub:
    """Watches a results database and streams changes to the pages that show them.

    ``call`` runs a function of the :class:`Reader` off the event loop."""

    def __init__(
        self,
        call: Callable[..., Any],
        *,
        interval: float = INTERVAL,
    ) -> None:
        self._call = call
        self._interval = interval
        self._watchers: set[_Watcher] = set()
        self._signatures: dict[str, dict[int, tuple[Any, ...]]] = {}
        self._version: int | None = None
        self._partials: dict[tuple[str, int], _Partial] = {}
        self._progress: dict[str, tuple[int, dict[str, int]]] = {}

    # -- the runner's side (in-process) ------------------------------------------------

    def text(self, run_id: str, cell: int, chunk: str) -> None:
        """A text chunk of a running cell (called by the runner, on the event loop)."""
        if not chunk:
            return
        partial = self._partials.setdefault((run_id, cell), _Partial())
        partial.text.append(chunk)

    def partial_text(self, run_id: str, cell: int) -> str | None:
        """The text a running cell generated so far (as sent to the pages), when this
        process runs it."""
        partial = self._partials.get((run_id, cell))
        # What was sent so far: the next text event starts where this ends.
        return None if partial is None else "".join(partial.text[: partial.sent])

    # -- the pages' side ---------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self, run_id: str, cells: Collection[int]
    ) -> AsyncIterator[MemoryObjectReceiveStream[dict[str, Any]]]:
        """Changes to ``cells`` of ``run_id`` while in the block."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](QUEUE)
        watcher = _Watcher(run_id, frozenset(cells), send)
        self._watchers.add(watcher)
        known = self._signatures.setdefault(run_id, {})
        fresh = await self._call(Reader.signatures, run_id, *watcher.span)
        for cell, signature in fresh.items():  # cells others watch keep their last look
            known.setdefault(cell, signature)
        try:
            with receive:
                yield receive
        finally:
            self._watchers.discard(watcher)
            send.close()
            if not any(other.run_id == run_id for other in self._watchers):
                self._signatures.pop(run_id, None)

    async def progress(self, run_id: str) -> dict[str, int]:
        """The run's counts (:meth:`Reader.progress`), read again only once something
        was committed: every page of a run shares one count per change."""
        version = await self._call(Reader.data_version)
        cached = self._progress.get(run_id)
        if cached is None or cached[0] != version:
            cached = (version, await self._call(Reader.progress, run_id))
            self._progress[run_id] = cached
            if len(self._progress) > 64:  # runs looked at long ago
                del self._progress[next(iter(self._progress))]
        return cached[1]

    async def run(self) -> None:
        """Look for changes until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            await self.tick()

    async def tick(self) -> None:
        """One look: cells that changed, then text streamed since the last look."""
        version = await self._call(Reader.data_version)
        if version != self._version:
            self._version = version
            for run_id in list(self._signatures):
                await self._changes(run_id)
        self._flush_text()

    async def _changes(self, run_id: str) -> None:
        before = self._signatures.get(run_id)
        if before is None:  # nobody watches it any more
            return
        now: dict[int, tuple[Any, ...]] = {}
        spans = {watcher.span for watcher in self._watchers if watcher.run_id == run_id}
        for low, high in sorted(spans):
            if not all(cell in now for cell in range(low, high)):
                now.update(await self._call(Reader.signatures, run_id, low, high))
        changed = sorted(cell for cell, signature in now.items() if before.get(cell) != signature)
        before.update(now)
        if not changed:
            return
        for cell in changed:
            if now[cell][0] == "done":
                self._partials.pop((run_id, cell), None)
        rows = await self._call(Reader.cells, run_id, changed)
        for row in rows:  # a running cell keeps the text streamed so far
            text = self.partial_text(run_id, row["cell"])
            if row["state"] != "done" and text is not None:
                row["text"] = text
        progress = await self.progress(run_id)
        for watcher in list(self._watchers):
            if watcher.run_id != run_id:
                continue
            shown = [row for row in rows if row["cell"] in watcher.cells]
            if shown:
                self._send(watcher, {"type": "cells", "cells": shown, "progress": progress})

    def _flush_text(self) -> None:
        for (run_id, cell), partial in list(self._partials.items()):
            if partial.sent == len(partial.text):
                continue
            delta = "".join(partial.text[partial.sent :])
            event = {"type": "text", "cell": cell, "at": partial.length, "text": delta}
            partial.length += len(delta)
            partial.sent = len(partial.text)
            for watcher in list(self._watchers):
                if watcher.run_id == run_id and cell in watcher.cells:
                    self._send(watcher, event)

    def _send(self, watcher: _Watcher, event: dict[str, Any]) -> None:
        try:
            watcher.send.send_nowait(event)
        except anyio.WouldBlock:
            # Fallen behind: dropped; its browser reconnects and gets a fresh snapshot.
            self._watchers.discard(watcher)
            watcher.send.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._watchers.discard(watcher)
