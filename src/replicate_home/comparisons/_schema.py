"""The results database's tables, and the numbered steps that bring any older database
up to date.

Each step of :data:`MIGRATIONS` is a list of SQL statements; step ``n`` (counted from 1)
turns a database of version ``n - 1`` into version ``n`` (``PRAGMA user_version``). A new
database runs every step from the first, an older one the steps it lacks: there is one
path to the current schema, so a database made today and one made by an older version
end up with the same tables. Every step runs in one ``BEGIN IMMEDIATE`` transaction that
re-reads the version first, so two processes opening an old database at once migrate it
once, and a step that fails leaves the database as it was.

To change the schema, append a step (never edit a released one): ``ALTER TABLE … ADD
COLUMN`` (nullable, or with a default) and ``CREATE TABLE IF NOT EXISTS``, so older rows
stay readable as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "migrate"]

#: Step 1: the tables as they were first written (a database from before schema
#: versions has them already: ``IF NOT EXISTS``). Version 1 added only values: the state
#: ``sending`` and the status ``in doubt``.
_TABLES = (
    """CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,   -- the run's name, e.g. 20261125-231500-3f9a
    created_at  TEXT NOT NULL,      -- ISO 8601, UTC
    service     TEXT NOT NULL,      -- 'home' or 'api'
    models      TEXT NOT NULL,      -- JSON list, in column order
    settings    TEXT NOT NULL       -- JSON: timeout, limit (webhook,
                                    -- webhook_events_filter when the run has one)
)""",
    """CREATE TABLE IF NOT EXISTS cells (
    run_id        TEXT NOT NULL REFERENCES runs(id),
    cell          INTEGER NOT NULL, -- prompt_index * len(models) + model_index
    prompt_index  INTEGER NOT NULL,
    model_index   INTEGER NOT NULL,
    model         TEXT NOT NULL,    -- a model, or deployment:owner/name
    prompt        TEXT,             -- the row's prompt text, if it has one
    input         TEXT NOT NULL,    -- JSON: the input sent (prompt included)
    state         TEXT NOT NULL,    -- pending | sending | running | interrupted | done
    prediction_id TEXT,
    status        TEXT,             -- succeeded, failed, canceled, aborted, timeout,
                                    -- not sent, in doubt, error (when state = 'done')
    output_text   TEXT,             -- a text model's output
    images        TEXT,             -- JSON list of image URLs
    error         TEXT,
    error_type    TEXT,             -- the exception's class name
    latency       REAL,             -- seconds from the create to the end
    predict_time  REAL,             -- the service's metrics.predict_time
    sent_at       TEXT,             -- ISO 8601, UTC: when the create answered (for a
                                    -- prediction found in the listing: its created_at)
    ended_at      TEXT,
    PRIMARY KEY (run_id, cell)
)""",
    "CREATE INDEX IF NOT EXISTS cells_by_state ON cells (run_id, state)",
)

#: Step 2: a run bound to its service; every prediction claimed by one cell of the whole
#: store; a cell's attempts; the times a resume needs to find a lost create and to
#: measure a latency from the create.
_BOUND_CLAIMED_ATTEMPTS = (
    # The API's base URL (scheme, host, port, path; never credentials or a query), and
    # whether the run is on an emulator started for it. NULL: recorded before version 2
    # (bound by its next resume).
    "ALTER TABLE runs ADD COLUMN origin TEXT",
    "ALTER TABLE runs ADD COLUMN emulator INTEGER",
    # The cell's attempt (1, then one more for each retry); earlier ones are in attempts.
    "ALTER TABLE cells ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
    # ISO 8601, UTC, this machine's clock: when the create was about to leave (the
    # 'sending' mark) and when its deadline ended: the window a lost create is looked
    # for in.
    "ALTER TABLE cells ADD COLUMN sending_at TEXT",
    "ALTER TABLE cells ADD COLUMN sending_until TEXT",
    # The service's created_at and completed_at of the cell's prediction, when it says.
    "ALTER TABLE cells ADD COLUMN created_at TEXT",
    "ALTER TABLE cells ADD COLUMN completed_at TEXT",
    """CREATE TABLE IF NOT EXISTS claims (
    prediction_id TEXT PRIMARY KEY, -- one cell of one run, in the whole store
    run_id        TEXT NOT NULL,
    cell          INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    found         INTEGER NOT NULL, -- 0: the create's answer; 1: found in the listing
    sending_at    TEXT,             -- this machine's clock, as in cells
    answered_at   TEXT,             -- this machine's clock: when the create answered
    created_at    TEXT              -- the service's clock: the prediction's created_at
)""",
    "CREATE INDEX IF NOT EXISTS claims_by_cell ON claims (run_id, cell)",
    """CREATE TABLE IF NOT EXISTS attempts (
    run_id        TEXT NOT NULL,    -- an earlier attempt of a cell (the latest is the
    cell          INTEGER NOT NULL, -- cell's row): its columns as they were
    attempt       INTEGER NOT NULL,
    prediction_id TEXT,
    status        TEXT,
    output_text   TEXT,
    images        TEXT,
    error         TEXT,
    error_type    TEXT,
    latency       REAL,
    predict_time  REAL,
    sent_at       TEXT,
    ended_at      TEXT,
    PRIMARY KEY (run_id, cell, attempt)
)""",
    # The ids an older database recorded, each claimed by its first cell (a database
    # written before claims may hold one id twice: the later cells keep theirs, unclaimed).
    "INSERT OR IGNORE INTO claims (prediction_id, run_id, cell, attempt, found, answered_at)"
    " SELECT prediction_id, run_id, cell, 1, 0, sent_at FROM cells"
    " WHERE prediction_id IS NOT NULL ORDER BY rowid",
)

#: Step 3: scores. Assertion results, judge predictions (with the judge's raw answer
#: beside the parsed score), people's pairwise votes and thumbs up/down on cells.
_SCORES = (
    """CREATE TABLE IF NOT EXISTS checks (
    run_id    TEXT NOT NULL,        -- an assertion checked on a cell's output
    cell      INTEGER NOT NULL,
    position  INTEGER NOT NULL,     -- its place among the cell's assertions
    name      TEXT NOT NULL,        -- the assertion's spec or name
    outcome   TEXT NOT NULL,        -- passed | failed | error
    reason    TEXT NOT NULL,        -- why it failed (empty when it passed)
    checked_at TEXT NOT NULL,
    PRIMARY KEY (run_id, cell, position)
)""",
    """CREATE TABLE IF NOT EXISTS judgements (
    run_id        TEXT NOT NULL,    -- a judge model's verdict on a cell's output
    cell          INTEGER NOT NULL,
    judge         INTEGER NOT NULL, -- the judge's place in the run's settings.judges
    attempt       INTEGER NOT NULL, -- the cell's attempt it judges (a retried cell's
                                    -- new output is judged afresh)
    model         TEXT NOT NULL,    -- the judge model
    state         TEXT NOT NULL,    -- pending | sending | running | interrupted | done
    prediction_id TEXT,
    status        TEXT,             -- the judge prediction's end, as for cells
    answer        TEXT,             -- the judge's raw answer, always kept
    score         REAL,             -- the parsed score; NULL: unscored
    reason        TEXT,             -- why it is unscored
    error         TEXT,             -- the judge prediction's error, if it failed
    ended_at      TEXT,
    PRIMARY KEY (run_id, cell, judge)
)""",
    """CREATE TABLE IF NOT EXISTS votes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL,     -- a blind pairwise vote between two cells of a prompt
    prompt_index INTEGER NOT NULL,
    cell_a       INTEGER NOT NULL,
    cell_b       INTEGER NOT NULL,
    model_a      TEXT NOT NULL,
    model_b      TEXT NOT NULL,
    result       TEXT NOT NULL,     -- a (cell_a won) | b | tie
    voter        TEXT NOT NULL,
    voted_at     TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS votes_by_run ON votes (run_id)",
    """CREATE TABLE IF NOT EXISTS thumbs (
    run_id   TEXT NOT NULL,         -- a person's thumbs up (1) or down (-1) on a cell
    cell     INTEGER NOT NULL,
    voter    TEXT NOT NULL,
    value    INTEGER NOT NULL,
    rated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, cell, voter)
)""",
)

#: Step 4: the output archive. Each output file of a cell's attempt: where it was served,
#: and where its bytes are kept beside the database, or why they are not.
_FILES = (
    """CREATE TABLE IF NOT EXISTS files (
    run_id        TEXT NOT NULL,
    cell          INTEGER NOT NULL,
    attempt       INTEGER NOT NULL, -- the cell's attempt that made it
    position      INTEGER NOT NULL, -- its place in the output, from 0
    url           TEXT NOT NULL,    -- where the service served it (a kept data: URI:
                                    -- its header only, the bytes are in the archive)
    state         TEXT NOT NULL,    -- pending | kept | failed | too large | not kept
    name          TEXT,             -- kept: its path in the archive, ab/ab12…ef.png
    sha256        TEXT,             -- kept: the hex SHA-256 of its bytes
    content_type  TEXT,             -- kept: its media type (from its bytes where known)
    size          INTEGER,          -- kept: bytes
    error         TEXT,             -- not kept: why
    updated_at    TEXT NOT NULL,    -- ISO 8601, UTC
    PRIMARY KEY (run_id, cell, attempt, position)
)""",
    "CREATE INDEX IF NOT EXISTS files_by_state ON files (run_id, state)",
    # The image URLs of cells that ended before the archive: to be kept by the next
    # resume or `report --fetch`, while the service still has them.
    "INSERT OR IGNORE INTO files (run_id, cell, attempt, position, url, state, updated_at)"
    " SELECT cells.run_id, cells.cell, cells.attempt, CAST(image.key AS INTEGER),"
    " image.value, 'pending', strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    " FROM cells, json_each(cells.images) AS image"
    " WHERE cells.state = 'done' AND json_valid(cells.images) AND image.type = 'text'",
)

#: Step ``n`` (from 1) turns a database of version ``n - 1`` into version ``n``.
MIGRATIONS: tuple[Sequence[str], ...] = (_TABLES, _BOUND_CLAIMED_ATTEMPTS, _SCORES, _FILES)

#: The version of the schema this library writes (``PRAGMA user_version``).
SCHEMA_VERSION = len(MIGRATIONS)

#: Every statement of every step, in order, then the version: the whole schema as SQL
#: (its comments describe the columns), a script that makes a current database.
SCHEMA = "".join(f"{statement};\n" for step in MIGRATIONS for statement in step) + (
    f"PRAGMA user_version={SCHEMA_VERSION};\n"
)


def migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the database of ``connection`` (autocommit mode) to :data:`SCHEMA_VERSION`;
    ``ValueError`` for a database of a newer version, left untouched."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} is a results database of schema version {version}, written by "
            f"a newer replicate-home (this one reads up to {SCHEMA_VERSION}): upgrade"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have taken this step while this one waited for the lock.
            (current,) = connection.execute("PRAGMA user_version").fetchone()
            if current < number:
                for statement in MIGRATIONS[number - 1]:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={number}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
