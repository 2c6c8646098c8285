"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

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


@contextmanager
def _emulator_in_subprocess(*options: str) -> Iterator[str]:
    """``replicate-home emulator --port 0 OPTIONS`` in another process; its base URL."""
    command = [sys.executable, "-m", "replicate_home", "emulator", "--port", "0", *options]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"http://\S+", line)
            assert match, f"the emulator printed no URL: {line!r}"
            yield match.group(0)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def emulator_in_subprocess() -> Callable[..., AbstractContextManager[str]]:
    """Start ``replicate-home emulator`` in another process: ``with
    emulator_in_subprocess("--duration", "0.2") as url: ...``."""
    return _emulator_in_subprocess


class HostileServer:
    """``tests/hostile_server.py MODE`` running in another process: its URL and log."""

    def __init__(self, url: str) -> None:
        self.url = url

    def log(self) -> list[dict[str, Any]]:
        """Every request the server got: ``method``, ``path``, ``headers``."""
        answer: list[dict[str, Any]] = httpx.get(f"{self.url}/_log", timeout=10).json()
        return answer


@contextmanager
def _hostile_server(mode: str) -> Iterator[HostileServer]:
    command = [sys.executable, str(Path(__file__).with_name("hostile_server.py")), mode]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"http://\S+", line)
            assert match, f"the hostile server printed no URL: {line!r}"
            yield HostileServer(match.group(0))
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def hostile_server() -> Callable[[str], AbstractContextManager[HostileServer]]:
    """Start a hostile server (see ``tests/hostile_server.py``) in another process:
    ``with hostile_server("huge") as server: ...``."""
    return _hostile_server


# -- Hypothesis profiles (the property tests, tests/test_properties_*.py) ------------------
#
# ``default`` is quick, for local runs; ``ci`` (exported by .ci/run) tries more examples.
# Both keep failing examples in the local example database (.hypothesis/, git-ignored), so
# the next run replays them first, and print a ``@reproduce_failure`` blob with the
# falsifying example. No per-example deadline: the loop tests wait on real (tiny) timers.
# Choose one with HYPOTHESIS_PROFILE=ci, or pytest's --hypothesis-profile=ci.

settings.register_profile("default", max_examples=40, deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
