"""Benchmark 9: recovery from a storm of 429s, and the Retry-After floor, as the service
sees them.

The emulator (in this process) enforces Replicate's published create limit (600 a
minute) and answers a run of creates with 429s: ``Retry-After: 1``, the body's
``retry_after`` 0.1 s (Replicate's problem details carry the field), so a client that
honours the finer wait draws them in about five seconds. One client with its default
budget sends N creates of that prompt. Measured at the emulator's clock: how many 429s
and over how long, how long after the storm's last 429 the create rate is back at
>= 90 % of the limit (over a sliding second), and the shortest gap between a 429 and the
next create (the floor: never under the wait asked for).

Target (the issue's): back at >= 90 % of the limit within 15 s of the storm.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from replicate_home import ReplicateAPI
from replicate_home.emulator import Emulator, Fault, Scenario

from ._common import TOKEN, Settings, Table

MODEL = "meta/meta-llama-3-8b-instruct"
LIMIT = 600  # creates a minute


def _fault() -> Fault:
    body = {"title": "Request was throttled", "status": 429, "retry_after": 0.1}
    return Fault(429, json.dumps(body), "application/problem+json", retry_after=1)


async def _storm(cells: int, faults: int) -> dict[str, Any]:
    emulator = Emulator(Scenario(duration=0.05), rate_limits=(LIMIT, LIMIT * 5))
    emulator.script("storm", Scenario(duration=0.05, submit_faults=[_fault()] * faults))
    async with (
        emulator.serve(),
        ReplicateAPI(TOKEN, base_url=emulator.base_url, timeout=300) as client,
    ):
        results = await client.compare([MODEL] * cells, prompt="storm")
    creates = [
        r for r in emulator.requests if r.method == "POST" and r.path.endswith("/predictions")
    ]
    throttled = [r.time for r in creates if r.status_code == 429]
    created = [r.time for r in creates if r.status_code == 201]
    end = throttled[faults - 1] if len(throttled) >= faults else max(throttled, default=0.0)
    back = next(
        (
            t - end
            for t in created
            if t > end and sum(1 for s in created if t - 1 < s <= t) >= 0.9 * LIMIT / 60
        ),
        float("inf"),
    )
    gaps = [
        min((later.time - r.time for later in creates[n + 1 :]), default=float("inf"))
        for n, r in enumerate(creates)
        if r.status_code == 429
    ]
    return {
        "throttled": len(throttled),
        "storm": (end - throttled[0]) if throttled else 0.0,
        "back": back,
        "floor": min(gaps, default=float("inf")),
        "failed": sum(1 for result in results if result.status != "succeeded"),
    }


def run(settings: Settings) -> list[Table]:
    cells, faults = settings.pick((400, 50), (60, 10))
    table = Table(
        f"A storm of {faults} 429s (Retry-After: 1, retry_after 0.1 s) amid {cells} creates "
        "under 600 creates a minute",
        [
            "run",
            "429s",
            "over",
            "back at >= 90 % of the limit after",
            "shortest 429 to next create",
            "failed (429 past the retries)",
            "target",
        ],
    )
    for number in range(1, settings.pick(3, 1) + 1):
        result = anyio.run(_storm, cells, faults)
        table.add(
            number,
            result["throttled"],
            f"{result['storm']:.1f} s",
            f"{result['back']:.1f} s",
            f"{result['floor']:.3f} s",
            result["failed"],
            "met" if result["back"] <= 15 else "MISSED",
        )
    table.notes = [
        "At the emulator's clock: 'back' is from the storm's last 429 to the first moment "
        "the creates of the last second reach 9; the floor is 0.1 s (the wait asked for).",
    ]
    return [table]
