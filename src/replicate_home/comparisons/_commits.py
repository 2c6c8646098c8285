"""Writes to the results database committed together (group commit).

At a hundred cells a second a run makes several hundred small write transactions a
second, each a hop to the database's worker thread. With the event loop busy, every hop
waits for the interpreter lock (up to its switch interval, 5 ms), so written one at a
time the writes fall behind, and a create waits for its ``sending`` mark a long while
after the rate budget let it out (creates then leave in bunches). Here the writes queued
while one hop is under way go together in the next, in one transaction, each in a
savepoint of its own: a write that raises is rolled back alone and its error raised to
its caller, and every caller resumes only once the transaction that holds its write is
committed (what a write promised, "committed before the caller goes on", holds).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["Write", "WriteQueue", "commit_writes"]

_T = TypeVar("_T")


class Write(Generic[_T]):
    """One caller's write: ``work(connection)``, and what became of it."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], _T]) -> None:
        self.work = work
        self.done = False
        self.result: _T | None = None
        self.error: BaseException | None = None


def commit_writes(connection: sqlite3.Connection, writes: list[Write[Any]]) -> None:
    """Run ``writes`` in one ``BEGIN IMMEDIATE`` transaction (the write lock taken first:
    what each reads stays true until the commit), each in a savepoint: one that raises
    is rolled back alone. Every write is ``done`` after; if the transaction itself fails,
    each carries that error."""
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                connection.execute("SAVEPOINT write")
                try:
                    write.result = write.work(connection)
                except Exception as error:
                    connection.execute("ROLLBACK TO write")
                    write.error = error
                connection.execute("RELEASE write")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    except BaseException as error:
        for write in writes:
            write.result, write.error = None, error
        raise
    finally:
        for write in writes:
            write.done = True


class WriteQueue:
    """Writes wait here while one hop is under way; then one of them takes the
    database's slot (``limiter``) and writes every write queued so far in one hop
    (``run``, in a worker thread), and the others of that batch go on without a hop or
    a turn of their own. A writer cancelled before its hop leaves the queue to the
    next."""

    def __init__(
        self, limiter: anyio.CapacityLimiter, run: Callable[[list[Write[Any]]], None]
    ) -> None:
        self._limiter = limiter
        self._run = run
        self._pending: list[Write[Any]] = []
        self._writing = False
        self._hop_ended = anyio.Event()

    async def submit(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(connection)`` committed (its result), or its error raised."""
        write = Write(work)
        self._pending.append(write)
        try:
            while not write.done:
                if self._writing:
                    await self._hop_ended.wait()
                    continue
                self._writing = True
                try:
                    async with self._limiter:
                        batch, self._pending = self._pending, []
                        await anyio.to_thread.run_sync(self._run, batch)
                finally:
                    self._writing = False
                    ended, self._hop_ended = self._hop_ended, anyio.Event()
                    ended.set()
        except BaseException:
            if not write.done and write in self._pending:  # never written: withdrawn
                self._pending.remove(write)
            raise
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # done without error: set
