"""Output files: ``FileOutput`` reads, streams and saves ``https:`` and ``data:`` files
over a loopback server of its own, safely (inside the target directory, atomically,
the token only to its own origin)."""

from __future__ import annotations

import base64
import gzip
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sink_server import Body, sink_server

from replicate_home import (
    DownloadFailed,
    FileOutput,
    ImageResponse,
    Prediction,
    ReplicateAPI,
    _downloads,
)
from replicate_home._downloads import file_urls
from replicate_home._saving import safe_file_name
from replicate_home.emulator._server import serving

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BIG = 8 * 1024 * 1024
MB = 1024 * 1024


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


class FileServer:
    """A tiny ASGI app: paths map to behaviours; it records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.first_chunk_sent = anyio.Event()
        self.failures_left = 0
        self.base_url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        self.requests.append((path, auth.decode() if auth else None))

        async def start(status: int, extra: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
            await send({"type": "http.response.start", "status": status, "headers": extra})

        if path.endswith("flaky.png") and self.failures_left > 0:
            self.failures_left -= 1
            await start(503)
            await send({"type": "http.response.body", "body": b""})
        elif path.endswith("missing.png"):
            await start(404)
            await send({"type": "http.response.body", "body": b"no"})
        elif path.endswith("redirect.png"):
            target = self.base_url.replace("127.0.0.1", "localhost") + "/x.png"
            await start(302, [(b"location", target.encode())])
            await send({"type": "http.response.body", "body": b""})
        elif path.endswith("big.bin"):
            piece = b"\x07" * 65536
            length = str(BIG).encode()
            await start(
                200, [(b"content-type", b"application/octet-stream"), (b"content-length", length)]
            )
            for _ in range(BIG // len(piece)):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path.endswith("drop.bin"):
            # The first answer breaks off halfway; the next is whole.
            await start(200, [(b"content-length", str(len(PNG)).encode())])
            if self.failures_left > 0:
                self.failures_left -= 1
                half = len(PNG) // 2
                await send({"type": "http.response.body", "body": PNG[:half], "more_body": True})
                raise RuntimeError("the connection breaks off")
            await send({"type": "http.response.body", "body": PNG})
        elif path.endswith("gz.txt"):
            packed = gzip.compress(b"hello " * 1000)
            await start(200, [(b"content-encoding", b"gzip"), (b"content-type", b"text/plain")])
            await send({"type": "http.response.body", "body": packed})
        elif path.endswith("stall.bin"):
            await start(200, [(b"content-length", b"1000000")])
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            self.first_chunk_sent.set()
            await anyio.sleep_forever()
        else:
            await start(200, [(b"content-type", b"image/png")])
            await send({"type": "http.response.body", "body": PNG})


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = FileServer()
    async with serving(server) as base_url:  # type: ignore[arg-type]
        server.base_url = base_url
        yield server


def _entries(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


async def test_a_data_uri_reads_streams_and_saves(tmp_path: Path) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    output = FileOutput(uri)
    assert output.content_type == "image/png"
    assert await output.read() == PNG
    assert b"".join([piece async for piece in output.aiter_bytes(100)]) == PNG
    path = await output.save(tmp_path)
    assert path == tmp_path / "output.png"
    assert path.read_bytes() == PNG
    # Saving again never overwrites: the name this library chose gets a number.
    assert (await output.save(tmp_path)).name == "output-2.png"
    plain = FileOutput("data:,hello%20there")
    assert plain.content_type == "text/plain"
    assert await plain.read() == b"hello there"


async def test_a_url_full_of_dot_segments_writes_only_inside_the_directory(
    files: FileServer, tmp_path: Path
) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    for url in (
        f"{files.base_url}/a/b/../../x.png",
        f"{files.base_url}/a/..%2F..%2Fx.png",
        f"{files.base_url}/..%2f..%2f..%2fetc%2fpasswd.png",
    ):
        path = await FileOutput(url).save(inside)
        assert path.parent == inside
        assert path.read_bytes() == PNG
    assert _entries(tmp_path) == {
        "inside",
        "inside/output.png",
        "inside/output-2.png",
        "inside/output-3.png",
    }


async def test_save_refuses_a_path_outside_its_name(tmp_path: Path) -> None:
    output = FileOutput("data:,x")
    for name in ("..", "a/b.txt", "../x.txt", ""):
        with pytest.raises(ValueError, match="plain file name"):
            await output.save_as(tmp_path, name)
    target = tmp_path / "mine.txt"
    assert await output.save(target) == target
    with pytest.raises(FileExistsError):
        await output.save(target)
    await FileOutput("data:,y").save(target, overwrite=True)
    assert target.read_bytes() == b"y"
    assert _entries(tmp_path) == {"mine.txt"}


async def test_a_failed_download_is_a_typed_error_and_leaves_nothing(
    files: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(DownloadFailed, match="HTTP 404"):
        await FileOutput(f"{files.base_url}/missing.png?signature=secret").save(tmp_path)
    assert _entries(tmp_path) == set()
    with pytest.raises(DownloadFailed) as caught:
        await FileOutput(f"{files.base_url}/missing.png?signature=secret").read()
    assert "secret" not in str(caught.value)


async def test_transient_failures_are_retried(files: FileServer, tmp_path: Path) -> None:
    files.failures_left = 2
    path = await FileOutput(f"{files.base_url}/flaky.png").save(tmp_path)
    assert path.read_bytes() == PNG
    assert [p for p, _ in files.requests].count("/flaky.png") == 3


async def test_a_cancelled_download_leaves_no_partial_file(
    files: FileServer, tmp_path: Path
) -> None:
    output = FileOutput(f"{files.base_url}/stall.bin")
    async with anyio.create_task_group() as group:
        group.start_soon(output.save, tmp_path)
        await files.first_chunk_sent.wait()
        # The partial file exists while the download runs (made before the request) …
        assert [entry async for entry in anyio.Path(tmp_path).iterdir()]
        group.cancel_scope.cancel()
    # … and is gone once it was cancelled.
    assert _entries(tmp_path) == set()


@pytest.mark.slow
async def test_a_short_body_is_not_taken_for_the_file(tmp_path: Path) -> None:
    async def short(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(receive, send)
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
        )
        await send({"type": "http.response.body", "body": b"12345"})

    async with serving(short) as base_url:  # type: ignore[arg-type]
        with pytest.raises(DownloadFailed):
            await FileOutput(f"{base_url}/short.png").save(tmp_path)
    assert _entries(tmp_path) == set()


async def test_a_several_mb_output_saves_in_bounded_memory(tmp_path: Path) -> None:
    # Served by a server that sends a piece only when the client takes it, so that the
    # process's traced memory measures the download, on asyncio and trio alike.
    sizes = {"/small.bin": 4 * MB, "/large.bin": 32 * MB}
    peaks: dict[int, int] = {}
    async with sink_server(lambda seen: (200, Body(sizes.get(seen.path, MB)))) as server:
        async with ReplicateAPI("t", base_url=server.url) as api:
            urls = [f"{server.url}{path}" for path in ("/warm.bin", *sizes)]
            warm, *measured = _from(api, *urls).files
            await warm.save(tmp_path)  # the connection is made before measuring
            for size, file in zip(sizes.values(), measured, strict=True):
                tracemalloc.start()
                try:
                    path = await file.save(tmp_path)
                    _, peaks[size] = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert path.stat().st_size == size
    small, large = 4 * MB, 32 * MB
    print(f"save peaks: {peaks[small] / small:.4f} of 4 MiB, {peaks[large] / large:.4f} of 32 MiB")
    # A bounded download holds a few 64 KiB pieces whatever the file's size: a small
    # fraction of a several-MB file, and no more for a file eight times larger.
    assert peaks[large] < large / 16
    assert peaks[large] < peaks[small] + small / 4


def _from(api: ReplicateAPI, *urls: str) -> Prediction:
    """A prediction with output files, as ``api`` would have read it."""
    prediction = Prediction(id="p", model="m", version=None, status="succeeded", output=list(urls))
    return replace(prediction, _downloads=api._downloads)


async def test_a_clients_files_use_its_pool_and_its_token_at_home_only(
    files: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = files.base_url.replace("127.0.0.1", "localhost")
    # A client given an HTTP client with a default credential of its own: that one
    # too must not leave for another origin.
    http = httpx.AsyncClient(headers={"authorization": "Bearer default-secret"})
    async with http, ReplicateAPI("r8_token", base_url=files.base_url, http_client=http) as api:
        prediction = _from(api, f"{files.base_url}/x.png", f"{elsewhere}/x.png")

        @asynccontextmanager
        async def no_own_client() -> AsyncIterator[httpx.AsyncClient]:
            raise AssertionError("a client's files download through its pool")
            yield http

        monkeypatch.setattr(_downloads, "_own_client", no_own_client)
        assert [await file.read() for file in prediction.files] == [PNG, PNG]
        assert "r8_token" not in repr(prediction.files[0])
        monkeypatch.undo()
    assert files.requests == [("/x.png", "Bearer r8_token"), ("/x.png", None)]
    # Once the client is closed, its files still download, on a client of their own.
    assert await prediction.files[1].read() == PNG


async def test_a_clients_files_follow_its_timeout_and_read_limit(files: FileServer) -> None:
    async with ReplicateAPI("t", base_url=files.base_url, timeout=0.3) as api:
        stalled = _from(api, f"{files.base_url}/stall.bin").files[0]
        with pytest.raises(DownloadFailed, match="timed out"):
            await stalled.read()
    async with ReplicateAPI("t", base_url=files.base_url, max_response_bytes=1024 * 1024) as api:
        big = _from(api, f"{files.base_url}/big.bin").files[0]
        with pytest.raises(DownloadFailed, match=f"larger than {1024 * 1024}"):
            await big.read()
        assert len(await big.read(max_bytes=BIG)) == BIG
    # A caller bounds any download itself, too.
    with pytest.raises(TimeoutError), anyio.fail_after(0.2):
        await FileOutput(f"{files.base_url}/stall.bin").read()
    with pytest.raises(DownloadFailed, match="timed out"):
        await FileOutput(f"{files.base_url}/stall.bin").read(timeout=0.2)


async def test_a_broken_download_resumes_after_what_was_delivered(
    files: FileServer, tmp_path: Path
) -> None:
    files.failures_left = 1
    pieces = [piece async for piece in FileOutput(f"{files.base_url}/drop.bin").aiter_bytes(100)]
    assert b"".join(pieces) == PNG
    files.failures_left = 1
    path = await FileOutput(f"{files.base_url}/drop.bin").save(tmp_path)
    assert path.read_bytes() == PNG
    assert [p for p, _ in files.requests].count("/drop.bin") == 4


async def test_a_compressed_file_is_saved_as_itself(files: FileServer, tmp_path: Path) -> None:
    path = await FileOutput(f"{files.base_url}/gz.txt").save(tmp_path)
    assert path.read_bytes() == b"hello " * 1000


async def test_the_token_goes_only_to_its_own_origin(files: FileServer) -> None:
    origin = files.base_url
    headers = {"authorization": "Bearer secret-token"}
    own = FileOutput(f"{origin}/x.png", headers=headers, auth_origin=origin)
    assert await own.read() == PNG
    other_host = files.base_url.replace("127.0.0.1", "localhost")
    other = FileOutput(f"{other_host}/x.png", headers=headers, auth_origin=origin)
    assert await other.read() == PNG
    redirected = FileOutput(f"{origin}/redirect.png", headers=headers, auth_origin=origin)
    assert await redirected.read() == PNG
    assert files.requests == [
        ("/x.png", "Bearer secret-token"),
        ("/x.png", None),
        ("/redirect.png", "Bearer secret-token"),
        ("/x.png", None),  # httpx drops the token on a redirect to another origin
    ]
    assert "secret" not in repr(own)


async def test_read_has_a_limit(files: FileServer) -> None:
    with pytest.raises(DownloadFailed, match="larger than"):
        await FileOutput(f"{files.base_url}/x.png").read(max_bytes=10)


def test_prediction_files_finds_every_file_and_leaves_the_output_alone() -> None:
    output = {
        "video": "https://replicate.delivery/a/out.mp4",
        "frames": ["data:image/png;base64,iVBO", "not a url", 3],
        "caption": "see https://example.com/x.png",
    }
    prediction = Prediction(id="p", model="m", version=None, status="succeeded", output=output)
    assert [f.url for f in prediction.files] == [
        "https://replicate.delivery/a/out.mp4",
        "data:image/png;base64,iVBO",
    ]
    assert prediction.output is output
    assert prediction.files[0].content_type == "video/mp4"
    image = ImageResponse(["https://replicate.delivery/a/1.webp"], "alt")
    assert [f.url for f in image.files] == image.images
    assert str(image) == "![alt](https://replicate.delivery/a/1.webp)"


def test_file_urls_and_safe_names() -> None:
    assert file_urls("ftp://x/y") == []
    assert file_urls(["https://a.b/c", {"k": "http://a.b/d"}]) == ["https://a.b/c", "http://a.b/d"]
    assert safe_file_name("../../etc/passwd") == "etc-passwd"
    assert safe_file_name("..") == "output"
    with pytest.raises(ValueError, match="url"):
        FileOutput("file:///etc/passwd")
