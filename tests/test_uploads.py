"""How file inputs are sent (``_uploads``): a client's uploads reused by content, shared
between calls in flight, refused uploads failing the call before any create, the rate
budget and the deadline, the ``data`` size limit, reads off the event loop, and an upload
in bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from sink_server import Seen, sink_server

from replicate_home import (
    FileTooLarge,
    PredictionTimeout,
    ReplicateAPI,
    ReplicateHome,
    UploadedFile,
    UploadFailed,
)
from replicate_home._fanout import Failed
from replicate_home._uploads import MAX_DATA_BYTES, UploadCache
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
MODEL = "meta/meta-llama-3-8b-instruct"


@pytest.fixture
def scenario() -> Scenario:
    """Predictions that end at once: these tests are about what goes before them."""
    return Scenario(duration=0.02)


def _uploads(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests if (r.method, r.path) == ("POST", "/v1/files"))


def _creates(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST" and "predictions" in r.path)


async def test_a_client_reuses_an_upload_of_the_same_content(
    emulator: Emulator, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        first = await api.predict(MODEL, input={"prompt": "a", "image": image})
        again = await api.predict(MODEL, input={"prompt": "b", "image": Path(str(image))})
        assert first.input["image"] == again.input["image"]
        assert _uploads(emulator) == 1
        # Equal bytes in different objects: one upload; other bytes: another.
        await api.predict(MODEL, input={"prompt": "c", "image": bytes(PNG)})
        await api.predict(MODEL, input={"prompt": "d", "image": bytearray(PNG)})
        assert _uploads(emulator) == 2
        # The file changed on disk: uploaded again.
        image.write_bytes(PNG + b"more")
        changed = await api.predict(MODEL, input={"prompt": "e", "image": image})
        assert changed.input["image"] != first.input["image"]
        assert _uploads(emulator) == 3
        # A deleted upload is never reused.
        file_id = changed.input["image"].rsplit("/", 1)[1]
        await api.delete_file(file_id)
        await api.predict(MODEL, input={"prompt": "f", "image": image})
        assert _uploads(emulator) == 4
    # Another client has its own uploads.
    async with ReplicateAPI("t", base_url=emulator.base_url) as other:
        await other.predict(MODEL, input={"prompt": "g", "image": image})
    assert _uploads(emulator) == 5


async def test_calls_at_once_share_one_upload_in_flight(emulator: Emulator) -> None:
    results: list[str] = []
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:

        async def run(number: int) -> None:
            # A different object each time, the same content: shared by its hash.
            prediction = await api.predict(MODEL, input={"prompt": "x", "image": bytes(PNG)})
            results.append(prediction.input["image"])

        async with anyio.create_task_group() as group:
            for number in range(8):
                group.start_soon(run, number)
    assert len(results) == 8
    assert len(set(results)) == 1
    assert _uploads(emulator) == 1


def _refuse_uploads(seen: Seen) -> tuple[int, object]:
    if seen.path == "/v1/files":
        return 500, {"detail": "storage is down"}
    return 404, {"detail": "not here"}


async def test_a_refused_upload_fails_the_call_before_any_create() -> None:
    async with sink_server(_refuse_uploads) as server:
        async with ReplicateAPI("t", base_url=server.url) as api:
            with pytest.raises(UploadFailed) as caught:
                await api.predict(MODEL, input={"prompt": "x", "image": io.BytesIO(PNG)})
            assert caught.value.error.__class__.__name__ == "ResponseStatusError"
            assert "storage is down" in str(caught.value)
            # A fan-out over one image: one upload, every model fails with it.
            async with api.fan_out([MODEL] * 3, input={"prompt": "x", "image": PNG}) as events:
                failures = [event async for event in events if isinstance(event, Failed)]
    assert len(failures) == 3
    assert all(isinstance(failure.error, UploadFailed) for failure in failures)
    assert [seen.path for seen in server.requests] == ["/v1/files", "/v1/files"]
    assert "t" in server.requests[0].headers["authorization"]


async def test_an_upload_follows_the_calls_deadline_and_cancellation() -> None:
    async with sink_server(lambda seen: (0, None)) as server:  # never answers
        async with ReplicateAPI("t", base_url=server.url, timeout=0.3) as api:
            with pytest.raises(PredictionTimeout):
                await api.predict(MODEL, input={"prompt": "x", "image": PNG})
            with anyio.move_on_after(0.2) as scope:
                await api.predict(MODEL, input={"prompt": "x", "image": PNG})
            assert scope.cancelled_caught
    assert [seen.path for seen in server.requests] == ["/v1/files", "/v1/files"]


async def test_uploads_take_their_turn_in_the_budget_and_follow_the_deadline(
    emulator: Emulator,
) -> None:
    async with ReplicateAPI("t", base_url=emulator.base_url, timeout=0.5) as api:
        api.budget.requests.pause(30)  # no "other" request may go out for 30 s
        with pytest.raises(PredictionTimeout):
            await api.predict(MODEL, input={"prompt": "x", "image": PNG})
    assert len(emulator.requests) == 0


async def test_data_mode_refuses_files_too_large_before_any_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as file:
        file.truncate(MAX_DATA_BYTES + 1)  # sparse: nothing written

    class Pipe(io.RawIOBase):
        """A non-seekable stream: its size is only known by reading it."""

        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            count = min(len(buffer), self.left)
            buffer[:count] = b"\0" * count
            self.left -= count
            return count

    half = bytes(MAX_DATA_BYTES // 2 + 1)
    async with ReplicateAPI("t", base_url=emulator.base_url, file_encoding="data") as api:
        with pytest.raises(FileTooLarge, match="file_encoding='upload'"):
            await api.predict(MODEL, input={"prompt": "x", "image": big})
        with pytest.raises(FileTooLarge):  # two files, together too large
            await api.predict(MODEL, input={"prompt": "x", "a": half, "b": bytearray(half)})
        with pytest.raises(FileTooLarge):
            api.fan_out([MODEL, MODEL], input={"prompt": "x", "image": big})
        stream = io.BufferedReader(Pipe(MAX_DATA_BYTES + 10))
        with pytest.raises(FileTooLarge):  # found out while reading it
            await api.predict(MODEL, input={"prompt": "x", "audio": stream})
    assert len(emulator.requests) == 0
    assert issubclass(FileTooLarge, ValueError)


async def test_file_encoding_is_checked_and_only_for_the_official_api(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="file_encoding"):
        ReplicateAPI("t", base_url=emulator.base_url, file_encoding="base64")  # type: ignore[arg-type]
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        with pytest.raises(ValueError, match="file_encoding"):
            await api.predict(MODEL, prompt="x", file_encoding="url")  # type: ignore[arg-type]
    async with ReplicateHome(emulator.base_url) as home:
        with pytest.raises(ValueError, match="official API"):
            await home.predict("gemma-2b", prompt="x", file_encoding="data")
    assert len(emulator.requests) == 0


@pytest.mark.parametrize("mode", ["upload", "data"])
async def test_files_are_read_in_worker_threads(
    emulator: Emulator, tmp_path: Path, mode: Any
) -> None:
    loop_thread = threading.get_ident()
    readers: set[int] = set()

    class Watched(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            readers.add(threading.get_ident())
            return super().read(size)

    async with ReplicateAPI("t", base_url=emulator.base_url, file_encoding=mode) as api:
        prediction = await api.predict(MODEL, input={"prompt": "x", "image": Watched(PNG)})
    assert prediction.status == "succeeded"
    assert readers
    assert loop_thread not in readers


def _accept_upload(seen: Seen) -> tuple[int, object]:
    return 201, {"id": "f1", "urls": {"get": "https://example.invalid/v1/files/f1"}}


@pytest.mark.slow
async def test_a_large_file_is_uploaded_in_bounded_memory(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as file:
        piece = os.urandom(1024 * 1024)
        for _ in range(size // len(piece)):
            file.write(piece)
            digest.update(piece)
    async with sink_server(_accept_upload) as server:
        async with ReplicateAPI("t", base_url=server.url) as api:
            tracemalloc.start()
            try:
                uploaded = await api.upload_file(big)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert uploaded.id == "f1"
    (seen,) = server.requests
    assert seen.size > size  # the file and the multipart framing around it
    # Peak traced memory while sending 64 MiB: a small fraction of the file.
    print(f"upload peak {peak / size:.4f} of the file's size")
    assert peak < size / 16


def _uploaded(name: str) -> UploadedFile:
    return UploadedFile(id=name, url=f"https://api.example/v1/files/{name}")


async def test_a_cancelled_upload_is_taken_over_by_a_caller_waiting_for_it() -> None:
    cache = UploadCache()
    key = ("sha256", "same")
    started = anyio.Event()
    calls: list[str] = []

    async def stuck() -> UploadedFile:
        calls.append("stuck")
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def quick() -> UploadedFile:
        calls.append("quick")
        return _uploaded("f2")

    got: list[str] = []
    async with anyio.create_task_group() as group:
        first = anyio.CancelScope()
        group.start_soon(_into, got, cache, key, stuck, first)
        await started.wait()
        waiter = anyio.Event()

        async def second() -> None:
            waiter.set()
            got.append(await cache.url(key, quick))

        group.start_soon(second)
        await waiter.wait()
        await wait_all_tasks_blocked()  # the second waits for the first's upload
        assert calls == ["stuck"]
        first.cancel()
    assert calls == ["stuck", "quick"]
    assert got == ["https://api.example/v1/files/f2"]
    # Remembered: a later call needs no upload.
    assert await cache.url(key, stuck) == got[0]
    assert len(cache) == 1


async def _into(
    results: list[str], cache: UploadCache, key: Any, upload: Any, scope: anyio.CancelScope
) -> None:
    with scope:
        results.append(await cache.url(key, upload))


async def test_a_failed_upload_fails_every_caller_waiting_and_is_not_remembered() -> None:
    cache = UploadCache()
    key = ("sha256", "same")
    release = anyio.Event()
    calls = 0

    async def failing() -> UploadedFile:
        nonlocal calls
        calls += 1
        await release.wait()
        raise UploadFailed("cat.png", PredictionTimeout())

    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await cache.url(key, failing)
        except UploadFailed as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(call)
        await wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert len(errors) == 3
    assert len(cache) == 0
    assert await cache.url(key, lambda: _done(_uploaded("f3"))) == (
        "https://api.example/v1/files/f3"
    )


async def _done(value: UploadedFile) -> UploadedFile:
    return value


async def test_uploads_are_reused_while_they_live_and_the_cache_is_bounded() -> None:
    cache = UploadCache(size=2)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    expiring = UploadedFile(id="e", url="https://api.example/v1/files/e", expires_at=soon)
    assert await cache.url(("a",), lambda: _done(expiring)) == expiring.url
    # Within the margin of its expiry: not reused.
    assert await cache.url(("a",), lambda: _done(_uploaded("a2"))) == (
        "https://api.example/v1/files/a2"
    )
    await cache.url(("b",), lambda: _done(_uploaded("b")))
    await cache.url(("c",), lambda: _done(_uploaded("c")))
    assert len(cache) == 2  # "a" was the least recently used
    assert await cache.url(("a",), lambda: _done(_uploaded("a3"))) == (
        "https://api.example/v1/files/a3"
    )
    cache.forget("a3")
    assert await cache.url(("a",), lambda: _done(_uploaded("a4"))) == (
        "https://api.example/v1/files/a4"
    )
