"""``python -m benchmarks``: run every benchmark and print its tables (Markdown).

``--quick`` runs each one small (well under a minute in all; the test suite does);
without it the full run takes several minutes and writes the detection-latency plot to
``docs/img/detection-latency.png``. ``--only`` picks benchmarks by name, ``--output``
also writes the tables to a file.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from . import (
    api_vs_official,
    cancellation,
    detection,
    fanout,
    poll_overhead,
    scale,
    storm,
    streaming,
    uploads,
    viewer,
)
from ._common import REPO_ROOT, Settings, Table, machine_lines

DEFAULT_PLOT = REPO_ROOT / "docs" / "img" / "detection-latency.png"

#: name -> (what it measures, how to run it)
BENCHMARKS: dict[str, tuple[str, Callable[[Settings, Path | None], list[Table]]]] = {
    "poll": ("per-poll overhead", lambda s, _: poll_overhead.run(s)),
    "detection": ("detection latency and polls", detection.run),
    "fanout": ("fan-out scale", lambda s, _: fanout.run(s)),
    "cancel": ("cancellation latency", lambda s, _: cancellation.run(s)),
    "api": ("the official API vs the official client", lambda s, _: api_vs_official.run(s)),
    "stream": ("streaming cost per event", lambda s, _: streaming.run(s)),
    "scale": (
        "a prompt set at scale under the rate limits",
        # Beside the detection plot, wherever that goes (docs/img/ on a full run).
        lambda s, plot: scale.run(s, None if plot is None else plot.with_name(scale.PLOT.name)),
    ),
    "uploads": ("a fan-out over one file", lambda s, _: uploads.run(s)),
    "viewer": ("the viewer's first page of a large run", lambda s, _: viewer.run(s)),
    "storm": ("recovery from a storm of 429s", lambda s, _: storm.run(s)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every benchmark, small")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help=f"where to save the detection-latency plot (default: {DEFAULT_PLOT} on a full "
        "run, none on a quick one)",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    settings = Settings(quick=args.quick)
    plot = args.plot if args.plot is not None else (None if args.quick else DEFAULT_PLOT)

    started = time.perf_counter()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"## Benchmark results ({'quick' if args.quick else 'full'} run, {when})",
        "",
        *machine_lines(),
        "",
    ]
    written = ["\n".join(header)]
    print(written[0], flush=True)
    failures = 0
    for name in names:
        title, run = BENCHMARKS[name]
        began = time.perf_counter()
        try:
            tables = run(settings, plot)
        except Exception:
            failures += 1
            text = f"ERROR in benchmark {name!r} ({title}):\n{traceback.format_exc()}"
            print(text, file=sys.stderr, flush=True)
            written.append(text)
            continue
        for table in tables:
            table.notes.append(f"Took {time.perf_counter() - began:.0f} s.")
            rendered = table.render()
            print(rendered, flush=True)
            written.append(rendered)
    footer = f"_All done in {time.perf_counter() - started:.0f} s; {failures} error(s)._"
    print(footer, flush=True)
    written.append(footer)
    if args.output is not None:
        args.output.write_text("\n".join(written) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
