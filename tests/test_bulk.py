"""Following many predictions through the list endpoint instead of one GET each."""

from __future__ import annotations

from datetime import datetime, timezone

import anyio
import pytest

from replicate_home import Prediction, ReplicateAPI
from replicate_home._bulk import BulkFollower
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio

FLUX = "black-forest-labs/flux-schnell"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def prediction(pid: str, status: str = "processing") -> Prediction:
    return Prediction(pid, FLUX, None, status, created_at=NOW)


async def test_a_sweep_answers_every_waiter_once() -> None:
    asked: list[tuple[str | None, datetime]] = []
    pages = {
        None: ([prediction("a", "succeeded"), prediction("x")], "next"),
        "next": ([prediction("b")], None),
    }

    async def list_page(cursor: str | None, after: datetime) -> tuple[list[Prediction], str | None]:
        asked.append((cursor, after))
        return pages[cursor]

    async with anyio.create_task_group() as group:
        bulk = BulkFollower(list_page, group.start_soon, threshold=1, interval=0.01)
        seen: dict[str, Prediction | None] = {}

        async def wait(pid: str) -> None:
            seen[pid] = await bulk.wait(prediction(pid))

        for pid in ("a", "b", "c"):
            group.start_soon(wait, pid)
    assert seen["a"] is not None
    assert seen["a"].status == "succeeded"
    assert seen["b"] is not None
    assert seen["b"].status == "processing"
    assert seen["c"] is None  # not listed: its caller reads it by id
    assert [cursor for cursor, _ in asked] == [None, "next"]  # one sweep, both pages
    assert all(after < NOW for _, after in asked)


async def test_a_failing_listing_sends_every_waiter_back_to_polling() -> None:
    async def list_page(cursor: str | None, after: datetime) -> tuple[list[Prediction], str | None]:
        raise RuntimeError("listing down")

    async with anyio.create_task_group() as group:
        bulk = BulkFollower(list_page, group.start_soon, threshold=1, interval=0.01)
        assert await bulk.wait(prediction("a")) is None
        assert await bulk.wait(Prediction("b", FLUX, None, "processing")) is None  # no time


@pytest.mark.parametrize("bulk_threshold", [0, -1, True, 1.5])
async def test_bulk_threshold_is_validated(bulk_threshold: object) -> None:
    with pytest.raises(ValueError, match="bulk_threshold"):
        ReplicateAPI("t", base_url="http://127.0.0.1:9", bulk_threshold=bulk_threshold)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_many_image_predictions_are_followed_through_the_listing() -> None:
    # The same 16 image predictions (no stream: they poll), followed one GET each, then
    # through the listing: every one succeeds either way, with far fewer requests.
    counts = {}
    for threshold in (None, 4):
        emulator = Emulator(Scenario(duration=1.5))
        async with emulator.serve():
            async with ReplicateAPI("t", base_url=emulator.base_url, bulk_threshold=threshold) as c:
                results = await c.compare([FLUX] * 16, prompt="p")
            listings = [
                r for r in emulator.requests if r.method == "GET" and r.path == "/v1/predictions"
            ]
        assert [r.status for r in results] == ["succeeded"] * 16
        assert all(r.images for r in results)
        counts[threshold] = (emulator.stats().requests, len(listings))
    assert counts[None][1] == 0
    assert counts[4][1] > 0
    assert counts[4][0] < 0.75 * counts[None][0]


@pytest.mark.parametrize(
    ("allowance", "polling", "active"),
    [
        (1.0, 19, False),
        (1.0, 20, True),
        (0.25, 4, False),
        (0.25, 5, True),
        (0.001, 1, True),
        (10.0, 63, False),
        (10.0, 64, True),
        (10_000.0, 1999, False),
        (10_000.0, 2000, True),
    ],
)
async def test_the_threshold_moves_with_the_request_rate_the_client_may_use(
    allowance: float, polling: int, active: bool
) -> None:
    # Four processes on one token polling 15 predictions each reach the request limit
    # together, while each alone is below the threshold of 20: once the budget's 429s
    # show a quarter share, five predictions between polls are followed in bulk. A
    # client allowed ten times the published limit polls up to 63 one by one (the square
    # root: its polls leave most of the limit to the rest).
    async def list_page(cursor: str | None, after: datetime) -> tuple[list[Prediction], str | None]:
        return [], None

    async with anyio.create_task_group() as group:
        bulk = BulkFollower(list_page, group.start_soon, threshold=20, allowance=lambda: allowance)
        bulk.polling = polling
        assert bulk.active is active


@pytest.mark.slow
async def test_a_client_allowed_more_requests_polls_more_predictions_one_by_one() -> None:
    # 24 image predictions, all in flight at once (creates are not what is measured):
    # through the listing at the published request limit, one poll each for a client
    # allowed twice as many requests (its threshold is 29: 20 times the square root of 2).
    listed = {}
    for requests_per_minute in (3000, 6000):
        emulator = Emulator(Scenario(duration=1.0))
        async with emulator.serve():
            async with ReplicateAPI(
                "t",
                base_url=emulator.base_url,
                creates_per_minute=60_000,
                requests_per_minute=requests_per_minute,
            ) as client:
                results = await client.compare([FLUX] * 24, prompt="p")
            listed[requests_per_minute] = [
                r for r in emulator.requests if r.method == "GET" and r.path == "/v1/predictions"
            ]
        assert [r.status for r in results] == ["succeeded"] * 24
    assert listed[3000]
    assert listed[6000] == []


@pytest.mark.slow
async def test_a_budget_share_under_the_ceiling_follows_few_predictions_in_bulk() -> None:
    # A client whose budget saw 429s (another process on the token) follows eight image
    # predictions through the listing, where at its full share it polls them one by one.
    listed = {}
    for shared in (False, True):
        emulator = Emulator(Scenario(duration=0.6))
        async with emulator.serve():
            async with ReplicateAPI("t", base_url=emulator.base_url) as client:
                if shared:
                    requests = client.budget.requests
                    requests.delay()
                    # A 429 whose exact wait shows a limit of 5 requests a second.
                    requests.throttled(0.2, exact=True)
                    assert client.budget.share == pytest.approx(0.1)
                else:
                    assert client.budget.share == 1.0
                results = await client.compare([FLUX] * 8, prompt="p")
            listed[shared] = [
                r for r in emulator.requests if r.method == "GET" and r.path == "/v1/predictions"
            ]
        assert [r.status for r in results] == ["succeeded"] * 8
    assert listed[False] == []
    assert listed[True]
