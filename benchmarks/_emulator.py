"""The benchmarks' emulator, in a process of its own: ``python -m benchmarks._emulator``.

Like ``replicate-home emulator --port 0``, plus scripted prompts: ``prompt_for(d, i)``
takes ``d`` seconds for each ``d`` of ``--durations`` and ``i`` below ``--count``, so one
emulator serves every duration of a benchmark. It keeps no request history (less work per
request) and forgets nothing during a run. Its listing pages hold 100 predictions, as
Replicate's do: the clients' bulk following reads the pages a real account's would.
"""

from __future__ import annotations

import argparse

import anyio

from replicate_home.emulator import Emulator, Scenario

from ._common import prompt_for


def build(
    duration: float,
    durations: list[float],
    count: int,
    rate_limits: tuple[int, int] | None = None,
) -> Emulator:
    emulator = Emulator(
        Scenario(duration=duration),
        history=0,
        max_predictions=1_000_000,
        expire_after=3600.0,
        rate_limits=rate_limits,
    )
    for scripted in durations:
        scenario = Scenario(duration=scripted)
        for index in range(count):
            emulator.script(prompt_for(scripted, index), scenario)
    return emulator


async def serve(emulator: Emulator) -> None:
    async with emulator.serve("127.0.0.1", 0) as running:
        print(f"emulator listening on {running.base_url}", flush=True)
        await anyio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._emulator")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--durations", default="", help="comma-separated seconds")
    parser.add_argument("--count", type=int, default=0, help="scripted prompts per duration")
    parser.add_argument("--rate-limits", default="", help="CREATES,OTHERS per minute (/v1)")
    args = parser.parse_args()
    durations = [float(part) for part in args.durations.split(",") if part]
    limits = None
    if args.rate_limits:
        creates, others = (int(part) for part in args.rate_limits.split(","))
        limits = (creates, others)
    anyio.run(serve, build(args.duration, durations, args.count, limits))


if __name__ == "__main__":
    main()
