"""Benchmark 8: a fan-out over one file, uploaded once rather than once per model.

``N`` models (10; quick: 4) each take the same image of ``S`` bytes (4 MiB; quick:
1 MiB), against the emulator in a process of its own (its upscaler, whose output proves
the bytes it got), three ways, on asyncio and trio:

- ``upload, shared`` (this library's default): ``compare(models, input={"image":
  path})``: the image is uploaded once and every model gets its URL;
- ``upload, per model`` (the baseline a client without sharing pays): one ``predict``
  per model at once, each with an image of its own (the same size, different bytes, so
  nothing can be shared): ``N`` uploads;
- ``data``: ``compare(..., file_encoding="data")``: each create carries the image as a
  ``data:`` URI, a third larger than the file.

Measured: uploads (the emulator's count), file bytes sent (uploads times the file's
size, or creates times the ``data:`` URI's length) and wall time (median of the runs),
each as a ratio to the per-model baseline. Target: ``upload, shared`` sends one upload
(1/N of the baseline's file bytes).
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from pathlib import Path

import anyio

from replicate_home import ReplicateAPI
from replicate_home.emulator import png_text

from ._common import TOKEN, EmulatorProcess, Settings, Table, fmt_num, summarize

MODEL = "replicate/upscaler"


async def _shared(url: str, models: int, image: Path, size: int, mode: str) -> tuple[float, int]:
    """Wall seconds of one compare over ``image``, and how many models got it intact."""
    async with ReplicateAPI(TOKEN, base_url=url, timeout=120) as client:
        began = time.perf_counter()
        results = await client.compare(
            [MODEL] * models,
            input={"image": image},
            file_encoding="data" if mode == "data" else "upload",
        )
        wall = time.perf_counter() - began
        intact = 0
        for result in results:
            if result.prediction is not None and result.ok:
                png = await result.prediction.files[0].read()
                intact += int(png_text(png)["input-length"] == str(size))
    return wall, intact


async def _per_model(url: str, images: list[bytes]) -> tuple[float, int]:
    """Wall seconds of one predict per image, all at once (nothing to share)."""
    intact = 0
    async with ReplicateAPI(TOKEN, base_url=url, timeout=120) as client:

        async def one(image: bytes) -> None:
            nonlocal intact
            prediction = await client.predict(MODEL, input={"image": image})
            png = await prediction.files[0].read()
            intact += int(png_text(png)["input-length"] == str(len(image)))

        began = time.perf_counter()
        async with anyio.create_task_group() as group:
            for image in images:
                group.start_soon(one, image)
        wall = time.perf_counter() - began
    return wall, intact


def run(settings: Settings) -> list[Table]:
    models: int = settings.pick(10, 4)
    size: int = settings.pick(4 * 1024 * 1024, 1024 * 1024)
    reps: int = settings.pick(5, 1)
    table = Table(
        "A fan-out over one file",
        [
            "backend",
            "way",
            "uploads",
            "file MB sent",
            "wall ms",
            "file bytes vs per model",
            "wall vs per model",
            "intact",
        ],
    )
    data_uri_length = len("data:image/png;base64,") + len(base64.b64encode(bytes(size)))
    with EmulatorProcess(duration=0.2) as emulator, tempfile.TemporaryDirectory() as folder:
        for backend in ("asyncio", "trio"):
            walls: dict[str, list[float]] = {"per": [], "shared": [], "data": []}
            uploads: dict[str, int] = {}
            intact: dict[str, int] = {}
            for rep in range(reps):
                images = [os.urandom(size) for _ in range(models)]
                path = Path(folder) / f"image-{backend}-{rep}.png"
                path.write_bytes(os.urandom(size))  # new bytes: no earlier upload to reuse
                for way in ("per", "shared", "data"):
                    before = emulator.stats().get("uploads", 0)
                    if way == "per":
                        wall, ok = anyio.run(_per_model, emulator.url, images, backend=backend)
                    else:
                        wall, ok = anyio.run(
                            _shared, emulator.url, models, path, size, way, backend=backend
                        )
                    walls[way].append(wall)
                    uploads[way] = emulator.stats().get("uploads", 0) - before
                    intact[way] = intact.get(way, 0) + ok
            sent = {
                "per": uploads["per"] * size,
                "shared": uploads["shared"] * size,
                "data": models * data_uri_length,
            }
            baseline = summarize(walls["per"]).median
            names = {"per": "upload, per model", "shared": "upload, shared", "data": "data"}
            for way in ("per", "shared", "data"):
                wall = summarize([w * 1000 for w in walls[way]])
                table.add(
                    backend,
                    names[way],
                    uploads[way],
                    f"{sent[way] / 1e6:.1f}",
                    fmt_num(wall, 0),
                    f"{sent[way] / sent['per']:.2f}x",
                    f"{wall.median / 1000 / baseline:.2f}x",
                    f"{intact[way]}/{models * reps}",
                )
    table.notes.append(
        f"{models} models over one {size / 1024 / 1024:g} MiB image, {reps} run(s) per way "
        "and backend (wall: median (min-max) of one whole fan-out, the emulator taking "
        "0.2 s a prediction); uploads as the emulator counted them in the last run. "
        "Target: one upload for the shared fan-out, 1/N of the per-model file bytes."
    )
    return [table]
