"""Assertions on a cell's output: specs, outcomes with reasons, callables, prompt files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home.comparisons import Assertion, AssertionResult, CellChecks
from replicate_home.comparisons._assertions import check_output, parse_assertions

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    ("spec", "output", "outcome"),
    [
        ("contains:Paris", "It is Paris.", "passed"),
        ("contains:Paris", "It is paris.", "failed"),
        ("not-contains:sorry", "Sure.", "passed"),
        ("not-contains:sorry", "I'm sorry", "failed"),
        ("regex:(?i)^it is \\w+", "It is Paris.", "passed"),
        ("regex:\\d{3}", "12", "failed"),
        ("equals:4", " 4\n", "passed"),
        ("equals:4", "four", "failed"),
        ("json", ' {"a": 1} ', "passed"),
        ("json", "{a: 1}", "failed"),
        ("min-length:3", "abc", "passed"),
        ("min-length:4", "abc", "failed"),
        ("max-length:3", "abc", "passed"),
        ("max-length:2", "abc", "failed"),
        ("contains:a:b", "x a:b y", "passed"),  # only the first colon separates
        (f"json-schema:{json.dumps(SCHEMA)}", '{"city": "Paris"}', "passed"),
        (f"json-schema:{json.dumps(SCHEMA)}", '{"city": 3}', "failed"),
        (f"json-schema:{json.dumps(SCHEMA)}", "Paris", "failed"),
    ],
)
def test_specs_pass_and_fail(spec: str, output: str, outcome: str) -> None:
    assertion = Assertion.parse(spec)
    result = assertion.check(output)
    assert result.outcome == outcome
    assert result.name == spec or assertion.kind == "json-schema"
    assert (result.reason == "") == (outcome == "passed")


def test_failure_reasons_say_what_was_wrong() -> None:
    assert (
        "'Paris' not in 'It is Rome.'"
        in Assertion.parse("contains:Paris").check("It is Rome.").reason
    )
    assert "3 characters, under 5" in Assertion.parse("min-length:5").check("abc").reason
    schema = Assertion.parse({"type": "json-schema", "value": SCHEMA})
    assert schema.check('{"city": 3}').reason.startswith("city: 3 is not of type 'string'")
    assert schema.check("{}").reason.startswith("(root): 'city' is a required property")
    long = Assertion.parse("contains:zzz").check("x" * 10_000).reason
    assert len(long) < 200  # the output is quoted in an excerpt


def test_a_cell_with_no_text_output_is_an_error_not_a_failure() -> None:
    result = Assertion.parse("contains:x").check(None)
    assert result == AssertionResult("contains:x", "error", "no text output to check")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("contain:x", "unknown assertion 'contain'"),
        ("contains", "needs a value"),
        ("regex:(", "does not compile"),
        ("min-length:many", "whole number"),
        ("max-length:-1", "whole number"),
        ("json:x", "takes no value"),
        ("json-schema:{not json", "not JSON"),
        ("json-schema:[1]", "JSON object"),
        ('json-schema:{"type": 12}', "not a valid schema"),
        ({"value": "x"}, "'type' and 'value'"),
        ({"type": "contains", "value": 3}, "needs a string"),
        (3, "spec string or a mapping"),
    ],
)
def test_bad_specs_are_value_errors(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Assertion.parse(spec)  # type: ignore[arg-type]


def test_python_callables_pass_fail_with_reasons_and_errors() -> None:
    def short(output: str) -> bool:
        return len(output) < 5

    def polite(output: str) -> tuple[bool, str]:
        return "please" in output, "no please"

    def broken(output: str) -> bool:
        raise RuntimeError("boom")

    def confused(output: str) -> bool:
        return "yes"  # type: ignore[return-value]

    assert Assertion.python(short).check("abc") == AssertionResult("python:short", "passed")
    assert Assertion.python(short, "tiny").check("abcdef") == AssertionResult(
        "tiny", "failed", "the check returned False"
    )
    assert Assertion.parse(polite).check("hi").reason == "no please"
    assert Assertion.python(broken).check("x") == AssertionResult(
        "python:broken", "error", "RuntimeError: boom"
    )
    assert Assertion.python(confused).check("x").outcome == "error"
    with pytest.raises(ValueError, match="can't be stored"):
        Assertion.python(short).to_json()
    with pytest.raises(ValueError, match="callable"):
        Assertion("python", 3)


def test_cell_checks_combine_outcomes() -> None:
    assertions = parse_assertions(["contains:a", "max-length:3"])
    assert check_output(1, "ab", assertions).outcome == "passed"
    assert check_output(2, "abcd", assertions).outcome == "failed"
    assert check_output(3, None, assertions).outcome == "error"
    assert CellChecks(4, ()).outcome == "passed"
    assert parse_assertions(None) == ()
    assert parse_assertions("json") == (Assertion("json"),)


@given(st.sampled_from(["contains", "not-contains", "equals", "regex"]), st.text(min_size=1))
def test_specs_round_trip_through_storage(kind: str, value: str) -> None:
    try:
        assertion = Assertion(kind, value)
    except ValueError:  # a random regex that does not compile
        return
    stored = assertion.to_json()
    assert Assertion.parse(json.loads(json.dumps(stored))) == assertion


def test_json_schema_round_trips_as_a_mapping() -> None:
    assertion = Assertion.parse(f"json-schema:{json.dumps(SCHEMA)}")
    assert assertion.to_json() == {"type": "json-schema", "value": SCHEMA}
    assert Assertion.parse(assertion.to_json()) == assertion


def test_json_schema_needs_the_scoring_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_jsonschema(name: str, *args: object, **kwargs: object) -> object:
        if name == "jsonschema":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    with pytest.raises(ImportError, match=r"pip install 'replicate-home\[scoring\]'"):
        Assertion.parse({"type": "json-schema", "value": SCHEMA})
