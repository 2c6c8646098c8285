"""A prompt set: the rows of a comparison, read from plain lines, CSV or JSONL.

A row's ``assert`` key (a JSONL key, or a CSV column) holds the assertions checked on
that row's outputs, on every model (:mod:`._assertions`): one spec (``contains:Paris``),
or a JSON list of specs and ``{"type": ..., "value": ...}`` objects. It is never sent to
the model.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._assertions import Assertion, parse_assertions

__all__ = ["ASSERT_KEY", "PromptRow", "load_prompts", "parse_prompts", "prompt_rows"]

#: The key (JSONL) or column (CSV) of a row's assertions.
ASSERT_KEY = "assert"


@dataclass(frozen=True)
class PromptRow:
    """One prompt of a set: its text (``None`` when the row only gives ``input``), the
    model inputs that go with it (merged over the run's own inputs), and the
    assertions checked on its outputs (besides the run's own)."""

    prompt: str | None
    input: Mapping[str, Any] = field(default_factory=dict)
    assertions: tuple[Assertion, ...] = ()

    def __post_init__(self) -> None:
        if self.prompt is not None and (not isinstance(self.prompt, str) or not self.prompt):
            raise ValueError(f"a prompt must be a non-empty string, not {self.prompt!r}")
        if not isinstance(self.input, Mapping):
            raise ValueError(f"a row's input must be a mapping, not {type(self.input).__name__}")
        if self.prompt is None and not self.input:
            raise ValueError("a row needs a prompt or an input")
        object.__setattr__(self, "assertions", parse_assertions(self.assertions))


def prompt_rows(prompts: Iterable[str | PromptRow | Mapping[str, Any]]) -> list[PromptRow]:
    """Rows from strings, :class:`PromptRow` or mappings (``{"prompt": ..., other
    inputs}``); a ``ValueError`` for anything else, or for none at all."""
    if isinstance(prompts, (str, bytes)):
        raise ValueError("prompts must be a list of prompts, not one string")
    rows = [_row(item, number) for number, item in enumerate(prompts, 1)]
    if not rows:
        raise ValueError("there must be at least one prompt")
    return rows


def _row(item: object, number: int) -> PromptRow:
    if isinstance(item, PromptRow):
        return item
    if isinstance(item, str):
        return PromptRow(item)
    if isinstance(item, Mapping):
        values = dict(item)
        prompt = values.pop("prompt", None)
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"row {number}: prompt must be a string")
        try:
            assertions = parse_assertions(values.pop(ASSERT_KEY, None))
        except ValueError as error:
            raise ValueError(f"row {number}: {error}") from None
        return PromptRow(prompt or None, values, assertions)
    raise ValueError(f"row {number}: a prompt must be a string or a mapping, not {item!r}")


def parse_prompts(text: str, format: str) -> list[PromptRow]:
    """Rows from the text of a prompt file: ``"jsonl"`` (an object a line: ``prompt``
    and any other inputs, or a bare string), ``"csv"`` (a header row; a ``prompt``
    column, any other columns are inputs, JSON values where they parse) or ``"lines"``
    (one prompt a line). Blank lines are skipped, and a byte-order mark at the start
    (spreadsheet programs write one before the CSV they export). An ``assert`` key or
    column holds the row's assertions (a spec, or a JSON list of them): never a model
    input."""
    text = text.removeprefix("\ufeff")
    if format == "jsonl":
        items: list[object] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as error:
                raise ValueError(f"line {number}: not JSON: {error}") from None
        return prompt_rows(_checked(items))
    if format == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise ValueError("a CSV prompt file needs a header row with a 'prompt' column")
        return prompt_rows([_csv_row(row) for row in reader])
    if format == "lines":
        return prompt_rows([line.strip() for line in text.splitlines() if line.strip()])
    raise ValueError(f"format must be 'jsonl', 'csv' or 'lines', not {format!r}")


def _checked(items: Sequence[object]) -> list[str | Mapping[str, Any]]:
    checked: list[str | Mapping[str, Any]] = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, (str, Mapping)):
            raise ValueError(f"row {number}: expected an object or a string")
        checked.append(item)
    return checked


def _csv_row(row: Mapping[str, str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in row.items():
        if key is None or raw is None or raw == "":
            continue
        if key == "prompt":
            values[key] = raw
            continue
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


def load_prompts(path: str | Path) -> list[PromptRow]:
    """Rows of a prompt file, by its suffix: ``.jsonl`` (or ``.ndjson``), ``.csv``, else
    one prompt a line. UTF-8, with or without the byte-order mark that spreadsheet
    programs put before a CSV they export (Excel's "CSV UTF-8"); a file that is not
    UTF-8 is a ``ValueError``."""
    path = Path(path)
    suffix = path.suffix.lower()
    format = "jsonl" if suffix in (".jsonl", ".ndjson") else "csv" if suffix == ".csv" else "lines"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    return parse_prompts(text, format)
