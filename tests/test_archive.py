"""The output archive: every output file of a run kept beside its results database as its
cell ends (content-addressed, streamed, under a size cap or none), what could not be
kept recorded with why and tried again by a resume and by ``fetch_files``, and the
report written from the archive with no network."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sqlite3
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home import ReplicateAPI, ReplicateHome
from replicate_home.cli import main
from replicate_home.cli._common import DEFAULT_FILE_CAP, byte_size
from replicate_home.comparisons import (
    DEFAULT_MAX_FILE_BYTES,
    FILE_STATES,
    SCHEMA_VERSION,
    ArchivedFile,
    PromptRow,
    ResultsStore,
    fetch_files,
    resume_comparison,
    run_comparison,
    write_report,
)
from replicate_home.comparisons._archive import (
    ArchivePolicy,
    archive_name,
    output_files,
    sniff_content_type,
)
from replicate_home.emulator import Emulator, Scenario, video_sha256

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
VIDEO = "minimax/video-01"
VIDEO_BYTES = 300_000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def kept(files: list[ArchivedFile]) -> list[ArchivedFile]:
    return [file for file in files if file.state == "kept"]


def check_kept(file: ArchivedFile) -> bytes:
    """A kept file's bytes, after checking that its path, name and hash agree."""
    assert file.state == "kept"
    assert file.path is not None
    assert file.sha256 is not None
    data = file.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == file.sha256
    assert file.size == len(data)
    assert file.path.name.startswith(file.sha256)
    assert file.path.stat().st_mode & 0o222 == 0  # read-only: linked by reports
    return data


# -- a run keeps its files as its cells end -----------------------------------------------


@pytest.mark.anyio
async def test_a_run_keeps_every_output_file_and_the_report_shows_them_offline(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.1), file_output="url")
    prompts = [PromptRow("waves"), PromptRow("a fox")]
    video_cell = PromptRow("waves", {"output_bytes": VIDEO_BYTES})
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI("token", base_url=emulator.base_url) as client:
            run = await run_comparison(client, store, prompts, [FLUX, LLAMA])
            videos = await run_comparison(client, store, [video_cell], [VIDEO])
        base_url = emulator.base_url
        files = await store.files(run.id)
        cells = await store.cells(run.id)
        video = await store.files(videos.id)
        assert await store.files(run.id, 2) == [files[1]]
        video_text = (await store.cells(videos.id))[0].output_text
    # Every cell's files were kept before the run returned; the text model has none,
    # and its text is in the database.
    assert [(file.cell, file.state) for file in files] == [(0, "kept"), (2, "kept")]
    for file in files:
        assert check_kept(file).startswith(b"\x89PNG")
        assert file.content_type == "image/png"
        assert file.path is not None
        assert file.path.parent.parent == store.archive
        assert file.url.startswith(base_url)
    assert all(cells[n].output_text for n in (1, 3))
    assert cells[0].output_text is None
    # The video's bytes are the model's own (streamed to disk, named by their hash).
    (clip,) = video
    check_kept(clip)
    assert clip.content_type == "video/mp4"
    assert clip.size == VIDEO_BYTES
    assert clip.sha256 == video_sha256("waves", VIDEO_BYTES)
    assert clip.path is not None
    assert clip.path.suffix == ".mp4"
    assert video_text is None  # its URL is not text
    # The emulator is gone: the report shows every file from the archive, offline.
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        page = await write_report(store, run.id, tmp_path / "report.html")
        clip_page = await write_report(store, videos.id, tmp_path / "clip.html")
    html = page.read_text(encoding="utf-8")
    for file in files:
        assert file.path is not None
        assert f'<img src="report_files/{file.path.name}"' in html
        assert (tmp_path / "report_files" / file.path.name).read_bytes() == file.path.read_bytes()
    assert clip.path is not None
    assert f'<video controls preload="auto" src="clip_files/{clip.path.name}"' in (
        clip_page.read_text(encoding="utf-8")
    )


@pytest.mark.anyio
async def test_homepage_runs_keep_their_images_too(tmp_path: Path, emulator: Emulator) -> None:
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateHome(emulator.base_url) as client:
            run = await run_comparison(client, store, ["a", "b"], ["gemma-2b", "sd-3"])
        files = await store.files(run.id)
    assert [(file.cell, file.state) for file in files] == [(1, "kept"), (3, "kept")]
    for file in files:
        assert check_kept(file).startswith(b"\x89PNG")


@pytest.mark.anyio
async def test_one_copy_of_the_same_bytes_however_many_cells_made_them(tmp_path: Path) -> None:
    same = "data:image/png;base64," + base64.b64encode(PNG).decode()
    emulator = Emulator(Scenario(duration=0.05, output=[same]))
    async with (
        emulator.serve(),
        ResultsStore.open(tmp_path / "runs.db") as store,
        ReplicateAPI("token", base_url=emulator.base_url) as client,
    ):
        run = await run_comparison(client, store, ["a", "b", "c"], [FLUX])
        files = await store.files(run.id)
    assert len({file.path for file in files}) == 1
    assert [check_kept(file) for file in files] == [PNG] * 3
    assert [file.url for file in files] == ["data:image/png;base64,"] * 3  # bytes not twice
    assert len(list(store.archive.rglob("*.png"))) == 1
    assert not list(store.archive.rglob(".*"))  # no staged leftovers


# -- what a run keeps: a cap, or none -------------------------------------------------------


@pytest.mark.anyio
async def test_a_size_cap_and_keeping_none_are_recorded_and_fetch_keeps_them_later(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.05), file_output="url")
    row = PromptRow("waves", {"output_bytes": VIDEO_BYTES})
    async with (
        emulator.serve(),
        ResultsStore.open(tmp_path / "runs.db") as store,
        ReplicateAPI("token", base_url=emulator.base_url) as client,
    ):
        capped = await run_comparison(client, store, [row], [VIDEO], max_file_bytes=100_000)
        (big,) = await store.files(capped.id)
        assert big.state == "too large"
        assert big.path is None
        assert big.error is not None
        assert "100000 bytes" in big.error
        none = await run_comparison(client, store, [row], [VIDEO], keep_files=False)
        (skipped,) = await store.files(none.id)
        assert skipped.state == "not kept"
        assert "keep_files=False" in (skipped.error or "")
        assert not list(store.archive.rglob("*"))  # nothing kept for either run, no leftovers
        page = await write_report(store, none.id, tmp_path / "none.html")
        assert "report --fetch" in page.read_text(encoding="utf-8")
        # A resume keeps what the run would have: the cap holds, nothing is fetched.
        await resume_comparison(client, store, capped.id)
        assert [file.state for file in await store.files(capped.id)] == ["too large"]
        # fetch_files (report --fetch) keeps both while the service still has them.
        for run in (capped, none):
            (file,) = await fetch_files(store, run.id, client=client)
            check_kept(file)
        assert len(list(store.archive.rglob("*.mp4"))) == 1


def test_archive_policy_checks_its_cap_and_reads_what_a_run_recorded() -> None:
    assert ArchivePolicy.of({}) == ArchivePolicy()
    assert ArchivePolicy.of({"archive": {"keep": False, "max_file_bytes": None}}) == (
        ArchivePolicy(False, None)
    )
    assert ArchivePolicy.of({"archive": {"max_file_bytes": "10"}}) == ArchivePolicy()
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_file_bytes"):
            ArchivePolicy(True, bad)  # type: ignore[arg-type]


# -- files that could not be kept are tried again ---------------------------------------------


@pytest.mark.anyio
async def test_a_failed_download_is_recorded_and_tried_again(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.05), file_output="url")
    async with emulator.serve():
        gone = f"{emulator.base_url}/_emulator/files/nothing/0.mp4"
        emulator.script("waves", Scenario(duration=0.05, output=gone), model=VIDEO)
        async with (
            ResultsStore.open(tmp_path / "runs.db") as store,
            ReplicateAPI("token", base_url=emulator.base_url) as client,
        ):
            run = await run_comparison(client, store, ["waves"], [VIDEO])
            (failed,) = await store.files(run.id)
            assert failed.state == "failed"
            assert failed.error is not None
            assert "HTTP 404" in failed.error
            assert failed.url == gone
            (cell,) = await store.cells(run.id)
            assert cell.status == "succeeded"  # the prediction did; its file is missing
            await resume_comparison(client, store, run.id)  # tried again: still gone
            assert [file.state for file in await store.files(run.id)] == ["failed"]
            page = await write_report(store, run.id, tmp_path / "report.html")
            assert 'data-file-state="failed"' in page.read_text(encoding="utf-8")

            # Later the file is there again (a service that answered 404 for a while).
            def serve(request: httpx.Request) -> httpx.Response:
                assert str(request.url) == gone
                return httpx.Response(200, content=b"\x1a\x45\xdf\xa3webm")

            async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
                page = await write_report(
                    store, run.id, tmp_path / "report.html", fetch=True, http_client=http
                )
            (file,) = await store.files(run.id)
    assert check_kept(file) == b"\x1a\x45\xdf\xa3webm"
    assert file.content_type == "video/webm"  # its bytes say so, whatever the URL says
    assert "<video" in page.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_a_resume_keeps_the_files_a_stopped_run_left_pending(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.05), file_output="url")
    async with (
        emulator.serve(),
        ResultsStore.open(tmp_path / "runs.db") as store,
        ReplicateAPI("token", base_url=emulator.base_url) as client,
    ):
        prediction = await client.create(FLUX, prompt="a fox")
        done = await client.wait(prediction.id)
        # A run stopped right after its cell's end was committed, before the download.
        run = await store.create_run(
            service="api",
            models=[FLUX],
            cells=[(0, 0, FLUX, "a fox", {"prompt": "a fox"})],
            settings={},
        )
        await store.record_end(
            run.id, 0, status="succeeded", prediction_id=done.id, files=output_files(done.output)
        )
        assert [file.state for file in await store.files(run.id)] == ["pending"]
        await resume_comparison(client, store, run.id)
        (file,) = await store.files(run.id)
    assert check_kept(file).startswith(b"\x89PNG")
    assert file.url == done.output[0]


@pytest.mark.anyio
async def test_a_retried_cell_keeps_the_files_of_its_new_attempt(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.05), file_output="url")
    emulator.script("a fox", Scenario(duration=0.05, outcome="failed"), model=FLUX)
    async with (
        emulator.serve(),
        ResultsStore.open(tmp_path / "runs.db") as store,
        ReplicateAPI("token", base_url=emulator.base_url) as client,
    ):
        run = await run_comparison(client, store, ["a fox"], [FLUX])
        assert await store.files(run.id) == []  # a failed prediction made no file
        emulator.script("a fox", Scenario(duration=0.05), model=FLUX)
        await resume_comparison(client, store, run.id, retry=["failed"])
        (file,) = await store.files(run.id)
    assert file.attempt == 2
    assert check_kept(file).startswith(b"\x89PNG")


@pytest.mark.anyio
async def test_a_database_from_before_the_archive_gets_its_images_to_fetch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    async with ResultsStore.open(path) as store:
        run = await store.create_run(
            service="api", models=[FLUX], cells=[(0, 0, FLUX, "a", {"prompt": "a"})], settings={}
        )
        await store.record_end(run.id, 0, status="succeeded", images=[image])
    with sqlite3.connect(path) as database:  # as the version before left it: no files
        database.execute("DROP TABLE files")
        database.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    async with ResultsStore.open(path) as store:
        (pending,) = await store.files(run.id)
        assert (pending.state, pending.url) == ("pending", image)
        (file,) = await fetch_files(store, run.id)
    assert check_kept(file) == PNG
    with sqlite3.connect(path) as database:
        assert database.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


# -- pure parts ------------------------------------------------------------------------------


def test_which_outputs_are_files() -> None:
    url = "https://replicate.delivery/x/out.mp4"
    assert output_files(url) == [url]
    assert output_files([url, "data:audio/wav;base64,UklGRg=="]) == [
        url,
        "data:audio/wav;base64,UklGRg==",
    ]
    assert output_files({"audio": url, "text": "hello"}) == [url]
    assert output_files(["see ", url]) == []  # a text stream with a URL in it is text
    assert output_files("plain text") == []
    assert output_files([]) == []
    assert output_files(None) == []


@given(st.lists(st.text(max_size=20), min_size=1).filter(lambda chunks: "".join(chunks)))
def test_a_text_stream_is_never_files_unless_every_chunk_is_one(chunks: list[str]) -> None:
    found = output_files(chunks)
    assert found == [] or found == chunks


@pytest.mark.parametrize(
    ("head", "declared", "expected"),
    [
        (PNG, None, "image/png"),
        (b"\xff\xd8\xff\xe0", "image/png", "image/jpeg"),  # the bytes win
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None, "audio/wav"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo", "video/x-msvideo"),
        (b"\x00\x00\x00\x18ftypmp42", None, "video/mp4"),
        (b"\x00\x00\x00\x18ftypM4A ", None, "audio/mp4"),
        (b"\x1a\x45\xdf\xa3", None, "video/webm"),
        (b"OggS\x00", None, "audio/ogg"),
        (b"ID3\x04", None, "audio/mpeg"),
        (b"<html>", "text/html; charset=utf-8", "text/html"),
        (b"??", None, "application/octet-stream"),
    ],
)
def test_a_files_type_comes_from_its_bytes_where_they_tell(
    head: bytes, declared: str | None, expected: str
) -> None:
    assert sniff_content_type(head, declared) == expected


def test_archive_names_never_make_a_page() -> None:
    digest = "ab" + "0" * 62
    assert archive_name(digest, "image/png") == f"ab/{digest}.png"
    assert archive_name(digest, "video/mp4; codecs=avc1") == f"ab/{digest}.mp4"
    for risky in ("text/html", "image/svg+xml", "application/xhtml+xml", None, ""):
        assert archive_name(digest, risky).endswith(".bin")
    assert set(FILE_STATES) == {"pending", "kept", "failed", "too large", "not kept"}


# -- the command line ------------------------------------------------------------------------


def test_compare_save_on_the_in_process_emulator_saves_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The docs' command as a new user runs it: no service configured, so the emulator
    # runs in this process; its files are saved before it stops.
    monkeypatch.delenv("REPLICATE_HOME_BASE_URL")
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "-m", "sdxl", "-m", "gemma-2b", "--json", "--save", "results", "a hat"]
    assert main(argv) == 0
    results = json.loads(capsys.readouterr().out)
    assert [result["status"] for result in results] == ["succeeded"] * 2
    image, text = sorted((tmp_path / "results").iterdir())
    assert image.name == "1-sdxl-lightning-4step-1.png"
    assert image.read_bytes().startswith(b"\x89PNG")
    assert text.name == "2-gemma-2b-it.txt"
    assert text.read_text(encoding="utf-8") == results[1]["text"]


def test_cli_prompt_set_keeps_files_under_its_cap_and_report_fetch_tries_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    argv = ["compare", "--emulator", "--service", "api", "--json", "--db", str(db)]
    argv += ["-p", "waves", "-m", FLUX, "-m", VIDEO, "-i", "output_bytes=50000"]
    assert main([*argv, "--max-file-bytes", "20K", "--name", "capped"]) == 0
    image, video = json.loads(capsys.readouterr().out)
    (png,) = image["files"]
    assert png["state"] == "kept"
    assert png["content_type"] == "image/png"
    assert Path(png["path"]).read_bytes()[:4] == b"\x89PNG"
    (clip,) = video["files"]
    assert clip["state"] == "too large"
    assert "20480 bytes" in clip["error"]
    assert clip["path"] is None
    page = tmp_path / "report.html"
    assert main(["report", "capped", "--db", str(db), "-o", str(page)]) == 0
    assert 'data-file-state="too large"' in page.read_text(encoding="utf-8")
    # --fetch keeps it (up to the default cap): the emulator that made the run is gone,
    # but this one gave its files as data: URIs, which need no network.
    assert main(["report", "capped", "--db", str(db), "-o", str(page), "--fetch"]) == 0
    html = page.read_text(encoding="utf-8")
    assert "data-file-state" not in html
    assert html.count("<img src=") == 1
    assert html.count("<video controls") == 1
    assert capsys.readouterr().out.splitlines() == [str(page)] * 2
    # Keeping none is recorded as such; the options are a prompt set's, kept by a resume.
    assert main([*argv, "--no-keep-files", "--name", "none"]) == 0
    states = [[f["state"] for f in cell["files"]] for cell in json.loads(capsys.readouterr().out)]
    assert states == [["not kept"], ["not kept"]]
    for options in (["--no-keep-files"], ["--max-file-bytes", "5M"]):
        assert main(["compare", "--resume", "none", "--db", str(db), *options]) == 2
        assert main(["compare", "-m", FLUX, "--emulator", "a hat", *options]) == 2
    assert "for a prompt set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("64K", 65536), ("100m", 100 * 1024**2), ("2GiB", 2 * 1024**3), ("none", None)],
)
def test_max_file_bytes_reads_sizes(text: str, size: int | None) -> None:
    assert byte_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5M", "lots", "K"])
def test_max_file_bytes_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        byte_size(text)


def test_the_command_lines_default_cap_is_the_librarys() -> None:
    assert DEFAULT_FILE_CAP == DEFAULT_MAX_FILE_BYTES


# -- bounded memory ----------------------------------------------------------------------------

BIG_VIDEO = 24 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_several_mb_video_is_archived_in_bounded_memory(
    emulator_in_subprocess: Callable[..., AbstractContextManager[str]], tmp_path: Path
) -> None:
    # The emulator in a process of its own: this process's traced memory is the run's.
    row = PromptRow("a cat", {"output_bytes": BIG_VIDEO})
    with emulator_in_subprocess("--duration", "0.05", "--file-output", "url") as url:
        async with (
            ResultsStore.open(tmp_path / "runs.db") as store,
            ReplicateAPI("t", base_url=url) as client,
        ):
            await run_comparison(client, store, ["warm-up"], [LLAMA])  # imports, caches
            tracemalloc.start()
            try:
                run = await run_comparison(client, store, [row], [VIDEO])
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            (file,) = await store.files(run.id)
    assert file.state == "kept"
    assert file.size == BIG_VIDEO
    assert file.sha256 == video_sha256("a cat", BIG_VIDEO)
    print(f"archive peak: {peak / BIG_VIDEO:.4f} of {BIG_VIDEO} bytes")
    assert peak < BIG_VIDEO / 10
