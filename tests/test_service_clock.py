"""The clocks' difference before any create is recorded: measured from the HTTP ``Date``
of the service's answers (the listing's own), so a lost create's window sits on the
service's clock: found when the service's clock is far off, and no wider than the
measurement allows when it is not.

The service is a small loopback fake (raw HTTP/1.1 over anyio sockets: the emulator's
server stamps its own ``Date`` from this machine's clock) whose clock is ``offset``
seconds ahead: its listing filters by and shows ``created_at`` on that clock, and its
``Date`` says that clock's time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from anyio.abc import SocketStream
from hypothesis import given
from hypothesis import strategies as st

from replicate_home import ReplicateAPI
from replicate_home._service_clock import DateReading, parse_http_date
from replicate_home.comparisons import ResultsStore
from replicate_home.comparisons._lost import MAX_SKEW, find_lost_creates, skew_bounds

LLAMA = "meta/meta-llama-3-8b-instruct"


def _prediction(number: int, created: datetime) -> dict[str, object]:
    base = "http://127.0.0.1"
    return {
        "id": f"fake{number}",
        "model": LLAMA,
        "version": "v1",
        "input": {"prompt": "same"},
        "status": "starting",
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "urls": {"get": f"{base}/v1/predictions/fake{number}", "cancel": f"{base}/x"},
    }


@asynccontextmanager
async def fake_service(
    offset: float, created: Callable[[datetime], list[datetime]]
) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve the listing; ``created(now on the service's clock)`` gives the predictions'
    ``created_at`` at the first request. Yields the base URL and the paths asked."""
    paths: list[str] = []
    made: list[datetime] = []

    async def answer(stream: SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            target = head.split(b" ", 2)[1].decode()
            paths.append(target)
            now = datetime.now(timezone.utc) + timedelta(seconds=offset)
            if not made:
                made.extend(created(now))
            query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
            after = datetime.fromisoformat(query.get("created_after", "2000-01-01T00:00:00Z"))
            before = datetime.fromisoformat(query.get("created_before", "2100-01-01T00:00:00Z"))
            listed = [
                _prediction(n, moment)
                for n, moment in enumerate(made)
                if after <= moment <= before and urlsplit(target).path == "/v1/predictions"
            ]
            body = json.dumps({"next": None, "previous": None, "results": listed}).encode()
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"date: {format_datetime(now, usegmt=True)}\r\n".encode()
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, answer)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"http://127.0.0.1:{port}", paths
        group.cancel_scope.cancel()


async def _lost(tmp_path: Path, base_url: str) -> dict[int, str]:
    """A run whose one cell was marked sending (for a 2 s create) and never answered,
    looked for on ``base_url``: what was found, by cell."""
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        run = await store.create_run(
            origin=base_url,
            emulator=False,
            service="api",
            models=[LLAMA],
            cells=[(0, 0, LLAMA, "same", {"prompt": "same"})],
            settings={},
        )
        await store.record_sending(run.id, 0, deadline=2)
        async with ReplicateAPI("r8_clock", base_url=base_url) as client:
            found = await find_lost_creates(client, store, run, await store.cells(run.id))
    return {cell: prediction.id for cell, prediction in found.items()}


@pytest.mark.anyio
async def test_a_service_clock_far_ahead_is_measured_from_its_date_and_the_create_found(
    tmp_path: Path,
) -> None:
    # 40 s ahead: past the fixed 10 s allowance. The create reached it just after the mark.
    async with fake_service(40.0, lambda now: [now + timedelta(seconds=0.3)]) as (url, paths):
        found = await _lost(tmp_path, url)
    assert found == {0: "fake0"}
    # The first listing's window (the fixed allowance) missed it; its Date measured the
    # clocks, and the window on the service's clock was listed once more.
    assert [urlsplit(path).path for path in paths] == ["/v1/predictions"] * 2


@pytest.mark.anyio
async def test_a_measured_clock_leaves_out_an_identical_prediction_from_before_the_mark(
    tmp_path: Path,
) -> None:
    # The clocks agree; an identical prediction was created 5 s before the mark: inside
    # the fixed 10 s allowance, outside the measured one.
    async with fake_service(0.0, lambda now: [now - timedelta(seconds=5)]) as (url, paths):
        found = await _lost(tmp_path, url)
    assert found == {}
    assert len(paths) == 1  # the measured window lies inside the listed one


def test_the_date_bounds_the_difference_within_a_second_and_the_round_trip() -> None:
    sent = datetime(2026, 12, 6, 12, 0, 0, 300_000, tzinfo=timezone.utc)
    reading = DateReading(
        sent, sent + timedelta(seconds=0.2), datetime(2026, 12, 6, 12, 0, 30, tzinfo=timezone.utc)
    )
    low, high = reading.skew_bounds()
    # The Date's second, and a second each way for a server that rounds or caches it.
    assert (low, high) == (pytest.approx(28.5), pytest.approx(31.7))
    measured = skew_bounds([], reading)
    assert measured[0] < low
    assert measured[1] > high
    far = DateReading(sent, sent, sent + timedelta(days=2))
    assert skew_bounds([], far)[1] <= MAX_SKEW


@given(st.text(max_size=80))
def test_any_date_header_is_read_or_refused_without_error(value: str) -> None:
    moment = parse_http_date(value)
    assert moment is None or moment.tzinfo is not None


def test_http_dates_are_read_as_utc() -> None:
    assert parse_http_date("Sun, 06 Dec 2026 19:03:25 GMT") == datetime(
        2026, 12, 6, 19, 3, 25, tzinfo=timezone.utc
    )
    assert parse_http_date(None) is None
    assert parse_http_date("yesterday") is None
