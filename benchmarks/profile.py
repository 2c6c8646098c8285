"""Where the client's time goes: ``python -m benchmarks.profile CASE`` (pyinstrument).

The evidence behind docs/benchmarks.md's "ours or the transport's": each case runs one
benchmark scenario under pyinstrument (the emulator in its own process, as always), then
prints the sampled time of the client process by owner: our code (``replicate_home``),
the HTTP transport (httpx, httpcore, h11, aiohttp, httpx-aiohttp), httpx-sse, and the
event loop itself (anyio and the loop count for whichever of those called them); time
the loop spends waiting in ``select``/``epoll`` is left out. ``--tree``
also prints pyinstrument's call tree.

Cases: ``poll`` (one prediction polled back to back), ``fanout N`` (a fan-out of N), and
``api-stream`` / ``api-poll`` (ten predictions of 3 s on ``/v1``, text or image model).
The profiler slows everything down; compare shares, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
from typing import Any

import anyio

from ._common import EmulatorProcess, prompt_for

_IDLE = frozenset({"poll", "select", "control"})
OURS = "ours (replicate_home)"
SSE = "httpx-sse"
TRANSPORT = "transport (httpx, httpcore, h11, aiohttp)"
ANYIO = "anyio"
LOOP = "event loop (asyncio, trio, selectors)"
_OWNERS = (
    ("replicate_home", OURS),
    ("httpx_sse", SSE),
    ("httpx_aiohttp", TRANSPORT),
    ("aiohttp", TRANSPORT),
    ("httpcore", TRANSPORT),
    ("h11", TRANSPORT),
    ("httpx", TRANSPORT),
    ("anyio", ANYIO),
    ("asyncio", LOOP),
    ("trio", LOOP),
    ("selectors", LOOP),
)
_CODE = frozenset({OURS, SSE, TRANSPORT})
_RUNTIME = frozenset({ANYIO, LOOP})


def _owner(path: str) -> str | None:
    for marker, owner in _OWNERS:
        if f"/{marker}/" in path or path.startswith(f"{marker}/") or f"{marker}.py" in path:
            return owner
    return None


def by_owner(root: Any) -> dict[str, float]:
    """Self time of every sampled frame, by owner: the innermost library the frame is in,
    except that anyio and the event loop count for the code that called them (a cancel
    scope that httpcore opens is the transport's; one that we open is ours) and a
    built-in counts for its caller. Idle waits are left out."""
    totals: collections.Counter[str] = collections.Counter()

    def walk(frame: Any, owner: str) -> None:
        function = frame.function or ""
        path = frame.file_path_short or frame.file_path or ""
        if path.startswith("<built-in>") and function.split(".")[-1] in _IDLE:
            return  # waiting for the network (epoll, select, kqueue): not CPU
        mine = _owner(path) or owner
        if mine in _RUNTIME and owner in _CODE:
            mine = owner  # anyio or the event loop working for the code that called it
        totals[mine] += frame.time - sum(child.time for child in frame.children)
        for child in frame.children:
            walk(child, mine)

    walk(root, "other")
    return dict(totals)


def _scenario(case: str, count: int, url: str) -> tuple[Any, tuple[Any, ...]]:
    if case == "poll":
        from .poll_overhead import ours

        return ours("httpcore"), (url, "profile")
    if case == "fanout":
        from .fanout import _fan_out

        return _fan_out, (url, count, prompt_for(3.0, 0), "httpcore")
    from .api_vs_official import IMAGE, OURS, TEXT, _ours

    model = TEXT if case == "api-stream" else IMAGE
    return _ours, (url, model, [prompt_for(3.0, i) for i in range(count)], OURS)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("case", choices=["poll", "fanout", "api-stream", "api-poll"])
    parser.add_argument("count", type=int, nargs="?", default=10, help="predictions at once")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--tree", action="store_true", help="also print the call tree")
    args = parser.parse_args()
    from pyinstrument import Profiler

    with EmulatorProcess(duration=1.0, durations=[3.0], count=max(args.count, 1)) as emulator:
        function, arguments = _scenario(args.case, args.count, emulator.url)
        anyio.run(function, *arguments, backend=args.backend)  # warm-up: imports, caches
        profiler = Profiler(interval=0.0005)
        profiler.start()
        anyio.run(function, *arguments, backend=args.backend)
        profiler.stop()
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    assert root is not None
    totals = by_owner(root)
    busy = sum(totals.values())
    print(f"{args.case} ({args.count}, {args.backend}): {busy:.3f} s sampled, not idle")
    for owner, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {seconds / busy:6.1%}  {seconds:8.3f} s  {owner}")
    if args.tree:
        print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()
