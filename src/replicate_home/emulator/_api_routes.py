"""Replicate's HTTP API under ``/v1``, a thin HTTP layer over :mod:`._simulation`.

- ``POST /v1/models/{owner}/{name}/predictions`` and ``POST /v1/predictions`` create;
- ``GET /v1/predictions`` lists (newest first, paginated), ``GET /v1/predictions/{id}``
  answers one, ``POST /v1/predictions/{id}/cancel`` cancels it;
- on the stream origin (a port of its own), ``GET /v1/streams/{key}`` streams a text
  prediction's output (server-sent events) to whoever has the URL, with no token;
- ``GET /v1/models/{owner}/{name}``, ``.../versions`` and ``.../versions/{id}`` describe
  models; ``GET /v1/account`` the token's account.

Every route of the main origin wants a token (``Bearer`` or ``Token``); errors are
problem details (``application/problem+json``).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ._api_rules import (
    decode_cursor,
    deployment_object,
    encode_cursor,
    format_event,
    model_object,
    parse_cancel_after,
    parse_prefer_wait,
    parse_timestamp,
    quirky_json,
    version_object,
)
from ._file_models import FileDigest
from ._input_files import check_uri, resolve_uri
from ._responses import fault_response, json_bytes, problem
from ._schemas import input_schema
from ._simulation import (
    FileOutput,
    ModelInfo,
    Prediction,
    model_info,
    output_share,
    render,
    stream_events,
)
from ._validation import InvalidField, problem_fields, uri_values, validate_input

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["ApiRoutes", "api_object"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
_JSON = "application/json"
#: The account every token belongs to (the real API's ``GET /v1/account`` fields).
ACCOUNT: dict[str, Any] = {
    "type": "user",
    "username": "emulator",
    "name": "Replicate Home Emulator",
    "github_url": None,
    "avatar_url": None,
}
#: The account the emulator's token belongs to: deployments created over HTTP are its.
EMULATOR_ACCOUNT = str(ACCOUNT["username"])
_EVENT_STREAM_TYPES = frozenset({"text/event-stream", "text/*", "*/*"})
#: With quirks, a held create that runs out answers `processing` from this share of the
#: output on (the real quirk), else `starting`.
_NEARLY_DONE = 0.9


def _invalid(description: str, *, field: str = "", kind: str = "invalid") -> Response:
    """The real API's 422 for one invalid field of a create's body."""
    return _validation_failed([InvalidField(kind, field, description)])


def _validation_failed(problems: list[InvalidField]) -> Response:
    """The real API's 422: ``detail`` lists the problems, ``invalid_fields`` holds them."""
    detail, fields = problem_fields(problems)
    return problem(422, "Input validation failed", detail, invalid_fields=fields)


def _not_found(what: str) -> Response:
    return problem(404, "Not found", f"{what} not found")


def _resource_not_found() -> Response:
    """The real API's 404 for the model route of a community model (no title)."""
    body = {"detail": "The requested resource could not be found.", "status": 404}
    return Response(json_bytes(body), 404, media_type="application/problem+json")


def _model_name(owner: str, name: str) -> str | None:
    """``owner/name`` if both parts are valid names, else ``None``."""
    if _NAME.fullmatch(owner) and _NAME.fullmatch(name):
        return f"{owner}/{name}"
    return None


def _accepts_event_stream(accept: str | None) -> bool:
    if accept is None or not accept.strip():
        return True
    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & _EVENT_STREAM_TYPES)


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON, whatever Python's parser allows."""
    raise ValueError(f"{name} is not JSON")


def _check_options(payload: dict[str, Any]) -> Response | None:
    """The 422 answer for bad ``stream`` and webhook fields, if any."""
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _invalid(
            f"stream must be a boolean, got {json.dumps(stream)}",
            field="stream",
            kind="invalid_type",
        )
    for name in ("webhook", "webhook_completed"):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            return _invalid(
                f"{name} must be a URL string, got {json.dumps(value)}",
                field=name,
                kind="invalid_type",
            )
    events = payload.get("webhook_events_filter")
    if events is not None and (
        not isinstance(events, list) or not all(event in _WEBHOOK_EVENTS for event in events)
    ):
        allowed = ", ".join(sorted(_WEBHOOK_EVENTS))
        return _invalid(
            f"webhook_events_filter must be a list of: {allowed}", field="webhook_events_filter"
        )
    return None


def _created(pred: Prediction) -> datetime:
    """When ``pred`` was created, to the microsecond its ``created_at`` shows."""
    return datetime.fromtimestamp(pred.wall_created, tz=timezone.utc)


def _created_window(request: Request) -> tuple[datetime | None, datetime | None] | Response:
    """``created_after`` and ``created_before`` of a listing, or the 400 answer."""
    bounds: list[datetime | None] = []
    for name in ("created_after", "created_before"):
        raw = request.query_params.get(name)
        if raw is None:
            bounds.append(None)
            continue
        moment = parse_timestamp(raw)
        if moment is None:
            return problem(400, "Invalid date-time", f"{name} must be an ISO 8601 date-time")
        bounds.append(moment)
    return bounds[0], bounds[1]


def api_object(
    base: str,
    pred: Prediction,
    now: float,
    *,
    as_created: bool = False,
    stream_url: str | None = None,
    file_output: FileOutput = "data",
) -> dict[str, Any]:
    """The ``/v1`` prediction object of ``pred`` at ``now``: its URLs under ``base``, its
    output stream under ``stream_url`` (the stream origin) if it has one, image outputs
    as ``file_output`` says where the scenario does not."""
    obj = render(
        pred,
        now,
        file_url=lambda prediction_id, name: f"{base}/_emulator/files/{prediction_id}/{name}",
        as_created=as_created,
        file_output=file_output,
    )
    if pred.is_terminal(now) and not as_created:
        # Documented beside predict_time: from creation to the terminal status.
        obj["metrics"]["total_time"] = round(pred.end_time - pred.created, 6)
    urls = {
        "cancel": f"{base}/v1/predictions/{pred.id}/cancel",
        "get": f"{base}/v1/predictions/{pred.id}",
    }
    if pred.stream_key and stream_url is not None:
        urls["stream"] = f"{stream_url}/v1/streams/{pred.stream_key}"
    urls["web"] = f"{base}/p/{pred.id}"
    obj["source"] = pred.source  # on every prediction object, as the real API answers
    obj["data_removed"] = False
    obj["urls"] = urls
    return obj


class ApiRoutes:
    """The ``/v1`` routes of one :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self._emu = emulator

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/predictions", self._predictions, methods=["GET", "POST"]),
            Route("/v1/predictions/{prediction_id}", self._get, methods=["GET"]),
            Route("/v1/predictions/{prediction_id}/cancel", self._cancel, methods=["POST"]),
            Route("/v1/account", self._account, methods=["GET"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/models/{owner}/{name}", self._model, methods=["GET"]),
            Route("/v1/webhooks/default/secret", self._webhook_secret, methods=["GET"]),
            Route("/v1/deployments", self._deployments, methods=["GET", "POST"]),
            Route("/v1/deployments/{owner}/{name}", self._deployment, methods=["GET"]),
            Route(
                "/v1/deployments/{owner}/{name}/predictions",
                self._create_by_deployment,
                methods=["POST"],
            ),
            Route("/v1/models/{owner}/{name}/predictions", self._create_by_model, methods=["POST"]),
            Route("/v1/models/{owner}/{name}/versions", self._versions, methods=["GET"]),
            Route(
                "/v1/models/{owner}/{name}/versions/{version_id}", self._version, methods=["GET"]
            ),
        ]

    @property
    def stream_routes(self) -> list[BaseRoute]:
        """The routes of the stream origin: no token wanted, none checked."""
        return [Route("/v1/streams/{key}", self._stream, methods=["GET"])]

    # ----------------------------------------------------------------- gatekeeping

    async def _gate_create(self, request: Request) -> Response | None:
        """:meth:`_gate` for a create, after its body has arrived: an answer sent while
        hypercorn has not yet read the end of the request makes it close the connection,
        and a client that reuses it (keep-alive) sees "disconnected without a response"."""
        await request.body()  # kept by Starlette for the create itself
        return self._gate(request, create=True)

    def _gate(self, request: Request, *, create: bool) -> Response | None:
        """The 401 or 429 answer to a request, if it gets one."""
        emu = self._emu
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        # Both schemes the real API accepts: ``Bearer`` and the older, still documented
        # ``Token`` (which LiteLLM and other clients send).
        known_scheme = scheme.lower() in ("bearer", "token")
        if not header or (known_scheme and not credentials):
            return problem(
                401,
                "Unauthenticated",
                "You did not pass an authentication token",
                headers={"www-authenticate": "Bearer"},
            )
        expected = emu._token
        if not known_scheme or (
            expected is not None
            and not secrets.compare_digest(credentials.encode(), expected.encode())
        ):
            return problem(
                401,
                "Unauthenticated",
                "You did not pass a valid authentication token",
                headers={"www-authenticate": "Bearer"},
            )
        if emu._buckets is not None:
            bucket = emu._buckets[0 if create else 1]
            wait = bucket.take(emu._now())
            if wait > 0:
                emu._throttled += 1
                retry_after = max(1, math.ceil(wait))
                kind = "creating predictions" if create else "this kind of request"
                return problem(
                    429,
                    "Request was throttled",
                    f"Request was throttled. Your rate limit for {kind} is "
                    f"{bucket.per_minute} requests per minute with a burst of {bucket.burst}. "
                    f"Expected available in {retry_after} second(s).",
                    headers={"retry-after": str(retry_after)},
                    retry_after=retry_after,
                )
        return None

    # ----------------------------------------------------------------- prediction objects

    def _object(
        self, request: Request, pred: Prediction, now: float, *, as_created: bool = False
    ) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        emu = self._emu
        return api_object(
            base,
            pred,
            now,
            as_created=as_created,
            stream_url=emu._stream_url,
            file_output=emu._file_output,
        )

    @staticmethod
    def _encode(pred: Prediction, obj: dict[str, Any]) -> bytes:
        return quirky_json(obj, pred.kind) if pred.scenario.quirks else json_bytes(obj)

    def _named_prediction(self, request: Request) -> tuple[Prediction, float] | Response:
        """The prediction a ``/v1/predictions/{id}...`` request names and the time now
        (after auth and the rate limit), or the error answer."""
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        emu = self._emu
        now = emu._now()
        emu._store.purge(now)
        prediction_id: str = request.path_params["prediction_id"]
        emu._info(request).prediction_id = prediction_id
        pred = emu._store.get(prediction_id, now)
        return _not_found("Prediction") if pred is None else (pred, now)

    # ----------------------------------------------------------------- creates

    async def _create_by_model(self, request: Request) -> Response:
        model = _model_name(request.path_params["owner"], request.path_params["name"])
        gated = await self._gate_create(request)
        if gated is not None:
            return gated
        if model is None:
            return _not_found("Model")
        if not self._emu._model_info(model).official:
            # What the real API answers: its model route serves official models only.
            return _resource_not_found()
        return await self._create(request, model)

    async def _create_by_deployment(self, request: Request) -> Response:
        gated = await self._gate_create(request)
        if gated is not None:
            return gated
        name = _model_name(request.path_params["owner"], request.path_params["name"])
        deployment = self._emu._deployments.get(name or "")
        if deployment is None:
            return _not_found("Deployment")
        return await self._create(request, deployment.model, deployment=deployment.name)

    async def _predictions(self, request: Request) -> Response:
        """``/v1/predictions``: one route, so that a 405 lists both methods in ``Allow``."""
        if request.method == "POST":
            return await self._create_by_version(request)
        return await self._list(request)

    async def _create_by_version(self, request: Request) -> Response:
        gated = await self._gate_create(request)
        if gated is not None:
            return gated
        return await self._create(request, None)

    def _resolve_version(self, version: object) -> tuple[str, ModelInfo, bool] | Response:
        """The model and version a create's ``version`` field names and whether it named
        a version (not just an official model's ``owner/name``), or the 422 answer."""
        if version is None:
            return _invalid("version is required", kind="required")
        if not isinstance(version, str):
            return _invalid(
                f"version must be a string, got {json.dumps(version)}",
                field="version",
                kind="invalid_type",
            )
        if ":" in version:
            reference, _, version_id = version.partition(":")
            owner, _, name = reference.partition("/")
            model = _model_name(owner, name)
            if model is None:
                return _invalid(f"version {version!r} must look like owner/name:version_id")
            info = self._emu._model_info(model)
            if version_id != info.version:
                return problem(
                    422,
                    "Invalid version or not permitted",
                    f"version {version_id!r} is not a version of model {model}",
                )
            return model, info, True
        if "/" in version:
            # `owner/name` alone: the real API runs an official model by name here too.
            owner, _, name = version.partition("/")
            model = _model_name(owner, name)
            if model is None:
                return _invalid(f"version {version!r} must look like owner/name")
            info = self._emu._model_info(model)
            if not info.official:
                return problem(
                    422,
                    "Invalid version or not permitted",
                    f"{model} is not an official model: give one of its versions "
                    "(owner/name:version_id or the version id)",
                )
            return model, info, False
        if not _VERSION_ID.fullmatch(version):
            return _invalid(
                "version must be a 64-character version id, owner/name:version_id or, for "
                f"an official model, owner/name; got {version!r}"
            )
        known = self._emu._known_versions.get(version)
        if known is None:
            return problem(
                422,
                "Invalid version or not permitted",
                f"version {version} does not exist (or you are not permitted to use it)",
            )
        return known, self._emu._model_info(known), True

    def _input_files(
        self, model_input: dict[str, Any], schema: dict[str, Any], base: str
    ) -> tuple[dict[str, FileDigest], str | None]:
        """The digests of a valid input's files by input path, and the error that fails
        the prediction if one of them names nothing the emulator has."""
        emu = self._emu
        files: dict[str, FileDigest] = {}
        for path, value in uri_values(model_input, schema):
            try:
                content = resolve_uri(value, base, emu.files, emu._output_file)
            except LookupError as error:
                return files, f"input.{path}: {error}"
            files[path] = FileDigest.of(content)
        return files, None

    async def _create(
        self, request: Request, model: str | None, *, deployment: str | None = None
    ) -> Response:
        emu = self._emu
        body = await request.body()
        now = emu._now()
        emu._store.purge(now)
        try:
            payload = json.loads(body, parse_constant=_refuse_constant)
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return _invalid("The request body must be a JSON object")

        resolved = self._resolve_version(payload.get("version")) if model is None else None
        fault_model = resolved[0] if isinstance(resolved, tuple) else model
        model_input = payload.get("input")
        prompt_for_fault = model_input.get("prompt") if isinstance(model_input, dict) else None
        fault = emu._take_submit_fault(prompt_for_fault, fault_model)
        if fault is not None:
            return fault_response(fault)

        if model is not None:
            info = emu._model_info(model)
            # The real API names no version for an official model run by name.
            hidden = deployment is None
        elif isinstance(resolved, tuple):
            model, info, named = resolved
            hidden = not named
        else:
            assert resolved is not None
            return resolved
        base = str(request.base_url).rstrip("/")
        schema = input_schema(info.kind)
        problems = validate_input(model_input, schema, lambda value: check_uri(value, base))
        if problems:
            return _validation_failed(problems)
        assert isinstance(model_input, dict)
        prompt = model_input.get("prompt")
        prompt = prompt if isinstance(prompt, str) else ""
        files, input_error = self._input_files(model_input, schema, base)
        bad_options = _check_options(payload)
        if bad_options is not None:
            return bad_options
        try:
            wait = parse_prefer_wait(request.headers.get("prefer"))
        except ValueError as error:
            return problem(422, "Invalid Prefer header", str(error))
        deadline = None
        cancel_after = request.headers.get("cancel-after")
        if cancel_after is not None:
            try:
                deadline = now + parse_cancel_after(cancel_after)
            except ValueError as error:
                return problem(422, "Invalid Cancel-After header", str(error))

        pred = emu._start_prediction(
            model,
            info,
            model_input,
            prompt,
            now,
            source="api",
            deadline=deadline,
            deployment=deployment,
            files=files,
            input_error=input_error,
            version="hidden" if hidden else None,
        )
        emu._remember_version(model, info.version)
        emu._info(request).prediction_id = pred.id
        webhook = payload.get("webhook")
        if isinstance(webhook, str) and emu._sender is not None:
            events = payload.get("webhook_events_filter") or _WEBHOOK_EVENTS
            emu._sender.start(pred, webhook, list(events), str(request.base_url).rstrip("/"))
        headers: dict[str, str] = {}
        if wait is None:
            obj = self._object(request, pred, now, as_created=True)
        else:
            # Hold the answer until the prediction is terminal or the wait is over.
            until = now + wait
            while not emu._stopping and not pred.is_terminal(now) and now < until:
                await emu._pause(min(pred.end_time, until) - now)
                now = emu._now()
            # A wait that ran out answers `starting`, as the real API does (the official
            # clients rely on it: any other status to a blocking create means done).
            # With quirks, the real quirk: `processing` once the output is (nearly) all
            # there, as in a recorded real create.
            nearly_done = pred.kind == "text" and output_share(pred, now) >= _NEARLY_DONE
            still_running = not pred.is_terminal(now)
            as_created = still_running and not (pred.scenario.quirks and nearly_done)
            obj = self._object(request, pred, now, as_created=as_created)
            headers["preference-applied"] = f"wait={wait}"
        return Response(self._encode(pred, obj), 201, headers=headers, media_type=_JSON)

    # ----------------------------------------------------------------- predictions

    async def _get(self, request: Request) -> Response:
        self._emu._polls += 1
        named = self._named_prediction(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        poll_number = pred.polls
        pred.polls += 1
        fault = pred.scenario.poll_fault(poll_number)
        if fault is not None:
            return fault_response(fault)
        content_type = pred.scenario.content_type
        headers = {} if content_type is None else {"content-type": content_type}
        return Response(self._encode(pred, self._object(request, pred, now)), headers=headers)

    async def _cancel(self, request: Request) -> Response:
        self._emu._cancels += 1
        named = self._named_prediction(request)
        if isinstance(named, Response):
            return named
        pred, now = named
        self._emu._store.cancel(pred, now)  # a terminal prediction stays as it is
        obj = self._object(request, pred, now)
        return Response(self._encode(pred, obj), media_type=_JSON)

    async def _list(self, request: Request) -> Response:
        emu = self._emu
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        now = emu._now()
        emu._store.purge(now)
        newest_first = list(emu._store.newest_first())
        window = _created_window(request)
        if isinstance(window, Response):
            return window
        after, before = window
        if after is not None or before is not None:
            newest_first = [
                pred
                for pred in newest_first
                if (after is None or _created(pred) >= after)
                and (before is None or _created(pred) < before)
            ]
        size = emu._page_size
        cursor = request.query_params.get("cursor")
        if cursor is None:
            page = newest_first[:size]
        else:
            try:
                direction, number = decode_cursor(cursor)
            except ValueError:
                return problem(400, "Invalid cursor", f"Cursor {cursor!r} is not valid")
            if direction == "n":
                page = [pred for pred in newest_first if pred.number < number][:size]
            else:
                page = [pred for pred in newest_first if pred.number > number][-size:]
        kept = {
            name: request.query_params[name]
            for name in ("created_after", "created_before")
            if name in request.query_params
        }
        base = str(request.url.replace(query="")).rstrip("/")
        extra = "".join(f"&{urlencode({name: value})}" for name, value in kept.items())
        following = previous = None
        if page:
            if any(pred.number < page[-1].number for pred in newest_first):
                following = f"{base}?cursor={encode_cursor('n', page[-1].number)}{extra}"
            if any(pred.number > page[0].number for pred in newest_first):
                previous = f"{base}?cursor={encode_cursor('p', page[0].number)}{extra}"
        results = []
        for pred in page:
            item = self._object(request, pred, now)
            del item["logs"]  # list items leave the logs out, as the real API does
            results.append(item)
        body = {"next": following, "previous": previous, "results": results}
        return Response(json_bytes(body), media_type=_JSON)

    async def _stream(self, request: Request) -> Response:
        """An output stream on the stream origin. Its URL is the capability: whatever
        ``Authorization`` comes with it is ignored, as the real stream hosts ignore it."""
        emu = self._emu
        now = emu._now()
        emu._store.purge(now)
        pred = emu._store.by_stream_key(request.path_params["key"], now)
        if pred is None:
            return _not_found("Stream")
        emu._info(request).prediction_id = pred.id
        if not _accepts_event_stream(request.headers.get("accept")):
            return problem(
                406, "Not acceptable", "The output stream is text/event-stream: accept it"
            )
        last_event_id = (request.headers.get("last-event-id") or "").strip()
        first = int(last_event_id) + 1 if last_event_id.isdigit() else 0
        return _EventStream(self._emu, pred, first)

    # ----------------------------------------------------------------- account

    async def _account(self, request: Request) -> Response:
        """``GET /v1/account``: the account the token belongs to (one, whatever the token)."""
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        return Response(json_bytes(ACCOUNT), media_type=_JSON)

    # ----------------------------------------------------------------- webhooks

    async def _webhook_secret(self, request: Request) -> Response:
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        return Response(json_bytes({"key": self._emu._webhook_secret}), media_type=_JSON)

    # ----------------------------------------------------------------- deployments

    def _deployment_body(self, name: str) -> dict[str, Any]:
        d = self._emu._deployments[name]
        return deployment_object(d.name, d.model, d.version, d.release, d.configuration)

    async def _deployments(self, request: Request) -> Response:
        """``GET /v1/deployments`` lists them (one page); ``POST`` creates one."""
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        emu = self._emu
        if request.method == "GET":
            results = [self._deployment_body(name) for name in reversed(emu._deployments)]
            body = {"next": None, "previous": None, "results": results}
            return Response(json_bytes(body), media_type=_JSON)
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return _invalid("The request body must be a JSON object")
        fields = {key: payload.get(key) for key in ("name", "model", "version", "hardware")}
        for key, value in fields.items():
            if not isinstance(value, str) or not value:
                return _invalid(f"{key} is required: a string")
        counts = {key: payload.get(key) for key in ("min_instances", "max_instances")}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return _invalid(f"{key} is required: a non-negative integer")
        owner_model = str(fields["model"])
        if not _NAME.fullmatch(str(fields["name"])) or "/" not in owner_model:
            return _invalid("name must be a name and model must be 'owner/name'")
        name = f"{EMULATOR_ACCOUNT}/{fields['name']}"
        if name in emu._deployments:
            return problem(409, "Conflict", f"deployment {name} already exists")
        if fields["version"] != model_info(owner_model).version:
            return problem(
                422,
                "Invalid version or not permitted",
                f"version {fields['version']!r} is not a version of model {owner_model}",
            )
        emu.deploy(name, owner_model)
        emu._deployments[name].configuration = {
            "hardware": fields["hardware"],
            "min_instances": counts["min_instances"],
            "max_instances": counts["max_instances"],
        }
        return Response(json_bytes(self._deployment_body(name)), media_type=_JSON)

    async def _deployment(self, request: Request) -> Response:
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        name = _model_name(request.path_params["owner"], request.path_params["name"])
        if name is None or name not in self._emu._deployments:
            return _not_found("Deployment")
        return Response(json_bytes(self._deployment_body(name)), media_type=_JSON)

    # ----------------------------------------------------------------- models

    def _named_model(self, request: Request) -> str | Response:
        """The model a ``/v1/models/{owner}/{name}...`` request names (after auth and the
        rate limit), or the error answer."""
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        model = _model_name(request.path_params["owner"], request.path_params["name"])
        if model is None:
            return _not_found("Model")
        self._emu._remember_version(model, model_info(model).version)
        return model

    async def _models(self, request: Request) -> Response:
        """``GET /v1/models``: the emulator's catalogue (one page): the homepage models, the
        image and file models, the community models and the emulator's own ``models``."""
        gated = self._gate(request, create=False)
        if gated is not None:
            return gated
        emu = self._emu
        results = [
            model_object(model, emu._model_info(model), emu._run_counts[model])
            for model in emu._catalogue()
        ]
        body = {"next": None, "previous": None, "results": results}
        return Response(json_bytes(body), media_type=_JSON)

    async def _model(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        obj = model_object(model, self._emu._model_info(model), self._emu._run_counts[model])
        return Response(json_bytes(obj), media_type=_JSON)

    async def _versions(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        body = {
            "next": None,
            "previous": None,
            "results": [version_object(self._emu._model_info(model))],
        }
        return Response(json_bytes(body), media_type=_JSON)

    async def _version(self, request: Request) -> Response:
        model = self._named_model(request)
        if isinstance(model, Response):
            return model
        info = self._emu._model_info(model)
        if request.path_params["version_id"] != info.version:
            return _not_found("Version")
        return Response(json_bytes(version_object(info)), media_type=_JSON)


class _EventStream(StreamingResponse):
    """A prediction's output as server-sent events, pushed as the simulation produces them.

    Ends after the ``done`` event, when the client disconnects, or when the emulator stops
    serving.
    """

    def __init__(self, emulator: Emulator, pred: Prediction, first_id: int) -> None:
        self._emu = emulator
        self._events = self._produce(pred, first_id)
        super().__init__(
            self._events,
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _produce(self, pred: Prediction, first_id: int) -> AsyncGenerator[bytes, None]:
        emu = self._emu
        sent = first_id
        while True:
            now = emu._now()
            events, due = stream_events(pred, now)
            if sent < len(events):
                yield b"".join(format_event(event) for event in events[sent:])
                sent = len(events)
            if due is None or emu._stopping:
                return
            await emu._pause(due - now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emu = self._emu
        emu._stream_connections += 1
        emu._open_streams += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
            emu._open_streams -= 1
            emu._wake_waiters()
