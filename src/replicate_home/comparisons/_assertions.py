"""Assertions on a cell's output: checks that pass or fail with a reason, no model needed.

An assertion is written as a short spec, ``KIND`` or ``KIND:VALUE`` (the same text on the
command line, in a prompt file and in the library), or as a mapping ``{"type": KIND,
"value": VALUE}`` where a value is better written as JSON (a JSON Schema):

- ``contains:TEXT``: the output contains ``TEXT`` (case-sensitive);
- ``not-contains:TEXT``: the output does not contain ``TEXT``;
- ``regex:PATTERN``: Python's ``re.search`` finds ``PATTERN`` (``(?i)`` ignores case);
- ``equals:TEXT``: the output is ``TEXT``, leading and trailing whitespace aside;
- ``json``: the output (whitespace aside) parses as JSON;
- ``json-schema:SCHEMA``: the output parses as JSON valid against ``SCHEMA`` (a JSON
  object; needs the ``jsonschema`` package: the ``scoring`` extra);
- ``min-length:N`` / ``max-length:N``: the output has at least / at most ``N`` characters;

and in the library any Python callable (:meth:`Assertion.python`). Everything here is
pure: a check is a function of the output text alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._exceptions import excerpt

__all__ = [
    "KINDS",
    "Assertion",
    "AssertionResult",
    "CellChecks",
    "Outcome",
    "check_output",
    "parse_assertions",
]

#: A check's outcome: ``passed``, ``failed`` (the output does not meet it) or ``error``
#: (it could not be checked: no text output, a callable that raised).
Outcome = Literal["passed", "failed", "error"]

#: The assertion kinds a spec may name (a Python callable is kind ``python``).
KINDS = (
    "contains",
    "not-contains",
    "regex",
    "equals",
    "json",
    "json-schema",
    "min-length",
    "max-length",
)

_NEEDS_VALUE = frozenset(KINDS) - {"json"}

#: How much of the output a failure's reason quotes.
_QUOTE = 80

PythonCheck = Callable[[str], "bool | tuple[bool, str]"]


@dataclass(frozen=True)
class AssertionResult:
    """One assertion checked on one output: the assertion's ``name`` (its spec), the
    ``outcome`` and a ``reason`` a person can read (empty when it passed)."""

    name: str
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True)
class CellChecks:
    """Every assertion checked on one cell. ``outcome`` is ``error`` if any check could
    not be made, else ``failed`` if any failed, else ``passed`` (no assertions pass)."""

    cell: int
    results: tuple[AssertionResult, ...]

    @property
    def outcome(self) -> Outcome:
        outcomes = {result.outcome for result in self.results}
        if "error" in outcomes:
            return "error"
        return "failed" if "failed" in outcomes else "passed"


@dataclass(frozen=True)
class Assertion:
    """One check on an output. Build it from a spec with :meth:`parse` (or
    :func:`parse_assertions`), or from a callable with :meth:`python`; ``name`` is how
    results and the database name it (the spec, or the callable's name)."""

    kind: str
    value: Any = None
    name: str = ""
    _compiled: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind, value = self.kind, self.value
        if kind == "python":
            if not callable(value):
                raise ValueError("a python assertion needs a callable")
        elif kind not in KINDS:
            raise ValueError(f"unknown assertion {kind!r}: use one of {', '.join(KINDS)}")
        elif kind in _NEEDS_VALUE and value is None:
            raise ValueError(f"the assertion {kind!r} needs a value: {kind}:VALUE")
        compiled: Any = None
        if kind in ("contains", "not-contains", "equals") and not isinstance(value, str):
            raise ValueError(f"{kind} needs a string, not {value!r}")
        if kind == "regex":
            if not isinstance(value, str):
                raise ValueError(f"regex needs a pattern string, not {value!r}")
            try:
                compiled = re.compile(value)
            except re.error as error:
                raise ValueError(f"regex {value!r} does not compile: {error}") from None
        if kind in ("min-length", "max-length"):
            if isinstance(value, str) and value.strip().isdigit():
                object.__setattr__(self, "value", int(value))
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{kind} needs a whole number of characters, not {value!r}")
        if kind == "json-schema":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError as error:
                    raise ValueError(f"json-schema: the schema is not JSON: {error}") from None
                object.__setattr__(self, "value", value)
            compiled = _schema_validator(value)
        object.__setattr__(self, "_compiled", compiled)
        if not self.name:
            object.__setattr__(self, "name", self.spec)

    @property
    def spec(self) -> str:
        """The assertion as spec text (a callable's is ``python:NAME``)."""
        if self.kind == "python":
            return f"python:{getattr(self.value, '__name__', 'check')}"
        if self.kind == "json":
            return "json"
        value = self.value
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return f"{self.kind}:{text}"

    def to_json(self) -> str | dict[str, Any]:
        """The spec as it is stored with a run (a callable can't be stored: ``ValueError``)."""
        if self.kind == "python":
            raise ValueError(f"{self.name}: a Python callable can't be stored with a run")
        if self.kind == "json-schema":
            return {"type": self.kind, "value": self.value}
        return self.spec

    @classmethod
    def python(cls, check: PythonCheck, name: str | None = None) -> Assertion:
        """A check by a Python callable: given the output text, it returns ``True``
        (passed), ``False`` (failed) or ``(passed, reason)``; an exception it raises is
        an ``error`` result. ``name`` defaults to ``python:<the function's name>``."""
        return cls("python", check, name or "")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | Assertion | PythonCheck) -> Assertion:
        """An assertion from a spec string (``KIND`` or ``KIND:VALUE``), a mapping
        (``{"type": KIND, "value": VALUE}``), an :class:`Assertion`, or a callable."""
        if isinstance(spec, Assertion):
            return spec
        if isinstance(spec, str):
            kind, colon, value = spec.partition(":")
            kind = kind.strip()
            if kind == "json" and colon and value:
                raise ValueError("the assertion 'json' takes no value")
            return cls(kind, value if colon else None)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"type", "value", "name"}
            if "type" not in spec or unknown:
                raise ValueError(f"an assertion mapping has 'type' and 'value', not {spec!r}")
            return cls(str(spec["type"]), spec.get("value"), str(spec.get("name") or ""))
        if callable(spec):
            return cls.python(spec)
        raise ValueError(f"an assertion is a spec string or a mapping, not {spec!r}")

    def check(self, output: str | None) -> AssertionResult:
        """Check ``output`` (``None``: the cell has no text output, an ``error``)."""
        if output is None:
            return AssertionResult(self.name, "error", "no text output to check")
        try:
            verdict = self._verdict(output)
        except Exception as error:  # a callable's own failure is this result, not ours
            return AssertionResult(self.name, "error", f"{type(error).__name__}: {error}")
        if verdict is None:
            return AssertionResult(self.name, "passed")
        return AssertionResult(self.name, "failed", verdict)

    def _verdict(self, output: str) -> str | None:
        """``None`` when the output passes, else why not."""
        kind, value = self.kind, self.value
        quoted = repr(excerpt(output, _QUOTE))
        if kind == "contains":
            return None if value in output else f"{value!r} not in {quoted}"
        if kind == "not-contains":
            return None if value not in output else f"{value!r} found in {quoted}"
        if kind == "regex":
            return None if self._compiled.search(output) else f"no match for {value!r} in {quoted}"
        if kind == "equals":
            return None if output.strip() == value.strip() else f"{quoted} is not {value!r}"
        if kind == "min-length":
            return None if len(output) >= value else f"{len(output)} characters, under {value}"
        if kind == "max-length":
            return None if len(output) <= value else f"{len(output)} characters, over {value}"
        if kind in ("json", "json-schema"):
            try:
                document = json.loads(output)
            except ValueError as error:
                return f"not JSON ({error}): {quoted}"
            if kind == "json":
                return None
            errors = sorted(self._compiled.iter_errors(document), key=lambda e: list(e.path))
            if not errors:
                return None
            path = "/".join(str(part) for part in errors[0].path) or "(root)"
            return f"{path}: {excerpt(errors[0].message, _QUOTE)}"
        return _python_verdict(self.value, output)


def _python_verdict(check: PythonCheck, output: str) -> str | None:
    answer = check(output)
    reason = ""
    if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[1], str):
        answer, reason = answer
    if not isinstance(answer, bool):
        raise TypeError(f"the check returned {answer!r}, not True, False or (bool, reason)")
    return None if answer else (reason or "the check returned False")


def _schema_validator(schema: object) -> Any:
    """A validator of ``schema`` (the ``jsonschema`` package's, for the schema's own
    draft); a ``ValueError`` for a schema that is not one, an ``ImportError`` naming the
    extra when the package is missing."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"json-schema needs a JSON object as its schema, not {schema!r}")
    try:
        import jsonschema
    except ImportError:
        raise ImportError(
            "the json-schema assertion needs jsonschema: pip install 'replicate-home[scoring]'"
        ) from None
    schema = dict(schema)
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ValueError(f"json-schema: not a valid schema: {error.message}") from None
    return validator_class(schema)


def parse_assertions(
    specs: Iterable[str | Mapping[str, Any] | Assertion | PythonCheck] | str | None,
) -> tuple[Assertion, ...]:
    """Assertions from specs (one spec string, or a list of specs, mappings, callables)."""
    if specs is None:
        return ()
    if isinstance(specs, (str, Mapping)):
        return (Assertion.parse(specs),)
    return tuple(Assertion.parse(spec) for spec in specs)


def check_output(cell: int, output: str | None, assertions: Iterable[Assertion]) -> CellChecks:
    """Every assertion checked on one cell's output."""
    return CellChecks(cell, tuple(assertion.check(output) for assertion in assertions))
