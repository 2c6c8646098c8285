"""The emulator against Replicate's own OpenAPI description, with schemathesis.

schemathesis reads the vendored description (tests/data/openapi/replicate.yaml, see its
README) and, for every one of its operations, sends schema-valid and schema-invalid
requests to an emulator on loopback and checks each answer: no 5xx, a documented status
code and content type, a body that matches the documented schema, invalid requests
rejected and valid ones accepted, a wrong or missing token refused.

Where the published description itself is wrong, it is corrected before the run, each
correction listed in ``DESCRIPTION_ERRORS`` with its reason (docs/emulator.md lists them
too); where a check can't hold for a reason the description can't express, the check is
left out for that operation only, in ``EXCLUDED_CHECKS``, with its reason. Nothing else
is excused.

The quick suite tries a few examples per operation; CI's slow run
(``HYPOTHESIS_PROFILE=ci``, ``-m slow``) many more.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from replicate_home.emulator import Emulator, Scenario

HERE = Path(__file__).parent / "data" / "openapi"
TOKEN = "r8_conformance"
Description = dict[str, Any]


# -- Where the published description is wrong --------------------------------------------


def _errors_are_problem_details(description: Description) -> None:
    problem = {
        "description": "A problem detail (RFC 9457), as every /v1 route answers errors",
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "required": ["detail", "status"],
                    "properties": {
                        "title": {"type": "string"},
                        "detail": {"type": "string"},
                        "status": {"type": "integer"},
                    },
                }
            }
        },
    }
    for operations in description["paths"].values():
        for operation in operations.values():
            operation["responses"].setdefault("4XX", problem)


def _version_is_any_of(description: Description) -> None:
    version = description["components"]["schemas"]["schemas_prediction_response"]["properties"]
    version["version"]["anyOf"] = version["version"].pop("oneOf")


def _prefer_is_a_list_of_preferences(description: Description) -> None:
    prefer = description["components"]["parameters"]["parameters_prefer_header"]["schema"]
    assert prefer.pop("pattern") == "^wait(=([1-9]|[1-9][0-9]|60))?$"


def _create_bodies_know_webhook_completed(description: Description) -> None:
    schemas = description["components"]["schemas"]
    for name in ("schemas_prediction_request", "schemas_version_prediction_request"):
        assert schemas[name]["additionalProperties"] is False
        schemas[name]["properties"]["webhook_completed"] = {"type": "string"}


def _bodies_with_required_fields_are_required(description: Description) -> None:
    for operations in description["paths"].values():
        for operation in operations.values():
            body = operation.get("requestBody")
            if body is None or body.get("required"):
                continue
            (media,) = body["content"].values()
            target = media["schema"]
            if "$ref" in target:
                name = target["$ref"].rsplit("/", 1)[1]
                target = description["components"]["schemas"][name]
            if target.get("required"):
                body["required"] = True


#: Each correction of the published description, with the reason it is wrong.
DESCRIPTION_ERRORS: list[tuple[Callable[[Description], None], str]] = [
    (
        _errors_are_problem_details,
        "Only successes are documented (and a few 404s), but every operation answers "
        "401 without a valid token, 404 for what does not exist, 422 for a request it "
        "refuses and 429 beyond the rate limits, as problem details: replicate-python's "
        "recorded responses have them (e.g. a training into a destination that does not "
        "exist: 404 application/problem+json).",
    ),
    (
        _version_is_any_of,
        "A prediction's `version` is a `oneOf` of any string and the string 'hidden': "
        "'hidden' (what official models answer) matches both branches, so no valid "
        "answer for an official model could match exactly one.",
    ),
    (
        _prefer_is_a_list_of_preferences,
        "The `Prefer` pattern is wrong twice: it admits `wait=61` to `wait=99` "
        "([1-9][0-9]) although its own text says n is 1 to 60 (the API refuses more, "
        "422), and it refuses every other preference, where `Prefer` is a list of "
        "preferences (RFC 7240) of which a server ignores those it does not know. The "
        "emulator reads `wait` and `wait=1`..`wait=60`, refuses a malformed wait (422) "
        "and ignores other preferences; tests/test_emulator_api.py checks that grammar.",
    ),
    (
        _bodies_with_required_fields_are_required,
        "Five request bodies whose own schema has required fields (a file's `content`, a "
        "create's `input`, a training's `destination`) are not marked required, which "
        "makes a request with no body at all valid; the API refuses it.",
    ),
    (
        _create_bodies_know_webhook_completed,
        "A create's body is `additionalProperties: false` (the API refuses unknown fields, "
        "422 `additional_property_not_allowed`) but does not list `webhook_completed`, "
        "which the official Python client 1.0.7 sends when asked to and the API accepts.",
    ),
]

_NAMES_WHAT_MUST_EXIST = (
    "A schema-valid request names what must exist (a model version, a model to deploy, "
    "a destination model the token's account owns), which no schema can express: any "
    "string is schema-valid, and the API refuses one that names nothing (422 or 404)."
)
_MODEL_INPUT = (
    "A create's `input` is any object to the API's description; the API checks it "
    "against the model's own input schema (in the version's `openapi_schema`) and "
    "refuses one without the model's required fields (422)."
)

#: Checks that can't hold for an operation, for a reason the description can't express.
EXCLUDED_CHECKS: dict[str, tuple[list[Any], str]] = {
    "predictions.create": ([positive_data_acceptance], _NAMES_WHAT_MUST_EXIST),
    "models.predictions.create": ([positive_data_acceptance], _MODEL_INPUT),
    "deployments.predictions.create": ([positive_data_acceptance], _MODEL_INPUT),
    "models.create": ([positive_data_acceptance], _NAMES_WHAT_MUST_EXIST),
    "deployments.create": ([positive_data_acceptance], _NAMES_WHAT_MUST_EXIST),
    "trainings.create": ([positive_data_acceptance], _NAMES_WHAT_MUST_EXIST),
    "files.create": (
        [negative_data_rejection],
        "A multipart/form-data part is text: a `type` or `filename` part that the "
        "negative examples make an object or a number arrives as text, which is a valid "
        "string (metadata that is not a JSON object is refused, 422).",
    ),
    "models.list": (
        [unsupported_method],
        "`QUERY /v1/models` (models.search, which both official clients call) is in the "
        "live description (OpenAPI 3.1) but a 3.0 description can't hold a QUERY "
        "operation, so this copy lacks it: the emulator serves it, it is not a 405.",
    ),
}


_NOT_SERVED = "not served yet (issue 23)"
_PREDICTION_TIMES = "started_at/completed_at null before they happen (issue 23)"
#: Operations the emulator does not yet answer as described: being mended (issue 23).
NOT_YET: dict[str, str] = {}


@functools.cache
def _published() -> Description:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where there is one
    description: Description = yaml.load((HERE / "replicate.yaml").read_text(), Loader=loader)
    return description


def published_description() -> Description:
    """The vendored description as published (a fresh copy to change)."""
    return copy.deepcopy(_published())


def corrected_description() -> Description:
    description = published_description()
    for correct, _reason in DESCRIPTION_ERRORS:
        correct(description)
    return description


schema = schemathesis.openapi.from_dict(corrected_description())
# No parameters the description does not list: the API ignores query parameters it does
# not know, as HTTP APIs do, which is no error of the description or of the emulator.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_extra_parameters=False
)

#: CI's profile tries many examples per operation, at random; the quick suite a few,
#: the same ones on every run (derandomized), so that it never fails by chance.
CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
EXAMPLES = 150 if CI else 12


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """An emulator that accepts one token, in a thread of its own (schemathesis's
    requests are blocking); predictions end almost at once so held creates are short."""
    with start_blocking_portal("asyncio") as portal:
        emulator = Emulator(Scenario(duration=0.05), token=TOKEN)
        with portal.wrap_async_context_manager(emulator.serve()) as running:
            yield f"{running.base_url}/v1"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=not CI,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_conforms(case: Any, base_url: str) -> None:
    operation_id = case.operation.definition.raw["operationId"]
    if operation_id in NOT_YET:
        pytest.xfail(NOT_YET[operation_id])
    excluded, _reason = EXCLUDED_CHECKS.get(operation_id, ([], ""))
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=excluded,
        timeout=90,
    )


def test_the_vendored_description_is_the_one_its_source_names() -> None:
    source = json.loads((HERE / "source.json").read_text())
    text = (HERE / "replicate.yaml").read_bytes()
    assert hashlib.sha256(text).hexdigest() == source["sha256"]
    description = yaml.safe_load(text)
    methods = {"get", "post", "put", "patch", "delete"}
    operations = [
        op for ops in description["paths"].values() for m, op in ops.items() if m in methods
    ]
    assert len(operations) == source["operations"] == 36
    assert len({op["operationId"] for op in operations}) == 36


def test_every_correction_changes_the_description() -> None:
    """A correction that no longer changes anything (the description was fixed upstream)
    must be dropped from the list, not kept as a silent excuse."""
    for correct, reason in DESCRIPTION_ERRORS:
        description = published_description()
        before = json.dumps(description, sort_keys=True)
        correct(description)
        assert json.dumps(description, sort_keys=True) != before, reason
