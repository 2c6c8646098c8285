"""``report --fetch`` (and ``fetch_files(..., api_token=)``) on a run of the official
API: files the API serves from its own origin (the Files API) are fetched with the
token, which goes to the run's recorded origin only, never to another host."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sink_server import Body, Seen, sink_server

from replicate_home.cli import main
from replicate_home.comparisons import ResultsStore, fetch_files

FLUX = "black-forest-labs/flux-schnell"
TOKEN = "r8_fetch_token_secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
OTHER = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64

pytestmark = pytest.mark.anyio


def _api(seen: Seen) -> tuple[int, object]:
    if seen.headers.get("authorization") != f"Bearer {TOKEN}":
        return 401, {"detail": "Unauthenticated"}
    return 200, Body(len(PNG), PNG, "image/png")


def _other(seen: Seen) -> tuple[int, object]:
    return 200, Body(len(OTHER), OTHER, "image/png")


async def _run(store: ResultsStore, origin: str, files: list[str], emulator: bool = False) -> str:
    """A run of the API at ``origin`` whose one cell made ``files``, none kept."""
    run = await store.create_run(
        origin=origin,
        emulator=emulator,
        service="api",
        models=[FLUX],
        cells=[(0, 0, FLUX, "a", {"prompt": "a"})],
        settings={},
    )
    await store.record_sending(run.id, 0, deadline=60)
    await store.record_sent(run.id, 0, "p-1")
    await store.record_end(
        run.id, 0, status="succeeded", images=files, files=files, keep_files=False
    )
    return run.id


def _authorizations(requests: list[Seen]) -> list[str | None]:
    return [seen.headers.get("authorization") for seen in requests]


async def test_the_token_reaches_the_apis_file_url_and_no_other_host(tmp_path: Path) -> None:
    async with sink_server(_api) as api, sink_server(_other) as other:
        async with ResultsStore.open(tmp_path / "runs.db") as store:
            files = [f"{api.url}/v1/files/f1", f"{other.url}/out.png"]
            run_id = await _run(store, api.url, files)
            kept = await fetch_files(store, run_id, api_token=TOKEN)
    assert [file.state for file in kept] == ["kept", "kept"]
    assert [file.path.read_bytes() for file in kept if file.path] == [PNG, OTHER]
    assert _authorizations(api.requests) == [f"Bearer {TOKEN}"]
    assert _authorizations(other.requests) == [None]


async def test_without_a_token_or_for_an_emulator_run_no_token_is_sent(tmp_path: Path) -> None:
    async with sink_server(_api) as api, sink_server(_other) as other:
        async with ResultsStore.open(tmp_path / "runs.db") as store:
            files = [f"{api.url}/v1/files/f1", f"{other.url}/out.png"]
            plain = await fetch_files(store, await _run(store, api.url, files))
            emulated = await _run(store, api.url, files, emulator=True)
            on_emulator = await fetch_files(store, emulated, api_token=TOKEN)
    for kept in (plain, on_emulator):
        assert [file.state for file in kept] == ["failed", "kept"]
        assert TOKEN not in (kept[0].error or "")
    assert set(_authorizations(api.requests + other.requests)) == {None}


async def test_cli_report_fetch_sends_the_configured_token_to_the_runs_origin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("jinja2")
    database = tmp_path / "runs.db"
    async with sink_server(_api) as api, sink_server(_other) as other:
        async with ResultsStore.open(database) as store:
            run_id = await _run(store, api.url, [f"{api.url}/v1/files/f1", f"{other.url}/o.png"])
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        page = tmp_path / "report.html"
        arguments = ["report", run_id, "--db", str(database), "-o", str(page), "--fetch"]
        # The command runs its own event loop: in a worker thread, beside the servers.
        code = await anyio.to_thread.run_sync(main, arguments)
    out, err = capsys.readouterr()
    assert code == 0
    assert _authorizations(api.requests) == [f"Bearer {TOKEN}"]
    assert _authorizations(other.requests) == [None]
    assert TOKEN not in out + err + page.read_text()
