"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from replicate_home.emulator import Emulator, Scenario

#: A loopback port nothing listens on: a client that forgets its base_url fails at once
#: with "connection refused" instead of reaching the internet.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_real_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_HOME_BASE_URL", UNREACHABLE)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)


@pytest.fixture
def scenario() -> Scenario:
    """The default scenario of the ``emulator`` fixture: short, so tests stay fast."""
    return Scenario(duration=0.3)


@pytest.fixture
async def emulator(scenario: Scenario) -> AsyncIterator[Emulator]:
    """An emulator served on a free loopback port for the length of one test."""
    async with Emulator(scenario).serve() as running:
        yield running


#: Where the emulator's server tasks come from; any other task left running is a leak.
_SERVER_CODE = ("hypercorn", "_highlevel_serve_listeners", "starlette")


def _client_task_ids() -> set[int]:
    import anyio

    ids = set()
    for task in anyio.get_running_tasks():
        code = getattr(task.coro, "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if not any(part in filename for part in _SERVER_CODE):
            ids.add(task.id)
    return ids


@pytest.fixture
def client_tasks() -> Callable[[], set[int]]:
    """Ids of the running tasks that are not the in-process emulator's server tasks."""
    return _client_task_ids
