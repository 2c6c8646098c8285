"""Scoring on the command line: --assert, --judge / --image-judge with --rubric,
--fail-under and --min-pass-rate exit codes, the end summary, and export."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from replicate_home.cli import main
from replicate_home.emulator import judge_score

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
TEXT_JUDGE = "replicate-home/text-judge"
VISION_JUDGE = "replicate-home/vision-judge"


def _compare(db: Path, *options: str) -> list[str]:
    return ["compare", "--emulator", "--service", "api", "--db", str(db), *options]


def _run_id(err: str) -> str:
    return err.split("replicate-home: run ", 1)[1].split(":", 1)[0]


def test_a_judged_run_prints_a_summary_and_meets_its_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Is it calm?\n", encoding="utf-8")
    db = tmp_path / "runs.db"
    argv = _compare(db, "-p", "calm", "-p", "windy", "-m", LLAMA, "-m", FLUX)
    argv += ["--judge", TEXT_JUDGE, "--image-judge", VISION_JUDGE, "--rubric", f"@{rubric}"]
    argv += ["--assert", "max-length:100000", "--fail-under", "1", "--min-pass-rate", "50%"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"  {LLAMA}: 2 succeeded" in out
    assert "judge mean" in out
    assert "assertions 2/2 passed (100%)" in out
    assert "below the threshold" not in err
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT c.output_text, j.model, j.score FROM judgements j JOIN cells c"
            " USING (run_id, cell) ORDER BY c.cell"
        ).fetchall()
    connection.close()
    assert [model for _, model, _ in rows] == [TEXT_JUDGE, VISION_JUDGE] * 2
    for text, model, score in rows:
        assert score is not None
        if model == TEXT_JUDGE:
            assert score == judge_score(text)


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (["--judge", TEXT_JUDGE, "--rubric", "r", "--fail-under", "10.5"], 1, "is under 10.5"),
        (["--judge", LLAMA, "--rubric", "r", "--fail-under", "1"], 1, "no judged output scored"),
        (["--assert", "max-length:3", "--min-pass-rate", "0.5"], 1, "pass rate 0% is under 50%"),
        (["--assert", "max-length:3"], 0, ""),  # no threshold: a failed check is a result
        (["--min-pass-rate", "1"], 1, "no cell was checked by an assertion"),
    ],
)
def test_thresholds_set_the_exit_status(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    status: int,
    message: str,
) -> None:
    assert main([*_compare(tmp_path / "runs.db", "-p", "calm", "-m", LLAMA), *options]) == status
    err = capsys.readouterr().err
    assert message in err
    assert ("below the threshold" in err) == bool(message)


@pytest.mark.slow
def test_a_failing_judge_is_unscored_and_fails_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The homepage service can only run its own models: a judge prompt on gemma gives
    # words, never a score; its answer is kept in --json.
    argv = ["compare", "--emulator", "--service", "home", "--db", str(tmp_path / "runs.db")]
    argv += ["-p", "calm", "-m", "gemma-2b", "--judge", "gemma-2b", "--rubric", "r", "--json"]
    assert main(argv) == 0
    (cell,) = json.loads(capsys.readouterr().out)
    (verdict,) = cell["judgements"]
    assert verdict["score"] is None
    assert verdict["answer"]
    assert verdict["reason"] == "no SCORE line in the answer"
    assert main([*argv, "--fail-under", "5"]) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--judge", TEXT_JUDGE], "need --rubric"),
        (["--rubric", "r"], "goes with --judge"),
        (["--assert", "contain:x"], "unknown assertion 'contain'"),
        (["--assert", "json-schema:@missing.json"], "missing.json"),
        (["--judge", TEXT_JUDGE, "--rubric", "@missing.txt"], "missing.txt"),
        (["--fail-under", "5"], "--fail-under compares judge scores"),
        (["--min-pass-rate", "150%"], "between 0 and 1"),
    ],
)
def test_scoring_usage_errors_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    db = tmp_path / "runs.db"
    try:
        status = main([*_compare(db, "-p", "calm", "-m", LLAMA), *options])
    except SystemExit as exit:  # argparse's own usage errors
        status = int(exit.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_a_judge_the_service_cant_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", "--emulator", "--service", "home", "--db", str(tmp_path / "runs.db")]
    argv += ["-p", "calm", "-m", "gemma-2b", "--judge", "no/such-judge", "--rubric", "r"]
    assert main(argv) == 2
    assert "no/such-judge" in capsys.readouterr().err


def test_export_writes_cells_votes_and_models_as_csv_and_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object"}', encoding="utf-8")
    argv = _compare(
        db, "-p", "calm", "-p", "windy", "-m", LLAMA, "-m", "google-deepmind/gemma-2b-it"
    )
    argv += ["--judge", TEXT_JUDGE, "--rubric", "r", "--assert", f"json-schema:@{schema}"]
    assert main(argv) == 0
    run_id = _run_id(capsys.readouterr().err)
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "INSERT INTO votes (run_id, prompt_index, cell_a, cell_b, model_a, model_b, result,"
            " voter, voted_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'ann', '2026-12-06T18:00:00Z')",
            [
                (run_id, 0, 0, 1, LLAMA, "google-deepmind/gemma-2b-it", "a"),
                (run_id, 1, 3, 2, "google-deepmind/gemma-2b-it", LLAMA, "b"),
            ],
        )
    connection.close()
    export = ["export", run_id, "--db", str(db)]
    assert main([*export, "--format", "jsonl"]) == 0
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [c["cell"] for c in cells] == [0, 1, 2, 3]
    assert [(c["votes_won"], c["votes_lost"]) for c in cells] == [(1, 0), (0, 1), (1, 0), (0, 1)]
    assert all(c["checks"][0]["outcome"] == "failed" for c in cells)  # words are not JSON
    assert all(c["judge_mean"] == judge_score(c["output_text"]) for c in cells)
    assert main([*export, "--format", "csv", "-o", str(tmp_path / "cells.csv")]) == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "cells.csv").read_text("utf-8"))))
    assert [row["model"] for row in table] == [LLAMA, "google-deepmind/gemma-2b-it"] * 2
    assert json.loads(table[0]["judgements"])[0]["judge"] == TEXT_JUDGE
    assert main([*export, "--format", "csv", "--table", "votes"]) == 0
    votes = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(v["model_a"], v["result"], v["voter"]) for v in votes] == [
        (LLAMA, "a", "ann"),
        ("google-deepmind/gemma-2b-it", "b", "ann"),
    ]
    assert main([*export, "--table", "models"]) == 0
    models = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["model"] for m in models] == [LLAMA, "google-deepmind/gemma-2b-it"]
    assert models[0]["rating"] > models[1]["rating"]
    assert models[0]["rating_low"] <= models[0]["rating"] <= models[0]["rating_high"]
    assert models[0]["votes"] == 2
    assert models[0]["judged"] == 2
    assert main(["export", "nope", "--db", str(db)]) == 2
    assert main(["export", run_id, "--db", str(tmp_path / "none.db")]) == 2


def test_the_live_line_says_when_judges_score() -> None:
    from replicate_home.cli._run_view import progress_counts
    from replicate_home.comparisons import RunProgress

    cells = RunProgress("r", 4, 1, 2, 1, 0, None)
    judges = RunProgress("r", 4, 3, 1, 0, 1, None, "judges")
    assert progress_counts(cells, 2.0, None).startswith("1/4 cells done")
    assert progress_counts(judges, 2.0, None).startswith("judging: 3/4 outputs judged")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_prompt_files_assert_key_or_column_checks_its_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    prompts = tmp_path / f"set{suffix}"
    if suffix == ".jsonl":
        prompts.write_text(
            '{"prompt": "calm", "assert": ["min-length:1", "max-length:3"]}\n'
            '{"prompt": "windy", "seed": 2}\n',
            encoding="utf-8",
        )
    else:
        prompts.write_text(
            'prompt,seed,assert\ncalm,,"[""min-length:1"", ""max-length:3""]"\nwindy,2,\n',
            encoding="utf-8",
        )
    argv = _compare(tmp_path / "runs.db", "--prompts", str(prompts), "-m", LLAMA, "--json")
    assert main([*argv, "--assert", "contains: "]) == 0
    calm, windy = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["outcome"]) for c in calm["checks"]] == [
        ("contains: ", "passed"),
        ("min-length:1", "passed"),
        ("max-length:3", "failed"),
    ]
    assert [c["name"] for c in windy["checks"]] == ["contains: "]
    assert "assert" not in calm["input"]  # never sent to the model
    assert windy["input"] == {"prompt": "windy", "seed": 2}


def test_summary_lines_are_bounded_and_keep_a_services_escapes_off_the_terminal() -> None:
    from replicate_home.cli._scoring import summary_lines
    from replicate_home.comparisons import CellRecord, summarize

    hostile = "\x1b]0;owned\x07 boom\n" + "x" * 500
    cell = CellRecord("r", 0, 0, 0, "m/a", "p", {}, "done", status="failed", error=hostile)
    numbers, errors = summary_lines(summarize([cell])[0])
    assert "latency p50 -" in numbers
    assert errors.startswith("1x ?]0;owned? boom x")
    assert "\x1b" not in errors
    assert len(errors) < 170
