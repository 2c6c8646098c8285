"""Scoring a run: assertions checked on every ended cell, judge models run on every
succeeded one, everything recorded in the results store.

:func:`score_run` is what :func:`~._runner.run_comparison` and
:func:`~._runner.resume_comparison` call once their cells have ended, and what scores
an older run afresh. Assertions are pure and cheap: every ended cell is checked again
(the results replace the earlier ones). Judges are predictions like the cells: they go
through the same client (its rate budget, its retries, its deadline) and follow the same
exactly-once rules (:mod:`._score_store`): a judgement already done is kept, one whose
create answered is followed by its id, one never sent (or ``interrupted``) is sent, and
one caught between its create and the record of the answer is looked for in the
account's predictions on the official API, or left "in doubt" on the homepage service
unless ``resend_in_doubt``.

The run's judges and serialisable assertions are stored in its settings (``judges``,
``assertions``, and ``row_assertions`` per prompt), so a resume scores with them again;
a Python callable can't be stored and is passed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from .._client import BaseClient
from .._fanout import Failed, Finished, Progress, failure_status
from .._models import Prediction
from .._replicate_api import ReplicateAPI
from .._service import PredictionCall
from .._uploads import FileGroup
from ._assertions import Assertion, AssertionResult, CellChecks, check_output
from ._file_store import ArchivedFile
from ._judge_images import first_kept_images, kept_path, same_judge_input
from ._judging import Judge, parse_score
from ._records import RunProgress
from ._score_store import JudgementRecord
from ._store import IN_DOUBT, CellRecord, ResultsStore, RunRecord

__all__ = ["judged_input", "run_assertions", "score_run", "scoring_settings"]

#: How far before a run's start the listing is searched for a judge's lost create.
CLOCK_SLACK = timedelta(minutes=5)

#: How long recording an interruption may take while the run is being cancelled.
RECORD_GRACE = 5.0

_JUDGE_IN_DOUBT = (
    "the judge's create may have been sent before the run stopped, and the homepage "
    "service can't list predictions to check: not sent again (resend_in_doubt=True)"
)


def scoring_settings(
    assertions: Sequence[Assertion],
    rows: Sequence[Sequence[Assertion]],
    judges: Sequence[Judge],
) -> dict[str, Any]:
    """The run settings that hold its scoring: the run's assertions (callables left
    out: they can't be stored), each prompt's own, and the judges."""
    settings: dict[str, Any] = {}
    stored = [assertion.to_json() for assertion in assertions if assertion.kind != "python"]
    if stored:
        settings["assertions"] = stored
    by_row = {
        str(index): [a.to_json() for a in row if a.kind != "python"]
        for index, row in enumerate(rows)
        if any(a.kind != "python" for a in row)
    }
    if by_row:
        settings["row_assertions"] = by_row
    if judges:
        settings["judges"] = [judge.to_json() for judge in judges]
    return settings


def run_assertions(
    run: RunRecord, extra: Iterable[Assertion] = ()
) -> tuple[tuple[Assertion, ...], dict[int, tuple[Assertion, ...]]]:
    """The run's assertions (stored, then ``extra``) and each prompt's own."""
    stored = tuple(Assertion.parse(spec) for spec in run.settings.get("assertions", ()))
    rows = {
        int(index): tuple(Assertion.parse(spec) for spec in specs)
        for index, specs in run.settings.get("row_assertions", {}).items()
    }
    return stored + tuple(extra), rows


def _checks(cell: CellRecord, assertions: Sequence[Assertion]) -> CellChecks:
    if cell.images and cell.output_text is None:
        return CellChecks(cell.cell, ())  # assertions check text: an image is not checked
    if cell.status != "succeeded":
        reason = f"the cell did not succeed ({cell.status})"
        return CellChecks(
            cell.cell, tuple(AssertionResult(a.name, "error", reason) for a in assertions)
        )
    return check_output(cell.cell, cell.output_text, assertions)


def judged_input(judge: Judge, cell: CellRecord, kept: Path | None = None) -> dict[str, Any]:
    """The judge's input for a cell: its prompt, output and (a vision judge) the image:
    the archive's copy at ``kept`` (sent as a file input) if given, else its URL."""
    image: str | Path | None = None
    if cell.images and judge.images:
        image = kept if kept is not None else cell.images[0]
    return judge.call_input(cell.prompt, cell.output_text, image)


async def score_run(
    client: BaseClient,
    store: ResultsStore,
    run_id: str,
    *,
    assertions: Sequence[str | Mapping[str, Any] | Assertion] = (),
    judges: Sequence[Judge] = (),
    limit: int | None = None,
    timeout: float | None = None,
    resend_in_doubt: bool = False,
    on_progress: Callable[[RunProgress], object] | None = None,
) -> None:
    """Check the run's ended cells and judge its succeeded ones (text outputs by text
    judges, images by vision judges: ``Judge(..., images=True)``).

    ``assertions`` and ``judges`` are added to the ones the run holds (stored with it,
    callables aside); ``limit`` and ``timeout`` apply to the judge predictions as to
    cells. A judge that fails or answers what :func:`~._judging.parse_score` can't read
    leaves that cell *unscored*, its answer or error recorded; never an exception.
    ``on_progress`` sees the judge predictions' progress (``stage="judges"``)."""
    run = await store.run(run_id)
    extra = tuple(Assertion.parse(spec) for spec in assertions)
    settings = dict(run.settings)
    stored = list(settings.get("assertions", ()))
    for assertion in extra:
        if assertion.kind != "python" and assertion.to_json() not in stored:
            stored.append(assertion.to_json())
    every_judge = [Judge.from_json(data) for data in settings.get("judges", ())]
    every_judge += [judge for judge in judges if judge not in every_judge]
    changed = False
    if stored != list(settings.get("assertions", ())):
        settings["assertions"], changed = stored, True
    if len(every_judge) != len(settings.get("judges", ())):
        settings["judges"], changed = [judge.to_json() for judge in every_judge], True
    if changed:
        await store.update_settings(run_id, settings)
        run = replace(run, settings=settings)
    run_level, rows = run_assertions(run, (a for a in extra if a.kind == "python"))
    cells = await store.cells(run_id)
    checked = [
        _checks(cell, run_level + rows.get(cell.prompt_index, ()))
        for cell in cells
        if cell.state == "done"
    ]
    await store.record_checks(run_id, [checks for checks in checked if checks.results])
    if every_judge:
        await _judge(
            client, store, run, cells, every_judge, limit, timeout, resend_in_doubt, on_progress
        )


async def _judge(
    client: BaseClient,
    store: ResultsStore,
    run: RunRecord,
    cells: Sequence[CellRecord],
    judges: Sequence[Judge],
    limit: int | None,
    timeout: float | None,
    resend_in_doubt: bool,
    on_progress: Callable[[RunProgress], object] | None,
) -> None:
    succeeded = {cell.cell: cell for cell in cells if cell.status == "succeeded"}
    for index, judge in enumerate(judges):
        # A judge sees the outputs of its kind: text, or (a vision judge) images.
        seen = [
            (number, cell.attempt)
            for number, cell in sorted(succeeded.items())
            if bool(cell.images) == judge.images
        ]
        await store.create_judgements(run.id, index, judge.model, seen)
    records = [
        record
        for record in await store.judgements(run.id)
        if record.cell in succeeded
        and (record.state != "done" or (resend_in_doubt and record.status == IN_DOUBT))
    ]
    lookup = isinstance(client, ReplicateAPI)
    # Output URLs expire (an hour on the real service): a vision judge on the official
    # API is sent the archive's copy of the image, as a file input, where it is kept.
    imaged = [record.cell for record in records if judges[record.judge].images]
    kept = await first_kept_images(store, run.id, imaged) if lookup and imaged else {}
    lost = [
        record for record in records if record.state == "sending" and record.prediction_id is None
    ]
    found = (
        await _find_lost(client, store, run, judges, succeeded, lost, kept)
        if lost and lookup
        else {}
    )
    group = FileGroup()  # an image judged by several judges is uploaded once
    work: list[tuple[JudgementRecord, PredictionCall]] = []
    for record in records:
        judge = judges[record.judge]
        call = _judge_call(client, judge, succeeded[record.cell], kept.get(record.cell), group)
        key = (record.cell, record.judge)
        if record.state == "running" and record.prediction_id is not None:
            call = replace(call, existing=record.prediction_id)
        elif key in found:
            prediction_id = found[key].id
            await store.record_judge_sent(run.id, record.cell, record.judge, prediction_id)
            record = replace(record, state="running", prediction_id=prediction_id)
            call = replace(call, existing=prediction_id)
        elif record.state == "sending" and not lookup and not resend_in_doubt:
            await store.record_judge_end(
                run.id,
                record.cell,
                record.judge,
                status=IN_DOUBT,
                error=_JUDGE_IN_DOUBT,
                reason="the judge's prediction is in doubt",
            )
            continue
        work.append((record, call))
    if work:
        await _drive_judges(client, store, run, work, judges, limit, timeout, on_progress)


def _judge_call(
    client: BaseClient,
    judge: Judge,
    cell: CellRecord,
    kept: ArchivedFile | None,
    group: FileGroup,
) -> PredictionCall:
    """The judge's call for ``cell``; the image from the archive (``kept``) as a file
    input, or its URL when the archive lacks it or it can't go as the client sends
    files (a ``data:`` URI too large for a create)."""
    path = kept_path(kept)
    if path is not None:
        values = judged_input(judge, cell, path)
        prompt = values.pop("prompt")
        call = client._prepare_call(judge.model, prompt, values)
        try:
            return client._with_files(call, None, group)
        except ValueError:  # FileTooLarge for a data: URI: the URL it is
            pass
    values = judged_input(judge, cell)
    prompt = values.pop("prompt")
    return client._prepare_call(judge.model, prompt, values or None)


async def _find_lost(
    client: BaseClient,
    store: ResultsStore,
    run: RunRecord,
    judges: Sequence[Judge],
    cells: Mapping[int, CellRecord],
    lost: Sequence[JudgementRecord],
    kept: Mapping[int, ArchivedFile],
) -> dict[tuple[int, int], Prediction]:
    """Judge predictions the service created whose answer was never recorded: matched
    by model and input in the account's listing (no webhook, no id the store holds),
    each taken once."""
    if not isinstance(client, ReplicateAPI):
        return {}
    listed = [
        prediction
        async for prediction in client.list(created_after=run.created_at - CLOCK_SLACK)
        # A judge's create carries no webhook; one that does is some cell's.
        if prediction.webhook is None
    ]
    # Ids any judgement of the store recorded, or any cell claimed, are taken: another
    # run judging the same output with the same judge sends the very same input.
    ids = [prediction.id for prediction in listed]
    known = await store.judged(ids) | await store.claimed(ids)
    candidates = [prediction for prediction in listed if prediction.id not in known]
    candidates.reverse()  # the listing is newest first
    found: dict[tuple[int, int], Prediction] = {}
    for record in lost:
        judge = judges[record.judge]
        cell = cells[record.cell]
        wanted = judged_input(judge, cell)
        # The image may have gone as the archive's copy (a data: URI or a Files API
        # URL in the listing): compared by its bytes' hash, the rest of the input exactly.
        image = judge.image_input if judge.images and cell.images else None
        url = cell.images[0] if image is not None else None
        for prediction in candidates:
            same_model = prediction.model.split(":", 1)[0] == judge.model.split(":", 1)[0]
            if (
                same_model
                and prediction.deployment is None
                and await same_judge_input(
                    client, prediction.input, wanted, image, url, kept.get(record.cell)
                )
            ):
                found[(record.cell, record.judge)] = prediction
                candidates.remove(prediction)
                break
    return found


async def _drive_judges(
    client: BaseClient,
    store: ResultsStore,
    run: RunRecord,
    work: Sequence[tuple[JudgementRecord, PredictionCall]],
    judges: Sequence[Judge],
    limit: int | None,
    timeout: float | None,
    on_progress: Callable[[RunProgress], object] | None,
) -> None:
    created = [False] * len(work)
    ended = [False] * len(work)
    failed = 0

    def report() -> None:
        if on_progress is not None:
            total, done = len(work), sum(ended)
            running = sum(c and not e for c, e in zip(created, ended, strict=True))
            progress = RunProgress(
                run.id, total, done, running, total - done - running, failed, None, "judges"
            )
            on_progress(progress)

    report()
    calls = [
        replace(
            call,
            before_create=partial(store.record_judge_sending, run.id, record.cell, record.judge),
        )
        for record, call in work
    ]
    try:
        async with client._fan_out_calls(calls, limit=limit, timeout=timeout) as events:
            async for event in events:
                record = work[event.index][0]
                if isinstance(event, Progress):
                    if not created[event.index]:
                        created[event.index] = True
                        if record.prediction_id != event.prediction.id:
                            await store.record_judge_sent(
                                run.id, record.cell, record.judge, event.prediction.id
                            )
                        report()
                elif isinstance(event, Finished):
                    answer = event.prediction.text
                    verdict = parse_score(answer or "", judges[record.judge].scale)
                    await store.record_judge_end(
                        run.id,
                        record.cell,
                        record.judge,
                        status=event.prediction.status,
                        prediction_id=event.prediction.id,
                        answer=answer,
                        score=verdict.score,
                        reason=verdict.reason or None,
                    )
                    ended[event.index] = True
                    report()
                elif isinstance(event, Failed):
                    prediction_id = getattr(event.error, "prediction_id", None)
                    await store.record_judge_end(
                        run.id,
                        record.cell,
                        record.judge,
                        status=failure_status(event.error),
                        prediction_id=prediction_id if isinstance(prediction_id, str) else None,
                        error=str(event.error),
                        reason="the judge's prediction did not succeed",
                    )
                    ended[event.index] = True
                    failed += 1
                    report()
    except BaseException:
        left = [
            (work[i][0].cell, work[i][0].judge)
            for i in range(len(work))
            if created[i] and not ended[i]
        ]
        if left:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + RECORD_GRACE):
                await store.record_judges_interrupted(run.id, left)
        raise
