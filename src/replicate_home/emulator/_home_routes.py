"""The homepage service's routes, a thin HTTP layer over :mod:`._simulation`.

- ``POST /api/prediction`` creates a prediction;
- ``GET /api/poll?id=<id>`` answers its current state.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._catalogue import MODELS
from ._recording import request_info
from ._responses import detail_response, fault_response, json_bytes
from ._simulation import FileUrl, render
from ._state import EmulatorState

__all__ = ["home_routes"]


def home_routes(state: EmulatorState) -> list[BaseRoute]:
    """The homepage routes over the predictions of ``state``."""
    return _HomeRoutes(state).routes


def _file_urls(request: Request) -> FileUrl:
    """Output file URLs on the request's origin (``/_emulator/files/...``)."""
    base = str(request.base_url).rstrip("/")
    return lambda prediction_id, name: f"{base}/_emulator/files/{prediction_id}/{name}"


class _HomeRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/prediction", self._create, methods=["POST"]),
            Route("/api/poll", self._poll, methods=["GET"]),
        ]

    async def _create(self, request: Request) -> Response:
        emu = self._state
        body = await request.body()
        now = emu.now()
        emu.store.purge(now)
        try:
            payload = json.loads(body)
        except ValueError:
            return detail_response(400, "Request body must be a JSON object")
        if not isinstance(payload, dict):
            return detail_response(400, "Request body must be a JSON object")

        model_input = payload.get("input")
        prompt = model_input.get("prompt") if isinstance(model_input, dict) else None
        fault = emu.take_submit_fault(prompt, payload.get("model"))
        if fault is not None:
            return fault_response(fault)

        model = payload.get("model")
        if not isinstance(model, str) or model not in MODELS:
            known = ", ".join(MODELS)
            return detail_response(422, f"Field 'model' must be one of: {known}; got {model!r}")
        info = MODELS[model]
        version = payload.get("version")
        if version is None:
            return detail_response(422, "Field 'version' is required")
        if version != info.version:
            return detail_response(
                422, f"Field 'version' must be {info.version} for model {model}; got {version!r}"
            )
        if not isinstance(model_input, dict):
            return detail_response(422, "Field 'input' must be a JSON object")
        if not isinstance(prompt, str) or not prompt:
            return detail_response(422, "Field 'input.prompt' must be a non-empty string")

        pred = emu.start_prediction(model, info, model_input, prompt, now, source="web")
        request_info(request).prediction_id = pred.id
        obj = render(pred, now, file_url=_file_urls(request), as_created=True)
        return Response(json_bytes(obj), status_code=201, media_type="application/json")

    async def _poll(self, request: Request) -> Response:
        emu = self._state
        now = emu.now()
        emu.store.purge(now)
        emu.polls += 1
        prediction_id = request.query_params.get("id")
        if not prediction_id:
            return detail_response(400, "Query parameter 'id' is required")
        request_info(request).prediction_id = prediction_id
        pred = emu.store.get(prediction_id, now)
        if pred is None:
            return detail_response(404, "Prediction not found")
        poll_number = pred.polls
        pred.polls += 1
        fault = pred.scenario.poll_fault(poll_number)
        if fault is not None:
            return fault_response(fault)
        obj = render(pred, now, file_url=_file_urls(request))
        headers = (
            {}
            if pred.scenario.content_type is None
            else {"content-type": pred.scenario.content_type}
        )
        return Response(json_bytes(obj), status_code=200, headers=headers)
