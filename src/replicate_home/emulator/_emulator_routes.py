"""The emulator's own routes beside the services': ``GET /_emulator/files/{id}/{name}``
serves the output files of succeeded predictions (generated images, videos) and
``GET /_emulator/stats`` answers :class:`EmulatorStats` as JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ._recording import EmulatorStats, request_info
from ._responses import detail_response
from ._state import EmulatorState

__all__ = ["emulator_routes"]


def emulator_routes(state: EmulatorState, stats: Callable[[], EmulatorStats]) -> list[BaseRoute]:
    """The output files of the predictions of ``state``, and the ``stats()`` counters."""

    async def output_file(request: Request) -> Response:
        """An output file, streamed a piece at a time with its ``Content-Length``."""
        prediction_id: str = request.path_params["prediction_id"]
        request_info(request).prediction_id = prediction_id
        found = state.output_file(prediction_id, request.path_params["name"])
        if found is None:
            return detail_response(404, "File not found")
        pieces, length, content_type = found
        return StreamingResponse(
            pieces,  # a plain iterator: Starlette reads it in a worker thread
            media_type=content_type,
            headers={"content-length": str(length)},
        )

    async def stats_route(request: Request) -> Response:
        state.store.purge(state.now())
        return JSONResponse(asdict(stats()))

    return [
        Route("/_emulator/files/{prediction_id}/{name}", output_file, methods=["GET"]),
        Route("/_emulator/stats", stats_route, methods=["GET"]),
    ]
