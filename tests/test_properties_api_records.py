"""The official API's records read from any JSON an answer may hold: a record or
:class:`UnexpectedResponseFormat`, never another exception; what a record keeps is of
the type it says."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from replicate_home import UnexpectedResponseFormat
from replicate_home._api_records import (
    read_account,
    read_collection,
    read_deployment,
    read_hardware,
    read_model,
    read_search,
    read_version,
)
from replicate_home._paging import next_cursor
from replicate_home._record import prediction_from_object
from replicate_home._trainings import training_of

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
keys = st.sampled_from(
    [
        "owner", "name", "slug", "id", "sku", "username", "models", "latest_version",
        "default_example", "metadata", "score", "tags", "model", "current_release",
        "configuration", "number", "status", "output", "created_at", "pages", "href",
        "collections", "description", "run_count", "openapi_schema", "version",
    ]
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=30,
)
objects = st.dictionaries(keys, json_values, max_size=8)


def read_all(data: dict[str, Any]) -> list[object]:
    """Every reader on one object; each either reads it or says why not."""
    read: list[object] = []
    for reader in (
        read_model,
        read_version,
        read_collection,
        read_account,
        read_deployment,
        lambda d, t: read_search(d, t, "q"),
        lambda d, t: read_hardware(d.get("models"), t),
        lambda d, t: training_of(prediction_from_object(d, t)),
    ):
        with contextlib.suppress(UnexpectedResponseFormat):
            read.append(reader(data, "{}"))
    return read


@given(objects)
def test_any_object_is_a_record_or_a_format_error(data: dict[str, Any]) -> None:
    for record in read_all(data):
        for name in ("owner", "name", "slug", "id", "sku", "username"):
            value = getattr(record, name, None)
            assert value is None or isinstance(value, str)
        run_count = getattr(record, "run_count", None)
        assert run_count is None or (isinstance(run_count, int) and run_count is not True)


@given(json_values)
def test_a_next_url_is_a_bounded_cursor_or_none(value: Any) -> None:
    cursor = next_cursor(value)
    assert cursor is None or (isinstance(cursor, str) and len(cursor) <= 1024)
