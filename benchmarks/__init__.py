"""Benchmarks of replicate-home against baselines measured in the same run.

Run them with ``uv run python -m benchmarks`` (``--quick`` for a small run; see
``docs/benchmarks.md``). Every benchmark talks to the emulator running in a process of
its own on loopback, so that the client's CPU time is the client's alone:

- :mod:`benchmarks.poll_overhead`: client CPU and wall time per poll, ours against a
  bare httpx loop (and aiohttp, and httpx on the aiohttp transport);
- :mod:`benchmarks.detection`: latency after completion and polls per prediction for
  the spec's fixed 5 s schedule, a fixed 0.5 s one and our adaptive default;
- :mod:`benchmarks.fanout`: ``fan_out`` of 1 to 1000 predictions: wall time, CPU and
  memory per prediction;
- :mod:`benchmarks.cancellation`: from cancelling a caller to the call having returned;
- :mod:`benchmarks.api_vs_official`: ``ReplicateAPI`` against the official ``replicate``
  client on the emulator's ``/v1``.
"""
