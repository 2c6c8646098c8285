"""``GET /v1/hardware``: the hardware SKUs a model or a deployment may run on."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import JSON, ApiGate
from ._directory import HARDWARE
from ._responses import json_bytes

__all__ = ["hardware_routes"]


def hardware_routes(gate: ApiGate) -> list[BaseRoute]:
    """The hardware route: a plain JSON array, not a page, as the real API answers."""

    async def hardware(request: Request) -> Response:
        gated = gate.check(request)
        if gated is not None:
            return gated
        return Response(json_bytes(list(HARDWARE)), media_type=JSON)

    return [Route("/v1/hardware", hardware, methods=["GET"])]
