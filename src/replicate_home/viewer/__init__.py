"""The viewer: a local web app over a results database (``replicate-home view``).

A list of runs; a run's grid that fills in live while the run goes (from any process
that records into the database; text token by token when the run is in this process:
``compare --view``); images full size on a click, audio and video players; filters by
model and status, two models side by side; blind pairwise votes with a Bradley-Terry
leaderboard, and thumbs up or down on each cell.

Starlette served by hypercorn, Jinja2 pages and one script of its own (no build step,
nothing from a CDN): the ``viewer`` extra. It binds ``127.0.0.1`` by default, refuses
cross-site state changes and runs under a strict Content-Security-Policy.

Example::

    import anyio

    from replicate_home.viewer import Viewer


    async def main() -> None:
        async with Viewer("replicate-home.db").serve() as url:
            print("open", url)
            await anyio.sleep_forever()
"""

from ._app import PAGE_ROWS, Viewer
from ._security import CSP

__all__ = ["CSP", "PAGE_ROWS", "Viewer"]
