"""The viewer over loopback sockets: pages and their security headers, windows of a
large run, live events from another connection's commits and from text streamed in
this process, cross-site refusals, and the ``view`` command's checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from replicate_home._bounded import BodyReader, EventReader
from replicate_home.cli import main
from replicate_home.comparisons import AssertionResult, CellChecks, ResultsStore
from replicate_home.viewer import CSP, Viewer

MODELS = ("meta/meta-llama-3-8b-instruct", "black-forest-labs/flux-schnell", "acme/third")


async def make_run(store: ResultsStore, prompts: int, name: str = "big") -> str:
    cells = [
        (p, m, model, f"prompt {p}", {"prompt": f"prompt {p}"})
        for p in range(prompts)
        for m, model in enumerate(MODELS)
    ]
    run = await store.create_run(
        service="api", models=MODELS, cells=cells, settings={}, run_id=name
    )
    return run.id


@asynccontextmanager
async def served(database: Path) -> AsyncIterator[tuple[Viewer, httpx.AsyncClient]]:
    viewer = Viewer(database)
    async with viewer.serve() as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield viewer, http


@pytest.mark.anyio
async def test_pages_carry_the_policy_and_refuse_other_hosts(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await make_run(store, 3)
    async with served(database) as (viewer, http):
        for path in ("/", f"/runs/{run_id}/grid", "/static/viewer.js", "/api/runs"):
            answer = await http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-security-policy"] == CSP
            assert answer.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self';" in CSP
        assert "unsafe-inline" not in CSP
        page = (await http.get("/")).text
        assert run_id in page
        assert viewer.token in page
        assert "<script>" not in page.replace('<script src="/static/viewer.js" defer></script>', "")
        # A DNS-rebinding page reaches the loopback port under its own name: refused.
        foreign = await http.get("/", headers={"host": "attacker.example"})
        assert foreign.status_code == 421
        assert (await http.get("/runs/nope/grid")).status_code == 404


@pytest.mark.anyio
async def test_a_window_of_a_large_run_and_its_filters(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await make_run(store, 400)
        await store.record_end(run_id, 7, status="failed", error="boom")  # prompt 2, model 1
        await store.record_end(run_id, 601, status="succeeded", output_text="ok")  # prompt 200
    async with served(database) as (_, http):
        window = (await http.get(f"/api/runs/{run_id}/window?offset=10&limit=5")).json()
        assert window["rows"] == [10, 11, 12, 13, 14]
        assert window["matching"] == 400
        assert len(window["cells"]) == 15
        side = (await http.get(f"/api/runs/{run_id}/window?limit=2&models=0,2")).json()
        assert {cell["model_index"] for cell in side["cells"]} == {0, 2}
        assert len(side["cells"]) == 4
        failed = (await http.get(f"/api/runs/{run_id}/window?status=failed")).json()
        assert failed["rows"] == [2]
        assert failed["matching"] == 1
        assert [cell["error"] for cell in failed["cells"] if cell["cell"] == 7] == ["boom"]
        done = (await http.get(f"/api/runs/{run_id}/window?status=succeeded&models=1")).json()
        assert done["rows"] == [200]
        assert [cell["text"] for cell in done["cells"]] == ["ok"]
        assert (await http.get(f"/api/runs/{run_id}/window?models=9")).status_code == 400
        assert (await http.get(f"/api/runs/{run_id}/window?offset=x")).status_code == 400
        runs = (await http.get("/api/runs")).json()
        assert runs[0]["cells"] == 1200
        assert runs[0]["done"] == 2
        assert runs[0]["failed"] == 1


@asynccontextmanager
async def event_stream(http: httpx.AsyncClient, url: str) -> AsyncIterator[EventReader]:
    """A page's event stream, read with the library's bounded reader (closed in order)."""
    async with http.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = BodyReader(response, 10_000_000, "the events")
        try:
            yield EventReader(body)
        finally:
            await body.aclose()


async def next_event(events: EventReader) -> dict[str, Any]:
    with anyio.fail_after(10):
        event = await events.next()
    assert event is not None
    data: dict[str, Any] = json.loads(event.data)
    return data


@pytest.mark.anyio
async def test_events_follow_commits_of_another_connection(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await make_run(store, 50)
        async with served(database) as (_, http):
            url = f"/api/runs/{run_id}/events?limit=2"
            async with event_stream(http, url) as events:
                snapshot = await next_event(events)
                assert snapshot["type"] == "snapshot"
                assert [cell["cell"] for cell in snapshot["cells"]] == list(range(6))
                # Outside the window: nothing is sent for it.
                await store.record_end(run_id, 100, status="succeeded", output_text="far")
                await store.record_sent(run_id, 4, "p4")
                changed = await next_event(events)
                assert changed["type"] == "cells"
                assert [cell["cell"] for cell in changed["cells"]] == [4]
                assert changed["cells"][0]["state"] == "running"
                hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
                await store.record_end(run_id, 4, status="succeeded", output_text=hostile)
                ended = await next_event(events)
                assert ended["cells"][0]["text"] == hostile  # JSON text; the page sets it as text
                assert ended["progress"]["done"] == 2


@pytest.mark.anyio
async def test_text_streamed_in_this_process_reaches_the_page(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await make_run(store, 2)
        async with served(database) as (viewer, http):
            async with event_stream(http, f"/api/runs/{run_id}/events") as events:
                await next_event(events)
                viewer.hub.text(run_id, 0, "Hel")
                viewer.hub.text(run_id, 0, "lo")
                first = await next_event(events)
                assert first == {"type": "text", "cell": 0, "at": 0, "text": "Hello"}
                viewer.hub.text(run_id, 0, ", world")
                second = await next_event(events)
                assert second == {"type": "text", "cell": 0, "at": 5, "text": ", world"}
            # A page that connects now gets the text so far in its snapshot.
            window = (await http.get(f"/api/runs/{run_id}/window")).json()
            assert window["cells"][0]["text"] == "Hello, world"
            await store.record_end(run_id, 0, status="succeeded", output_text="Hello, world!")
            async with event_stream(http, f"/api/runs/{run_id}/events") as events:
                snapshot = await next_event(events)
                assert snapshot["cells"][0]["text"] == "Hello, world!"


@pytest.mark.anyio
async def test_state_changes_need_the_token_and_the_same_origin(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await make_run(store, 2)
    async with served(database) as (viewer, http):
        url = f"/api/runs/{run_id}/thumbs"
        body = {"cell": 0, "value": 1, "voter": "ann"}
        token = {"x-viewer-token": viewer.token}
        refused = [
            await http.post(url, json=body),
            await http.post(url, json=body, headers={"x-viewer-token": "guess"}),
            await http.post(url, json=body, headers={**token, "sec-fetch-site": "cross-site"}),
            await http.post(url, json=body, headers={**token, "origin": "http://evil.example"}),
        ]
        assert [answer.status_code for answer in refused] == [403] * 4
        assert all(answer.headers["content-security-policy"] == CSP for answer in refused)


def test_view_checks_its_database_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["view", "--db", str(tmp_path / "missing.db"), "--no-browser"]) == 2
    assert "no results database" in capsys.readouterr().err
    database = tmp_path / "runs.db"

    async def record() -> None:
        async with ResultsStore.open(database) as store:
            await make_run(store, 1, name="known")

    anyio.run(record)
    assert main(["view", "nope", "--db", str(database), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err
    assert not (tmp_path / "missing.db").exists()


async def finished_run(store: ResultsStore, prompts: int, name: str = "done") -> str:
    run_id = await make_run(store, prompts, name=name)
    for cell in range(prompts * len(MODELS)):
        await store.record_end(run_id, cell, status="succeeded", output_text=f"output {cell}")
    return run_id


@pytest.mark.anyio
async def test_blind_votes_thumbs_and_the_leaderboard(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        run_id = await finished_run(store, 4)
        # A judge scored the first model's outputs; an assertion checked the second's.
        judged = [cell for cell in range(12) if cell % 3 == 0]
        await store.create_judgements(run_id, 0, "acme/judge", [(cell, 1) for cell in judged])
        for cell, score in zip(judged, (6.0, 8.0, 7.0, None), strict=True):
            await store.record_judge_end(
                run_id, cell, 0, status="succeeded", answer=f"SCORE: {score}", score=score
            )
        checked = [
            CellChecks(cell, (AssertionResult("contains:output", "passed"),))
            for cell in range(12)
            if cell % 3 == 1
        ]
        await store.record_checks(run_id, checked)
    async with served(database) as (viewer, http):
        token = {"x-viewer-token": viewer.token}
        seen_pairs = set()
        for _ in range(6):
            pair = (await http.get(f"/api/runs/{run_id}/pair")).json()
            assert set(pair) == {"pair", "prompt", "a", "b", "votes"}
            assert set(pair["a"]) == {"text", "media"}  # nothing names the model or cell
            assert all(model not in json.dumps(pair) for model in MODELS)
            answer = await http.post(
                f"/api/runs/{run_id}/votes",
                json={"pair": pair["pair"], "choice": "a", "voter": "ann"},
                headers=token,
            )
            assert answer.status_code == 200
            revealed = answer.json()
            assert revealed["recorded"] is True
            assert {revealed["a"], revealed["b"]} <= set(MODELS)
            assert revealed["a"] != revealed["b"]
            seen_pairs.add(pair["pair"])
            again = await http.post(
                f"/api/runs/{run_id}/votes",
                json={"pair": pair["pair"], "choice": "b", "voter": "ann"},
                headers=token,
            )
            assert again.status_code == 409  # one vote per pair
        assert len(seen_pairs) == 6
        skipped = (await http.get(f"/api/runs/{run_id}/pair")).json()
        answer = await http.post(
            f"/api/runs/{run_id}/votes",
            json={"pair": skipped["pair"], "choice": "skip", "voter": "ann"},
            headers=token,
        )
        assert answer.json() == {"recorded": False}  # nothing about its models
        bad = await http.post(
            f"/api/runs/{run_id}/votes",
            json={"pair": "x", "choice": "a", "voter": ""},
            headers=token,
        )
        assert bad.status_code == 400
        thumb = await http.post(
            f"/api/runs/{run_id}/thumbs",
            json={"cell": 0, "value": 1, "voter": "ann"},
            headers=token,
        )
        assert thumb.status_code == 200
        page = (await http.get(f"/runs/{run_id}/leaderboard")).text
        assert "6 votes" in page
        for model in MODELS:
            assert model in page
        # The people's ranking beside the judge's mean (7.00 of three scored, one
        # unscored) and the assertions' pass rate, on the models' own rows.
        ranking = page[page.index('id="ranking"') : page.index("</table>")]
        rows = {model: ranking[ranking.index(f'data-model="{model}"') :] for model in MODELS}
        judged_row = rows[MODELS[0]][: rows[MODELS[0]].index("</tr>")]
        assert "<td>7.00</td>" in judged_row
        assert "<td>1</td>" in judged_row  # unscored
        checked_row = rows[MODELS[1]][: rows[MODELS[1]].index("</tr>")]
        assert "<td>100 %</td>" in checked_row
    async with ResultsStore.open(database) as store:
        votes = await store.votes(run_id)
        assert len(votes) == 6
        assert {vote.voter for vote in votes} == {"ann"}
        assert [(t.cell, t.value) for t in await store.thumbs(run_id)] == [(0, 1)]


@pytest.mark.anyio
async def test_kept_outputs_come_from_the_archive(tmp_path: Path) -> None:
    from replicate_home import ReplicateAPI
    from replicate_home.comparisons import run_comparison
    from replicate_home.emulator import Emulator, Scenario

    database = tmp_path / "runs.db"
    async with ResultsStore.open(database) as store:
        async with Emulator(Scenario(duration=0.1), file_output="url").serve() as emulator:
            async with ReplicateAPI("token", base_url=emulator.base_url) as client:
                run = await run_comparison(client, store, ["a hat"], [MODELS[1]])
    # The emulator is gone: the image is served from the archive beside the database.
    async with served(database) as (_, http):
        window = (await http.get(f"/api/runs/{run.id}/window")).json()
        (media,) = window["cells"][0]["media"]
        assert media["kept"] is True
        assert media["kind"] == "image"
        assert media["url"].startswith("/files/")
        image = await http.get(media["url"])
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
        assert image.headers["x-content-type-options"] == "nosniff"
        for path in ("/files/../runs.db", "/files/ab/not-a-hash.png", "/files/" + "0" * 2 + "/x"):
            assert (await http.get(path)).status_code == 404


def test_another_host_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    from replicate_home.cli._view import _check_host

    assert _check_host("127.0.0.1") is True
    assert _check_host("localhost") is True
    assert _check_host("::1") is True
    assert capsys.readouterr().err == ""
    assert _check_host("0.0.0.0") is False
    warning = capsys.readouterr().err
    assert "warning" in warning
    assert "anyone" in warning
