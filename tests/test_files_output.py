"""Output files: ``FileOutput`` reads, streams and saves ``https:`` and ``data:`` files
over a loopback server of its own, safely (inside the target directory, atomically,
the token only to its own origin)."""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from replicate_home import DownloadFailed, FileOutput, ImageResponse, Prediction
from replicate_home._files import file_urls, safe_file_name
from replicate_home.emulator._server import serving

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BIG = 8 * 1024 * 1024


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


@pytest.mark.slow
# On trio only: tracemalloc counts the whole process, and hypercorn's asyncio server (in
# this process) buffers what it sends without waiting for the client, so under asyncio
# the peak measures the server's buffer, not the download.
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_large_output_saves_in_bounded_memory(files: FileServer, tmp_path: Path) -> None:
    output = FileOutput(f"{files.base_url}/big.bin")
    tracemalloc.start()
    try:
        path = await output.save(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.stat().st_size == BIG
    assert path.suffix == ".bin"
    # The whole file is 8 MB; a bounded download holds a few chunks at a time.
    assert peak < BIG / 8, f"peak {peak} bytes for a {BIG}-byte file"


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
