"""Scoring a comparison on the emulator: assertions, judge models (ones that answer
garbage and ones that fail among them), exactly-once judge predictions on resume, and
people's votes and thumbs in the results database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from replicate_home import ReplicateAPI, ReplicateHome
from replicate_home.comparisons import (
    Judge,
    ResultsStore,
    RunProgress,
    Vote,
    leaderboard,
    resume_comparison,
    run_comparison,
    summarize,
)
from replicate_home.comparisons._schema import MIGRATIONS, SCHEMA_VERSION
from replicate_home.comparisons._scoring import judged_input
from replicate_home.emulator import Emulator, Scenario, judge_score

LLAMA = "meta/meta-llama-3-8b-instruct"
GEMMA = "google-deepmind/gemma-2b-it"
FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_scoring"
RUBRIC = "Is it a calm description of nature?"


def ends_with_e(output: str) -> tuple[bool, str]:
    return output.endswith("e."), "does not end with 'e.'"


@pytest.mark.anyio
async def test_assertions_per_run_and_per_row_are_checked_and_stored(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.1))
    emulator.script("broken", Scenario(duration=0.1, outcome="failed"), model=LLAMA)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(
                client,
                store,
                ["calm", {"prompt": "broken", "assert": ["json", "max-length:5"]}],
                [LLAMA, FLUX],
                assertions=["min-length:10", ends_with_e],
            )
            cells = await store.cells(run.id)
            checks = await store.checks(run.id)
            stored = (await store.run(run.id)).settings
    assert stored["assertions"] == ["min-length:10"]  # the callable can't be stored
    assert stored["row_assertions"] == {"1": ["json", "max-length:5"]}
    by_cell: dict[int, list[tuple[str, str]]] = {}
    for check in checks:
        by_cell.setdefault(check.cell, []).append((check.name, check.outcome))
    text = cells[0].output_text
    assert text
    assert by_cell[0] == [
        ("min-length:10", "passed"),
        ("python:ends_with_e", "passed" if text.endswith("e.") else "failed"),
    ]
    assert 1 not in by_cell  # an image: assertions check text
    assert [name for name, _ in by_cell[2]] == [
        "min-length:10",
        "python:ends_with_e",
        "json",
        "max-length:5",
    ]
    assert {outcome for _, outcome in by_cell[2]} == {"error"}  # the cell failed
    failed = [c for c in checks if c.cell == 2]
    assert failed[0].reason == "the cell did not succeed (failed)"
    summary = summarize(
        cells, checks={c: all(o == "passed" for _, o in v) for c, v in by_cell.items()}
    )
    assert summary[0].checked == 2


@pytest.mark.anyio
async def test_a_judge_that_answers_garbage_leaves_outputs_unscored_with_its_answer(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.1))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            # An ordinary text model as judge: it writes words, never a SCORE line.
            seen: list[RunProgress] = []
            run = await run_comparison(
                client,
                store,
                ["calm", "windy"],
                [GEMMA],
                judges=[Judge(LLAMA, RUBRIC)],
                on_progress=seen.append,
            )
            judgements = await store.judgements(run.id)
            cells = await store.cells(run.id)
    assert emulator.stats().creates == 4  # two cells, two judgements
    assert [(j.cell, j.judge, j.model, j.state, j.status) for j in judgements] == [
        (0, 0, LLAMA, "done", "succeeded"),
        (1, 0, LLAMA, "done", "succeeded"),
    ]
    for judgement in judgements:
        assert judgement.score is None
        assert judgement.answer  # the raw answer is kept
        assert judgement.reason == "no SCORE line in the answer"
        assert judgement.prediction_id
    (summary,) = summarize(cells, scores=judgements)
    assert (summary.judged, summary.unscored, summary.score_mean) == (2, 2, None)
    # The cells' progress, then the judges': the stage says which.
    stages = [progress.stage for progress in seen]
    assert stages == sorted(stages)  # "cells" < "judges"
    cells_end = [p for p in seen if p.stage == "cells"][-1]
    judges = [p for p in seen if p.stage == "judges"]
    assert (cells_end.done, cells_end.total) == (2, 2)
    assert (judges[0].done, judges[0].waiting, judges[-1].done, judges[-1].total) == (0, 2, 2, 2)


@pytest.mark.anyio
async def test_a_judge_that_fails_leaves_outputs_unscored_with_its_error(tmp_path: Path) -> None:
    # Every prediction fails but the cells' own prompts: the judge's fail.
    emulator = Emulator(Scenario(duration=0.1, outcome="failed", error="judge fell over"))
    emulator.script("calm", Scenario(duration=0.1))
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(
                client, store, ["calm"], [GEMMA, LLAMA], judges=[Judge(LLAMA, RUBRIC)]
            )
            judgements = await store.judgements(run.id)
    assert [j.status for j in judgements] == ["failed", "failed"]
    assert all(j.score is None and "judge fell over" in (j.error or "") for j in judgements)
    assert all(j.reason == "the judge's prediction did not succeed" for j in judgements)


@pytest.mark.anyio
async def test_resume_follows_judges_by_id_finds_lost_creates_and_sends_the_rest(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.3))
    judge = Judge(LLAMA, RUBRIC)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(client, store, ["a", "b", "c", "d"], [GEMMA])
            assert emulator.stats().creates == 4
            cells = await store.cells(run.id)
            # A judging that died: judgement 0 ended, 1's create answered and was
            # recorded, 2's create answered but was never recorded, 3 was never sent.
            await store.update_settings(run.id, {**run.settings, "judges": [judge.to_json()]})
            await store.create_judgements(run.id, 0, LLAMA, [(n, 1) for n in range(4)])
            await store.record_judge_end(
                run.id, 0, 0, status="succeeded", answer="SCORE: 4", score=4
            )
            recorded = await client.create(LLAMA, input=judged_input(judge, cells[1]))
            await store.record_judge_sending(run.id, 1, 0)
            await store.record_judge_sent(run.id, 1, 0, recorded.id)
            lost = await client.create(LLAMA, input=judged_input(judge, cells[2]))
            await store.record_judge_sending(run.id, 2, 0)
            assert emulator.stats().creates == 6
            await resume_comparison(client, store, run.id)
            judgements = await store.judgements(run.id)
    assert emulator.stats().creates == 7  # only the judgement never sent
    assert [j.state for j in judgements] == ["done"] * 4
    assert judgements[0].score == 4
    assert judgements[1].prediction_id == recorded.id
    assert judgements[2].prediction_id == lost.id
    assert all(j.answer for j in judgements)


@pytest.mark.anyio
async def test_home_leaves_a_lost_judge_create_in_doubt_unless_asked_to_resend(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateHome(emulator.base_url) as client:
            run = await run_comparison(client, store, ["a"], ["gemma-2b"])
            judge = Judge("gemma-2b", RUBRIC)
            await store.update_settings(run.id, {**run.settings, "judges": [judge.to_json()]})
            await store.create_judgements(run.id, 0, judge.model, [(0, 1)])
            await store.record_judge_sending(run.id, 0, 0)
            await resume_comparison(client, store, run.id)
            (doubt,) = await store.judgements(run.id)
            assert (doubt.state, doubt.status, doubt.score) == ("done", "in doubt", None)
            await resume_comparison(client, store, run.id, resend_in_doubt=True)
            (sent,) = await store.judgements(run.id)
    assert sent.status == "succeeded"
    assert sent.answer


@pytest.mark.anyio
async def test_votes_and_thumbs_are_stored_checked_and_ranked(tmp_path: Path) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        run = await store.create_run(
            service="api",
            models=["m/a", "m/b"],
            cells=[
                (p, m, f"m/{'ab'[m]}", f"p{p}", {"prompt": f"p{p}"})
                for p in range(2)
                for m in range(2)
            ],
            settings={},
        )
        first = await store.record_vote(run.id, 0, 1, "a", " ann ")
        await store.record_vote(run.id, 3, 2, "b", "bob")
        await store.record_vote(run.id, 0, 1, "tie", "bob")
        with pytest.raises(ValueError, match="same prompt"):
            await store.record_vote(run.id, 0, 3, "a", "ann")
        with pytest.raises(ValueError, match="different models"):
            await store.record_vote(run.id, 1, 1, "a", "ann")
        with pytest.raises(ValueError, match="'a', 'b' or 'tie'"):
            await store.record_vote(run.id, 0, 1, "win", "ann")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="voter"):
            await store.record_vote(run.id, 0, 1, "a", " ")
        with pytest.raises(KeyError):
            await store.record_vote(run.id, 0, 9, "a", "ann")
        votes = await store.votes(run.id)
        await store.record_thumb(run.id, 0, "ann", 1)
        await store.record_thumb(run.id, 0, "ann", -1)  # changed her mind
        await store.record_thumb(run.id, 1, "bob", 1)
        await store.record_thumb(run.id, 1, "bob", 0)  # taken back
        await store.record_thumb(run.id, 2, "bob", 1)
        with pytest.raises(ValueError, match="thumb"):
            await store.record_thumb(run.id, 2, "bob", 2)
        thumbs = await store.thumbs(run.id)
    assert first.voter == "ann"
    assert first.prompt_index == 0
    assert [(v.model_a, v.model_b, v.result, v.voter) for v in votes] == [
        ("m/a", "m/b", "a", "ann"),
        ("m/b", "m/a", "b", "bob"),
        ("m/a", "m/b", "tie", "bob"),
    ]
    assert [v.vote for v in votes][1] == Vote("m/b", "m/a", "b")
    board = leaderboard([v.vote for v in votes], rounds=20)
    assert board.ratings[0].model == "m/a"
    assert (board.ratings[0].wins, board.ratings[0].ties) == (2, 1)
    assert [(t.cell, t.voter, t.value) for t in thumbs] == [(0, "ann", -1), (2, "bob", 1)]


@pytest.mark.anyio
async def test_the_emulators_judges_score_text_and_images_by_what_they_are_given(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.1), file_output="url")
    judges = [
        Judge("replicate-home/text-judge", RUBRIC),
        Judge("replicate-home/vision-judge", "Is it a clear picture?", images=True),
    ]
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(
                client, store, ["calm", "windy", "dark"], [LLAMA, FLUX], judges=judges
            )
            cells = {cell.cell: cell for cell in await store.cells(run.id)}
            judgements = await store.judgements(run.id)
            images = {
                number: await (await client.get(cell.prediction_id or "")).files[0].read()
                for number, cell in cells.items()
                if cell.images
            }
    # Text outputs by the text judge, images by the vision judge.
    assert [(j.cell, j.judge) for j in judgements] == [(n, n % 2) for n in range(6)]
    for judgement in judgements:
        cell = cells[judgement.cell]
        assert judgement.status == "succeeded"
        if judgement.judge == 0:
            assert judgement.score == judge_score(cell.output_text or "")
        else:
            assert judgement.score == judge_score(images[judgement.cell])
        assert f"SCORE: {judgement.score:g}" in (judgement.answer or "")
    (text, image) = summarize(cells.values(), scores=judgements)
    scores = [judge_score(cells[n].output_text or "") for n in (0, 2, 4)]
    assert text.score_mean == pytest.approx(sum(scores) / 3)
    assert (text.judged, text.unscored, image.judged, image.unscored) == (3, 0, 3, 0)


@pytest.mark.anyio
async def test_an_older_database_gains_the_score_tables_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for step in MIGRATIONS[:2]:
            for statement in step:
                db.execute(statement)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO runs (id, created_at, service, models, settings) VALUES"
            " ('old', '2026-11-25T23:15:00+00:00', 'api', '[\"m/a\", \"m/b\"]', '{}')"
        )
        db.executemany(
            "INSERT INTO cells (run_id, cell, prompt_index, model_index, model, input, state,"
            " status, output_text) VALUES ('old', ?, 0, ?, ?, '{}', 'done', 'succeeded', 'x')",
            [(0, 0, "m/a"), (1, 1, "m/b")],
        )
    db.close()
    async with ResultsStore.open(path) as store:
        assert [cell.output_text for cell in await store.cells("old")] == ["x", "x"]
        await store.record_vote("old", 0, 1, "b", "ann")
        assert [v.vote for v in await store.votes("old")] == [Vote("m/a", "m/b", "b")]
        assert await store.judgements("old") == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()
    assert SCHEMA_VERSION >= 3  # the score tables are step 3; later steps add others


@pytest.mark.anyio
async def test_a_retried_cell_is_judged_afresh(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.1))
    emulator.script("flaky", Scenario(duration=0.1, outcome="failed"), model=LLAMA)
    judge = Judge("replicate-home/text-judge", RUBRIC)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            run = await run_comparison(client, store, ["calm", "flaky"], [LLAMA], judges=[judge])
            assert [j.cell for j in await store.judgements(run.id)] == [0]  # 1 failed
            assert emulator.stats().creates == 3
            emulator.script("flaky", Scenario(duration=0.1), model=LLAMA)
            await resume_comparison(client, store, run.id, retry=["failed"])
            judgements = await store.judgements(run.id)
            cells = await store.cells(run.id)
    assert emulator.stats().creates == 5  # the cell again, and its judgement
    assert [(j.cell, j.attempt) for j in judgements] == [(0, 1), (1, 2)]
    assert judgements[1].score == judge_score(cells[1].output_text or "")


@pytest.mark.anyio
async def test_a_lost_judge_create_is_never_taken_from_another_runs_judgement(
    tmp_path: Path,
) -> None:
    # Two runs of one prompt on one model: the same output, so the same judge input.
    emulator = Emulator(Scenario(duration=0.1))
    judge = Judge("replicate-home/text-judge", RUBRIC)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            first = await run_comparison(client, store, ["calm"], [LLAMA], judges=[judge])
            second = await run_comparison(client, store, ["calm"], [LLAMA])
            (taken,) = await store.judgements(first.id)
            # The second run's judgement was marked sending, and its create never left.
            await store.update_settings(second.id, {**second.settings, "judges": [judge.to_json()]})
            await store.create_judgements(second.id, 0, judge.model, [(0, 1)])
            await store.record_judge_sending(second.id, 0, 0)
            creates = emulator.stats().creates
            await resume_comparison(client, store, second.id)
            (own,) = await store.judgements(second.id)
    assert emulator.stats().creates == creates + 1  # sent: the listed one was the first's
    assert own.prediction_id != taken.prediction_id
    assert own.score == taken.score


@pytest.mark.anyio
async def test_leaving_while_judges_run_marks_them_interrupted_and_resume_sends_them(
    tmp_path: Path,
) -> None:
    # Unscripted prompts (the judges') run for a minute; the cells' end at once.
    emulator = Emulator(Scenario(duration=60))
    for prompt in ("calm", "windy"):
        emulator.script(prompt, Scenario(duration=0.1), model=LLAMA)
    judge = Judge("replicate-home/text-judge", RUBRIC)
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI(TOKEN, base_url=emulator.base_url) as client:
            names: list[str] = []

            def leave_once_judges_run(progress: RunProgress) -> None:
                names.append(progress.run_id)
                if progress.stage == "judges" and progress.running == 2:
                    scope.cancel()

            with anyio.CancelScope() as scope:
                await run_comparison(
                    client,
                    store,
                    ["calm", "windy"],
                    [LLAMA],
                    judges=[judge],
                    on_progress=leave_once_judges_run,
                )
            left = await store.judgements(names[0])
            assert [j.state for j in left] == ["interrupted"] * 2
            # Both cancelled on the service (the client may still be sending the last).
            await emulator.wait_for(lambda e: e.stats().cancels == 2)
            for cell in await store.cells(names[0]):  # the judges end at once from now on
                prompt = judged_input(judge, cell)["prompt"]
                emulator.script(prompt, Scenario(duration=0.1), model=judge.model)
            await resume_comparison(client, store, names[0])
            judgements = await store.judgements(names[0])
    assert [j.state for j in judgements] == ["done"] * 2
    assert all(j.score is not None for j in judgements)
    assert emulator.stats().creates == 6  # two cells, two judges cancelled, two sent again
