"""What the results store hands out: runs, cells, attempts and clock samples, as values,
and where a run stands while it goes (:class:`RunProgress`).

Plain frozen records read from the database's rows (:mod:`._store` does the reading and
writing), and the statuses a cell can end with. No I/O here, so the runner, the report
and the scoring modules share these types without the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: The status of a cell whose create may have been sent but whose answer was never
#: recorded, on a service with no listing to check (the homepage service).
IN_DOUBT = "in doubt"

#: Every status a cell can end with (``cells.status`` when ``state`` is ``done``).
END_STATUSES = (
    "succeeded",
    "failed",
    "canceled",
    "aborted",
    "timeout",
    "not sent",
    IN_DOUBT,
    "error",
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def moment_from(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunRecord:
    """One run: its name, when it began, on which service, its models and settings.

    ``origin`` is the service's base URL the run is bound to (no credentials, no query)
    and ``emulator`` whether it runs on an emulator started for it; both ``None`` for a
    run recorded before runs were bound (its next resume binds it)."""

    id: str
    created_at: datetime
    service: str
    models: tuple[str, ...]
    settings: Mapping[str, Any]
    origin: str | None = None
    emulator: bool | None = None


@dataclass(frozen=True)
class CellRecord:
    """One cell (a prompt on a model) as the database holds it: its latest attempt
    (``attempt`` counts them, from 1; :meth:`ResultsStore.attempts` has the earlier)."""

    run_id: str
    cell: int
    prompt_index: int
    model_index: int
    model: str
    prompt: str | None
    input: Mapping[str, Any]
    state: str
    prediction_id: str | None = None
    status: str | None = None
    output_text: str | None = None
    images: tuple[str, ...] = ()
    error: str | None = None
    error_type: str | None = None
    latency: float | None = None
    predict_time: float | None = None
    sent_at: str | None = None
    ended_at: str | None = None
    attempt: int = 1
    sending_at: datetime | None = None
    sending_until: datetime | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """An earlier attempt of a cell, as it ended before the cell was sent again."""

    run_id: str
    cell: int
    attempt: int
    prediction_id: str | None
    status: str | None
    output_text: str | None
    images: tuple[str, ...]
    error: str | None
    error_type: str | None
    latency: float | None
    predict_time: float | None
    sent_at: str | None
    ended_at: str | None


@dataclass(frozen=True)
class ClockSample:
    """One recorded create, on two clocks: this machine's when it was about to leave and
    when it answered, the service's ``created_at`` (between the two, give or take the
    clocks' difference)."""

    sending_at: datetime
    answered_at: datetime
    created_at: datetime


def images_from_json(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def cell_from_row(row: sqlite3.Row) -> CellRecord:
    return CellRecord(
        run_id=row["run_id"],
        cell=row["cell"],
        prompt_index=row["prompt_index"],
        model_index=row["model_index"],
        model=row["model"],
        prompt=row["prompt"],
        input=json.loads(row["input"]),
        state=row["state"],
        prediction_id=row["prediction_id"],
        status=row["status"],
        output_text=row["output_text"],
        images=images_from_json(row["images"]),
        error=row["error"],
        error_type=row["error_type"],
        latency=row["latency"],
        predict_time=row["predict_time"],
        sent_at=row["sent_at"],
        ended_at=row["ended_at"],
        attempt=row["attempt"],
        sending_at=moment_from(row["sending_at"]),
        sending_until=moment_from(row["sending_until"]),
        created_at=moment_from(row["created_at"]),
        completed_at=moment_from(row["completed_at"]),
    )


def run_from_row(row: sqlite3.Row) -> RunRecord:
    emulator = row["emulator"]
    return RunRecord(
        row["id"],
        datetime.fromisoformat(row["created_at"]),
        row["service"],
        tuple(json.loads(row["models"])),
        json.loads(row["settings"]),
        row["origin"],
        None if emulator is None else bool(emulator),
    )


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: cells ``done`` (of which ``failed`` did not succeed),
    ``running`` (created, not ended), ``waiting`` (not created yet: for the rate budget
    or ``limit``), out of ``total``; ``remaining`` estimates the seconds left (``None``
    until it can), from the create rate the budget allows and the latency so far.
    ``stage`` is ``"cells"``, or ``"judges"`` once the cells have ended and judge models
    score them: the counts are then judge predictions."""

    run_id: str
    total: int
    done: int
    running: int
    waiting: int
    failed: int
    remaining: float | None
    stage: str = "cells"
