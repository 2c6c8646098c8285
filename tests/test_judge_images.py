"""A vision judge is given the image from the run's output archive (a file input,
uploaded or inlined as the client's ``file_encoding`` says), so it judges the same bytes
after the service's output URLs are gone; the URL only when the archive lacks the file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from replicate_home import ReplicateAPI
from replicate_home.comparisons import Judge, ResultsStore, resume_comparison, run_comparison
from replicate_home.comparisons._scoring import judged_input
from replicate_home.emulator import Emulator, Scenario, judge_score

FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_judge_images"
VISION = Judge("replicate-home/vision-judge", "Is it a clear picture?", images=True)

pytestmark = pytest.mark.anyio


def _emulator() -> Emulator:
    return Emulator(Scenario(duration=0.05), file_output="url")


@pytest.mark.parametrize("encoding", ["upload", "data"])
async def test_a_vision_judge_scores_the_archived_image_as_the_url_would(
    tmp_path: Path, encoding: str
) -> None:
    async with _emulator().serve() as emulator:
        async with (
            ResultsStore.open(tmp_path / "runs.db") as store,
            ReplicateAPI(TOKEN, base_url=emulator.base_url, file_encoding=encoding) as client,  # type: ignore[arg-type]
        ):
            run = await run_comparison(client, store, ["a", "b"], [FLUX], judges=[VISION])
            files = await store.files(run.id)
            judgements = await store.judgements(run.id)
            sent = [(await client.get(j.prediction_id or "")).input for j in judgements]
    assert [file.state for file in files] == ["kept", "kept"]
    for judgement, file, given in zip(judgements, files, sent, strict=True):
        assert file.path is not None
        assert judgement.score == judge_score(file.path.read_bytes())
        # The archive's copy went, not the output URL.
        assert given["image"] != file.url
        if encoding == "data":
            assert given["image"].startswith("data:")
        else:
            assert "/v1/files/" in given["image"]


async def test_without_the_archive_a_vision_judge_gets_the_url(tmp_path: Path) -> None:
    async with _emulator().serve() as emulator:
        async with (
            ResultsStore.open(tmp_path / "runs.db") as store,
            ReplicateAPI(TOKEN, base_url=emulator.base_url) as client,
        ):
            run = await run_comparison(
                client, store, ["a"], [FLUX], judges=[VISION], keep_files=False
            )
            (cell,) = await store.cells(run.id)
            (judgement,) = await store.judgements(run.id)
            given = (await client.get(judgement.prediction_id or "")).input
            image = await (await client.get(cell.prediction_id or "")).files[0].read()
    assert given["image"] == cell.images[0]
    assert judgement.score == judge_score(image)


@pytest.mark.parametrize("encoding", ["upload", "data"])
async def test_after_the_service_lost_its_outputs_the_judge_scores_the_archive(
    tmp_path: Path, encoding: str
) -> None:
    # The run's cells end while one emulator serves; it stops (its output URLs die
    # with it) and a fresh one on the same address serves the resume, which judges.
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with _emulator().serve() as first:
            base_url = first.base_url
            async with ReplicateAPI(TOKEN, base_url=base_url) as client:
                run = await run_comparison(client, store, ["a", "b"], [FLUX])
        files = await store.files(run.id)
        port = urlsplit(base_url).port or 0
        async with _emulator().serve(port=port) as second, httpx.AsyncClient() as http:
            assert second.base_url == base_url
            gone = await http.get(files[0].url)
            async with ReplicateAPI(
                TOKEN,
                base_url=second.base_url,
                file_encoding=encoding,  # type: ignore[arg-type]
            ) as client:
                await resume_comparison(client, store, run.id, judges=[VISION])
                judgements = await store.judgements(run.id)
    assert gone.status_code == 404
    assert [j.status for j in judgements] == ["succeeded", "succeeded"]
    for judgement, file in zip(judgements, files, strict=True):
        assert file.path is not None
        assert judgement.score == judge_score(file.path.read_bytes())


@pytest.mark.parametrize("encoding", ["upload", "data"])
async def test_a_lost_judge_create_that_sent_the_archive_is_found_by_its_bytes(
    tmp_path: Path, encoding: str
) -> None:
    async with _emulator().serve() as emulator:
        async with (
            ResultsStore.open(tmp_path / "runs.db") as store,
            ReplicateAPI(TOKEN, base_url=emulator.base_url, file_encoding=encoding) as client,  # type: ignore[arg-type]
        ):
            run = await run_comparison(client, store, ["a", "b"], [FLUX])
            cells = await store.cells(run.id)
            files = await store.files(run.id)
            await store.update_settings(run.id, {**run.settings, "judges": [VISION.to_json()]})
            await store.create_judgements(run.id, 0, VISION.model, [(0, 1), (1, 1)])
            # Cell 1's judge create answered but the answer was never recorded; it sent
            # the archive's copy. Cell 0's judgement was never sent.
            lost = await client.create(
                VISION.model, input=judged_input(VISION, cells[1], files[1].path)
            )
            await store.record_judge_sending(run.id, 1, 0)
            creates = emulator.stats().creates
            await resume_comparison(client, store, run.id)
            judgements = await store.judgements(run.id)
    assert emulator.stats().creates == creates + 1  # only cell 0's judge
    assert judgements[1].prediction_id == lost.id
    assert judgements[0].prediction_id != lost.id
    for judgement, file in zip(judgements, files, strict=True):
        assert file.path is not None
        assert judgement.score == judge_score(file.path.read_bytes())
