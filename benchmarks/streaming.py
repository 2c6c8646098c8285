"""Benchmark 6: the cost of following a long event stream, per event.

One prediction streams ``N`` ``output`` events (1000, 4000, 16000: a long LLM answer is
thousands of tokens, one event each) from a small server in a process of its own
(``benchmarks._stream_server``), which sends them all at once. The same client reads the
same stream two ways, taking turns: ``generate()``, which yields every chunk as it
arrives, and ``predict()``, which only keeps the last state: the floor, since both read
and parse the same events. Client CPU (``time.process_time``) per event is the measure.

Targets: ``generate()`` within 1.5x of ``predict()`` at every size, and its cost per
event flat (at the largest size within 1.5x of the smallest), i.e. linear in the length
of the output, not quadratic.
"""

from __future__ import annotations

import time

import anyio

from replicate_home import ReplicateAPI

from ._common import TOKEN, EmulatorProcess, Settings, Table, fmt_num, quiet_gc, summarize

MODEL = "meta/meta-llama-3-8b-instruct"
#: generate() vs predict(), and the largest size's cost per event vs the smallest's.
TARGET = 1.5


async def _read(url: str, how: str, count: int) -> float:
    """Client CPU seconds to read one stream of ``count`` events with ``how``."""
    async with ReplicateAPI(TOKEN, base_url=url, wait=None, timeout=600) as client:
        with quiet_gc():
            began = time.process_time()
            if how == "generate":
                seen = 0
                async for _chunk in client.generate(MODEL, prompt=f"events={count}"):
                    seen += 1
            else:
                prediction = await client.predict(MODEL, prompt=f"events={count}")
                seen = len(prediction.output)
            spent = time.process_time() - began
    if seen != count:
        raise RuntimeError(f"{how} read {seen} chunks of {count}")
    return spent


def run(settings: Settings) -> list[Table]:
    sizes: list[int] = settings.pick([1000, 4000, 16000], [250, 1000])
    reps: int = settings.pick(5, 1)
    table = Table(
        "Streaming cost per event",
        [
            "backend",
            "events",
            "generate CPU µs/event",
            "predict CPU µs/event",
            "generate vs predict",
            "generate per event vs smallest",
            "target met",
        ],
    )
    with EmulatorProcess(module="benchmarks._stream_server") as server:
        for backend in ("asyncio", "trio"):
            smallest: float | None = None
            for count in sizes:
                per_event: dict[str, list[float]] = {"generate": [], "predict": []}
                for _ in range(reps):
                    for how in ("generate", "predict"):
                        spent = anyio.run(_read, server.url, how, count, backend=backend)
                        per_event[how].append(spent / count * 1e6)
                ours, floor = summarize(per_event["generate"]), summarize(per_event["predict"])
                smallest = ours.median if smallest is None else smallest
                ratio = ours.median / floor.median
                growth = ours.median / smallest
                met = ratio <= TARGET and growth <= TARGET
                table.add(
                    backend,
                    count,
                    fmt_num(ours, 1),
                    fmt_num(floor, 1),
                    f"{ratio:.2f}x",
                    f"{growth:.2f}x",
                    "met" if met else "MISSED",
                )
    table.notes.append(
        f"{reps} run(s) per cell, generate() and predict() taking turns on the same "
        "stream; median (min-max) client CPU per event. Target: generate() within "
        f"{TARGET}x of predict() at every size, and its cost per event at most {TARGET}x "
        "that of the smallest size (flat: linear time)."
    )
    return [table]
