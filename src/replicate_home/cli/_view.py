"""``replicate-home view``: the viewer over a results database, until Ctrl-C; and the
viewer that ``compare --view`` serves while its run goes."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio

from ._common import UsageError

if TYPE_CHECKING:
    from ..comparisons import RunProgress
    from ..viewer import Viewer

__all__ = [
    "Announcer",
    "check_viewer_installed",
    "run_page",
    "served_viewer",
    "view_command",
]

_NEEDS_VIEWER = "the viewer needs its extra: pip install 'replicate-home[viewer]'"


def check_viewer_installed() -> None:
    """A :class:`UsageError` unless the ``viewer`` extra is installed."""
    for module in ("starlette", "hypercorn", "jinja2"):
        if importlib.util.find_spec(module) is None:
            raise UsageError(_NEEDS_VIEWER)


def _check_host(host: str) -> bool:
    """Whether ``host`` is loopback; a warning on stderr when it is not."""
    from ..viewer._security import is_loopback

    if is_loopback(host):
        return True
    print(
        f"replicate-home: warning: the viewer listens on {host}: anyone who can reach this "
        "machine there sees every output of the database and can vote",
        file=sys.stderr,
        flush=True,
    )
    return False


def run_page(base_url: str, run_id: str) -> str:
    """The URL of a run's grid."""
    return f"{base_url}/runs/{quote(run_id, safe='')}/grid"


@asynccontextmanager
async def served_viewer(database: Path, host: str, port: int) -> AsyncIterator[tuple[Viewer, str]]:
    """The viewer of ``database`` served on ``host:port``: the viewer and its URL."""
    from ..viewer import Viewer

    viewer = Viewer(database, loopback_only=_check_host(host))
    async with viewer.serve(host, port) as url:
        yield viewer, url


def open_browser(url: str) -> None:
    """Open ``url`` in the user's browser when a person is at a terminal."""
    if sys.stderr.isatty():
        webbrowser.open(url)


async def view_command(args: argparse.Namespace) -> None:
    check_viewer_installed()
    database: Path = args.db
    if not await anyio.Path(database).is_file():
        raise UsageError(f"no results database at {database}")
    if args.run is not None:
        from ..viewer._reading import Reader

        reader = await anyio.to_thread.run_sync(Reader, database)
        try:
            known = await anyio.to_thread.run_sync(reader.run, args.run) is not None
        finally:
            reader.close()
        if not known:
            raise UsageError(f"no run {args.run!r} in {database} (`view` lists them)")
    async with served_viewer(database, args.host, args.port) as (_, url):
        page = run_page(url, args.run) if args.run is not None else f"{url}/"
        print(f"replicate-home: viewer at {page} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        if not args.no_browser:
            open_browser(page)
        await anyio.sleep_forever()


class Announcer:
    """Passes a run's progress on, and says where its page is when the run starts."""

    def __init__(self, update: Callable[[RunProgress], object], base_url: str) -> None:
        self._update = update
        self._base_url = base_url
        self._announced = False

    def __call__(self, progress: RunProgress) -> None:
        self._update(progress)
        if not self._announced:
            self._announced = True
            page = run_page(self._base_url, progress.run_id)
            print(
                f"replicate-home: viewer at {page} while the run goes "
                f"(afterwards: replicate-home view {progress.run_id})",
                file=sys.stderr,
                flush=True,
            )
            open_browser(page)
