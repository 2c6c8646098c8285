"""A create's ``input`` checked against its model's Cog ``Input`` schema, answering what
the real API answers. Pure, no I/O.

The real API validates inputs with a JSON Schema validator and answers ``422``
``{"title": "Input validation failed", "detail": "- input: prompt is required\\n",
"status": 422, "invalid_fields": [{"type": "required", "field": "input", "description":
"prompt is required"}]}``; the ``type`` names and descriptions below are that
validator's (``required``, ``invalid_type``, ``number_gte``, ``number_lte``, ``enum``,
``format``). Unknown input fields are ignored, as Replicate always has.

Only the part of JSON Schema the emulator's schemas use is understood (``type``,
``minimum``, ``maximum``, ``enum``, ``format: uri``, ``items``, ``required``), which
keeps this a small table-driven function rather than a dependency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["InvalidField", "problem_fields", "uri_values", "validate_input"]

#: ``uri_check(value)``: ``None`` if a ``format: uri`` string is acceptable, else the
#: description of the ``format`` error.
UriCheck = Callable[[str], "str | None"]


class InvalidField(NamedTuple):
    """One entry of the real 422's ``invalid_fields``."""

    type: str
    field: str
    description: str


def _json_type(value: object) -> str:
    """The JSON Schema type name of a parsed JSON value (integral numbers: ``integer``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if math.isfinite(value) and value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _matches(expected: str, actual: str) -> bool:
    return actual == expected or (expected == "number" and actual == "integer")


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _check(
    name: str, field: str, value: object, schema: Mapping[str, Any], uri_check: UriCheck
) -> Iterator[InvalidField]:
    expected = schema.get("type")
    actual = _json_type(value)
    if isinstance(expected, str) and not _matches(expected, actual):
        yield InvalidField(
            "invalid_type", field, f"Invalid type. Expected: {expected}, given: {actual}"
        )
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        allowed = ", ".join(json.dumps(item, ensure_ascii=False) for item in enum)
        yield InvalidField("enum", field, f"{name} must be one of the following: {allowed}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None and value < minimum:
            yield InvalidField(
                "number_gte", field, f"Must be greater than or equal to {_number_text(minimum)}"
            )
        if maximum is not None and value > maximum:
            yield InvalidField(
                "number_lte", field, f"Must be less than or equal to {_number_text(maximum)}"
            )
    if isinstance(value, str) and schema.get("format") == "uri":
        problem = uri_check(value)
        if problem is not None:
            yield InvalidField("format", field, problem)
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for index, item in enumerate(value):
            yield from _check(str(index), f"{field}.{index}", item, items, uri_check)


def validate_input(
    model_input: object, schema: Mapping[str, Any], uri_check: UriCheck
) -> list[InvalidField]:
    """Every way ``model_input`` (a create's ``input``, parsed JSON) breaks ``schema`` (a
    Cog ``Input`` schema), in the real API's terms; empty when it is valid."""
    if model_input is None:
        return [InvalidField("required", "", "input is required")]
    if not isinstance(model_input, dict):
        given = _json_type(model_input)
        return [
            InvalidField("invalid_type", "input", f"Invalid type. Expected: object, given: {given}")
        ]
    problems = [
        InvalidField("required", "input", f"{name} is required")
        for name in schema.get("required", ())
        if name not in model_input
    ]
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    for name, property_schema in properties.items():
        if name in model_input:
            problems.extend(
                _check(name, f"input.{name}", model_input[name], property_schema, uri_check)
            )
    return problems


def uri_values(model_input: Mapping[str, Any], schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``format: uri`` strings of a valid ``model_input``, as ``(path, value)`` pairs
    (``"image"``, ``"reference_images.0"``), in schema order."""
    found: list[tuple[str, str]] = []
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    for name, property_schema in properties.items():
        value = model_input.get(name)
        if isinstance(value, str) and property_schema.get("format") == "uri":
            found.append((name, value))
        items = property_schema.get("items")
        if isinstance(value, list) and isinstance(items, Mapping) and items.get("format") == "uri":
            found.extend(
                (f"{name}.{index}", item)
                for index, item in enumerate(value)
                if isinstance(item, str)
            )
    return found


def problem_fields(problems: Sequence[InvalidField]) -> tuple[str, list[dict[str, str]]]:
    """The ``detail`` text and the ``invalid_fields`` list of the real 422 answer."""
    lines = [
        f"- {problem.field}: {problem.description}" if problem.field else f"- {problem.description}"
        for problem in problems
    ]
    return "\n".join(lines) + "\n", [problem._asdict() for problem in problems]
