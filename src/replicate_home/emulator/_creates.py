"""Creating a ``/v1`` prediction, whichever route asks (by model, by version, on a
deployment): the body and its version, the scripted submit faults, the input's validation
and files, ``Prefer: wait``, ``Cancel-After`` and the webhook to send."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._api_common import (
    JSON,
    ApiSettings,
    encode_prediction,
    invalid,
    model_name,
    prediction_object,
    validation_failed,
)
from ._api_rules import parse_cancel_after, parse_prefer_wait
from ._catalogue import ModelInfo
from ._file_models import FileDigest
from ._file_store import FileStore
from ._input_files import check_uri, resolve_uri
from ._recording import request_info
from ._registry import ModelRegistry
from ._responses import fault_response, problem
from ._schemas import TEXT_KINDS, input_schema
from ._simulation import output_share
from ._state import EmulatorState
from ._validation import InvalidField, uri_values, validate_input

__all__ = ["WEBHOOK_EVENTS", "PredictionCreator", "check_options"]

_VERSION_ID = re.compile(r"[0-9a-f]{64}")
WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
#: The fields of a create's body: by model or deployment, and by version (the API's
#: description, with ``webhook_completed``, which the official Python client sends).
_BY_MODEL = frozenset({"input", "stream", "webhook", "webhook_completed", "webhook_events_filter"})
_BY_VERSION = _BY_MODEL | {"version"}
#: With quirks, a held create that runs out answers `processing` from this share of the
#: output on (the real quirk), else `starting`.
_NEARLY_DONE = 0.9


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON, whatever Python's parser allows."""
    raise ValueError(f"{name} is not JSON")


def check_options(payload: dict[str, Any]) -> Response | None:
    """The 422 answer for bad ``stream`` and webhook fields, if any. A field sent as
    ``null`` is a field of the wrong type (the official clients leave unset ones out)."""
    if "stream" in payload and not isinstance(payload["stream"], bool):
        return invalid(
            f"stream must be a boolean, got {json.dumps(payload['stream'])}",
            field="stream",
            kind="invalid_type",
        )
    for name in ("webhook", "webhook_completed"):
        if name in payload and not isinstance(payload[name], str):
            return invalid(
                f"{name} must be a URL string, got {json.dumps(payload[name])}",
                field=name,
                kind="invalid_type",
            )
    if "webhook_events_filter" in payload:
        events = payload["webhook_events_filter"]
        if not isinstance(events, list) or not all(
            isinstance(event, str) and event in WEBHOOK_EVENTS for event in events
        ):
            allowed = ", ".join(sorted(WEBHOOK_EVENTS))
            return invalid(
                f"webhook_events_filter must be a list of: {allowed}",
                field="webhook_events_filter",
            )
    return None


class PredictionCreator:
    """Creates the ``/v1`` predictions of one emulator: in ``state``, of the models of
    ``registry``, with input files from ``files`` (or the emulator's own outputs)."""

    def __init__(
        self,
        state: EmulatorState,
        registry: ModelRegistry,
        files: FileStore,
        settings: ApiSettings,
    ) -> None:
        self._state = state
        self._registry = registry
        self._files = files
        self._settings = settings

    def _resolve_version(self, version: object) -> tuple[str, ModelInfo, bool] | Response:
        """The model and version a create's ``version`` field names and whether it named
        a version (not just an official model's ``owner/name``), or the 422 answer."""
        if version is None:
            return invalid("version is required", kind="required")
        if not isinstance(version, str):
            return invalid(
                f"version must be a string, got {json.dumps(version)}",
                field="version",
                kind="invalid_type",
            )
        if ":" in version:
            reference, _, version_id = version.partition(":")
            owner, _, name = reference.partition("/")
            model = model_name(owner, name)
            if model is None:
                return invalid(f"version {version!r} must look like owner/name:version_id")
            found = self._registry.version_info(model, version_id)
            if found is None:
                return problem(
                    422,
                    "Invalid version or not permitted",
                    f"version {version_id!r} is not a version of model {model}",
                )
            return model, found, True
        if "/" in version:
            # `owner/name` alone: the real API runs an official model by name here too.
            owner, _, name = version.partition("/")
            model = model_name(owner, name)
            if model is None:
                return invalid(f"version {version!r} must look like owner/name")
            info = self._registry.info(model)
            if not info.official:
                return problem(
                    422,
                    "Invalid version or not permitted",
                    f"{model} is not an official model: give one of its versions "
                    "(owner/name:version_id or the version id)",
                )
            return model, info, False
        if not _VERSION_ID.fullmatch(version):
            return invalid(
                "version must be a 64-character version id, owner/name:version_id or, for "
                f"an official model, owner/name; got {version!r}"
            )
        known = self._registry.model_of_version(version)
        known_info = None if known is None else self._registry.version_info(known, version)
        if known is None or known_info is None:
            return problem(
                422,
                "Invalid version or not permitted",
                f"version {version} does not exist (or you are not permitted to use it)",
            )
        return known, known_info, True

    def _input_files(
        self, model_input: dict[str, Any], schema: dict[str, Any], base: str
    ) -> tuple[dict[str, FileDigest], str | None]:
        """The digests of a valid input's files by input path, and the error that fails
        the prediction if one of them names nothing the emulator has."""
        files: dict[str, FileDigest] = {}
        for path, value in uri_values(model_input, schema):
            try:
                content = resolve_uri(value, base, self._files, self._state.output_file)
            except LookupError as error:
                return files, f"input.{path}: {error}"
            files[path] = FileDigest.of(content)
        return files, None

    async def create(
        self, request: Request, model: str | None, *, deployment: str | None = None
    ) -> Response:
        """Create a prediction of ``model`` (``None``: the one the body's ``version``
        names), on ``deployment`` if given: the answer to the create request."""
        emu = self._state
        body = await request.body()
        now = emu.now()
        emu.store.purge(now)
        try:
            payload = json.loads(body, parse_constant=_refuse_constant)
        except ValueError:
            return problem(400, "Invalid JSON", "The request body must be a JSON object")
        if not isinstance(payload, dict):
            return invalid("The request body must be a JSON object")

        model_was_named = model
        resolved = self._resolve_version(payload.get("version")) if model is None else None
        fault_model = resolved[0] if isinstance(resolved, tuple) else model
        model_input = payload.get("input")
        prompt_for_fault = model_input.get("prompt") if isinstance(model_input, dict) else None
        fault = emu.take_submit_fault(prompt_for_fault, fault_model)
        if fault is not None:
            return fault_response(fault)

        if model is not None:
            info = self._registry.info(model)
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
            return validation_failed(problems)
        assert isinstance(model_input, dict)
        prompt = model_input.get("prompt")
        prompt = prompt if isinstance(prompt, str) else ""
        files, input_error = self._input_files(model_input, schema, base)
        bad_options = check_options(payload)
        if bad_options is not None:
            return bad_options
        unknown = sorted(set(payload) - (_BY_VERSION if model_was_named is None else _BY_MODEL))
        if unknown:
            # The real API's answer to a field its create does not know.
            return validation_failed(
                [
                    InvalidField(
                        "additional_property_not_allowed",
                        "",
                        f"Additional property {name} is not allowed",
                    )
                    for name in unknown
                ]
            )
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

        pred = emu.start_prediction(
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
        self._registry.remember_version(model, info.version)
        request_info(request).prediction_id = pred.id
        webhook = payload.get("webhook")
        if isinstance(webhook, str):
            pred.webhook = webhook
        if isinstance(webhook, str) and emu.sender is not None:
            events = payload.get("webhook_events_filter") or WEBHOOK_EVENTS
            emu.sender.start(pred, webhook, list(events), str(request.base_url).rstrip("/"))
        headers: dict[str, str] = {}
        if wait is None:
            obj = prediction_object(
                request, pred, now, self._state, self._settings, as_created=True
            )
        else:
            # Hold the answer until the prediction is terminal or the wait is over.
            until = now + wait
            while not emu.stopping and not pred.is_terminal(now) and now < until:
                await emu.pause(min(pred.end_time, until) - now)
                now = emu.now()
            # A wait that ran out answers `starting`, as the real API does (the official
            # clients rely on it: any other status to a blocking create means done).
            # With quirks, the real quirk: `processing` once the output is (nearly) all
            # there, as in a recorded real create.
            nearly_done = pred.kind in TEXT_KINDS and output_share(pred, now) >= _NEARLY_DONE
            still_running = not pred.is_terminal(now)
            as_created = still_running and not (pred.scenario.quirks and nearly_done)
            obj = prediction_object(
                request, pred, now, self._state, self._settings, as_created=as_created
            )
            headers["preference-applied"] = f"wait={wait}"
        return Response(encode_prediction(pred, obj), 201, headers=headers, media_type=JSON)
