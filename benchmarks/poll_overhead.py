"""Benchmark 1: what one poll costs the client, ours against the floor.

One prediction of ``T`` seconds is created, then polled back to back until it is done
(our client with a fixed poll interval of a microsecond, so that it never really
sleeps), and the client's CPU time and wall time are divided by the polls sent. The floor
is a bare ``httpx.AsyncClient`` doing the same thing by hand: the same create, then
``GET`` + ``json()`` until the status is terminal, with the same client settings
(timeouts, pool, headers). Each configuration runs in a fresh event loop and a fresh
HTTP client; the configurations take turns, round after round, so that a noisy moment of
the machine spreads over all of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from replicate_home import ReplicateHome
from replicate_home._catalog import MODEL_VERSIONS
from replicate_home._client import HTTP_LIMITS, HTTP_TIMEOUT
from replicate_home._home import BROWSER_HEADERS

from ._common import (
    EmulatorProcess,
    Settings,
    Summary,
    Table,
    fmt_ratio,
    quiet_gc,
    summarize,
)

MODEL = "google-deepmind/gemma-2b-it"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
#: Our loop's poll interval: positive (as the client requires) but never really waited.
NO_WAIT = 1e-6


@dataclass(frozen=True)
class Trial:
    cpu: float
    wall: float
    polls: int


Loop = Callable[[str, str], Awaitable[Trial]]


def _new_http(transport: str) -> httpx.AsyncClient:
    """An httpx client with the settings of the one our client opens for itself."""
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=AiohttpTransport(limits=HTTP_LIMITS)
        )
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS)


def _create_body(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "version": MODEL_VERSIONS[MODEL], "input": {"prompt": prompt}}


def httpx_floor(transport: str, wait: bool = False) -> Loop:
    """Create, then GET + json() until done, on a bare httpx client. With ``wait``, it
    also yields to the event loop before each poll (``anyio.sleep(0)``): the least any
    loop that waits between polls pays, and what ours pays here."""

    async def loop(url: str, prompt: str) -> Trial:
        async with _new_http(transport) as http:
            cpu, wall = time.process_time(), time.perf_counter()
            created = await http.post(
                f"{url}/api/prediction", json=_create_body(prompt), headers=BROWSER_HEADERS
            )
            poll_url = f"{url}/api/poll?id={created.json()['id']}"
            polls = 0
            while True:
                if wait:
                    await anyio.sleep(0)  # noqa: ASYNC115  # what ours does: sleep_until(now)
                answer = await http.get(poll_url, headers=BROWSER_HEADERS)
                polls += 1
                if answer.json()["status"] in TERMINAL:
                    break
            return Trial(time.process_time() - cpu, time.perf_counter() - wall, polls)

    return loop


def ours(transport: str) -> Loop:
    """``ReplicateHome.predict`` with a poll interval of (almost) nothing: on the HTTP
    client it opens itself (the default), or on an httpx client given with
    ``http_client=`` (for the aiohttp transport)."""

    async def loop(url: str, prompt: str) -> Trial:
        async with AsyncExitStack() as stack:
            http = None
            if transport != "httpcore":
                http = await stack.enter_async_context(_new_http(transport))
            client = await stack.enter_async_context(
                ReplicateHome(url, poll_interval=NO_WAIT, http_client=http)
            )
            cpu, wall = time.process_time(), time.perf_counter()
            prediction = await client.predict(MODEL, prompt=prompt)
            return Trial(time.process_time() - cpu, time.perf_counter() - wall, prediction.polls)

    return loop


async def aiohttp_reference(url: str, prompt: str) -> Trial:
    """The same loop on plain aiohttp (asyncio only)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        cpu, wall = time.process_time(), time.perf_counter()
        async with session.post(
            f"{url}/api/prediction", json=_create_body(prompt), headers=BROWSER_HEADERS
        ) as created:
            prediction_id = (await created.json())["id"]
        poll_url = f"{url}/api/poll?id={prediction_id}"
        polls = 0
        while True:
            async with session.get(poll_url, headers=BROWSER_HEADERS) as answer:
                status = (await answer.json())["status"]
            polls += 1
            if status in TERMINAL:
                break
        return Trial(time.process_time() - cpu, time.perf_counter() - wall, polls)


@dataclass(frozen=True)
class Config:
    name: str
    backend: str
    transport: str  # "httpcore" (httpx's default), "aiohttp" (httpx-aiohttp), "-" (none)
    loop: Loop
    floor: tuple[str, str, str] | None  # the floor row this one is compared with

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.backend, self.transport)


FLOOR = "httpx floor"
WAITING = "httpx floor + sleep(0)"
HTTPX_FLOOR_ASYNCIO = (FLOOR, "asyncio", "httpcore")
CONFIGS = [
    Config(FLOOR, "asyncio", "httpcore", httpx_floor("httpcore"), None),
    Config(WAITING, "asyncio", "httpcore", httpx_floor("httpcore", True), HTTPX_FLOOR_ASYNCIO),
    Config("ours", "asyncio", "httpcore", ours("httpcore"), HTTPX_FLOOR_ASYNCIO),
    Config(FLOOR, "trio", "httpcore", httpx_floor("httpcore"), None),
    Config(WAITING, "trio", "httpcore", httpx_floor("httpcore", True), (FLOOR, "trio", "httpcore")),
    Config("ours", "trio", "httpcore", ours("httpcore"), (FLOOR, "trio", "httpcore")),
    Config("aiohttp (reference)", "asyncio", "-", aiohttp_reference, HTTPX_FLOOR_ASYNCIO),
    Config(FLOOR, "asyncio", "aiohttp", httpx_floor("aiohttp"), None),
    Config("ours", "asyncio", "aiohttp", ours("aiohttp"), (FLOOR, "asyncio", "aiohttp")),
]


def run(settings: Settings) -> list[Table]:
    duration = settings.pick(1.0, 0.2)
    rounds = settings.pick(7, 2)
    samples: dict[tuple[str, str, str], list[Trial]] = {c.key: [] for c in CONFIGS}
    with EmulatorProcess(duration=duration) as emulator:
        prompt = "per-poll overhead"  # unscripted: the emulator's default duration
        for _ in range(rounds):
            for config in CONFIGS:
                with quiet_gc():
                    trial = anyio.run(config.loop, emulator.url, prompt, backend=config.backend)
                samples[config.key].append(trial)

    def per_poll(key: tuple[str, str, str], what: str) -> Summary:
        return summarize([getattr(t, what) / t.polls for t in samples[key]])

    table = Table(
        "Per-poll overhead: client CPU and wall time per poll",
        [
            "loop",
            "backend",
            "transport",
            "polls/run",
            "CPU µs/poll",
            "wall µs/poll",
            "CPU vs floor",
            "wall vs floor",
            "CPU vs httpx floor (asyncio)",
        ],
    )
    for config in CONFIGS:
        cpu = per_poll(config.key, "cpu")
        wall = per_poll(config.key, "wall")
        polls = summarize([float(t.polls) for t in samples[config.key]])
        if config.floor is None:
            cpu_ratio = wall_ratio = "1.00x (floor)"
        else:
            cpu_ratio = fmt_ratio(cpu.median, per_poll(config.floor, "cpu").median)
            wall_ratio = fmt_ratio(wall.median, per_poll(config.floor, "wall").median)
        table.add(
            config.name,
            config.backend,
            config.transport,
            f"{polls.median:.0f}",
            _us(cpu),
            _us(wall),
            cpu_ratio,
            wall_ratio,
            fmt_ratio(cpu.median, per_poll(HTTPX_FLOOR_ASYNCIO, "cpu").median),
        )
    table.notes.append(
        f"{rounds} runs per row, each one prediction of {duration:g} s polled back to back; "
        "median (min-max) over runs. 'vs floor': ratio of medians against the bare httpx "
        "loop on the same backend and transport, measured in the same run."
    )
    table.notes.append(
        "Transports: 'httpcore' is httpx's default; 'aiohttp' is httpx-aiohttp's "
        "AiohttpTransport under httpx.AsyncClient (asyncio only)."
    )
    table.notes.append(
        "'httpx floor + sleep(0)': the floor yielding to the event loop before each poll, as "
        "any loop that waits between polls must (ours sleeps until its next poll time, "
        "which this benchmark sets to now); not a target, a reference."
    )
    table.notes.append("Target: ours ≤ 1.10x the floor (CPU per poll).")
    return [table]


def _us(summary: Summary) -> str:
    return f"{summary.median * 1e6:.0f} ({summary.low * 1e6:.0f}-{summary.high * 1e6:.0f})"
