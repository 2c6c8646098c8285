"""The ``/v1`` routes of the account: ``GET /v1/account`` (the account every token
belongs to) and ``GET /v1/webhooks/default/secret`` (the webhook signing secret)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._api_common import ACCOUNT, JSON, ApiGate
from ._responses import json_bytes

__all__ = ["account_routes"]


def account_routes(gate: ApiGate, webhook_secret: str) -> list[BaseRoute]:
    """The account's routes, signing webhooks with ``webhook_secret``."""

    async def account(request: Request) -> Response:
        """``GET /v1/account``: the account the token belongs to (one, whatever the token)."""
        gated = gate.check(request)
        if gated is not None:
            return gated
        return Response(json_bytes(ACCOUNT), media_type=JSON)

    async def secret(request: Request) -> Response:
        gated = gate.check(request)
        if gated is not None:
            return gated
        return Response(json_bytes({"key": webhook_secret}), media_type=JSON)

    return [
        Route("/v1/account", account, methods=["GET"]),
        Route("/v1/webhooks/default/secret", secret, methods=["GET"]),
    ]
