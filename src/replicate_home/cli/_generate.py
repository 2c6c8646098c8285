"""``replicate-home generate``: one prediction, its output printed as it arrives (an
image model's progress drawn on a terminal's stderr), saved with ``--save``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from .._client import BaseClient
from .._fanout import Chunk, Image, Progress
from .._models import Deployment, ImageResponse
from .._run import Output
from ._common import (
    EXIT_OK,
    Interrupt,
    Plan,
    is_terminal,
    open_client,
    shown_url,
    webhook_options,
)
from ._save import model_stem, save_files, save_text

__all__ = ["generate_command"]


async def generate_command(plan: Plan, interrupt: Interrupt) -> int:
    (model,) = plan.models
    out, save = plan.out, plan.args.save
    stem = model_stem(str(model))
    text: list[str] = []
    saved_files = False

    async def show(chunk: Output) -> None:
        nonlocal saved_files
        if isinstance(chunk, ImageResponse):
            # A person gets data: URIs in a few words, a script (a pipe) whole.
            shown = shown_url if is_terminal(sys.stdout) else str
            for url in chunk.images:
                out.write(shown(url) + "\n")
            if save is not None:
                out.end_line()
                await save_files(chunk.files, save, stem)
                saved_files = True
        else:
            out.write(chunk)
            if save is not None:
                text.append(chunk)

    try:
        with interrupt.scope:
            async with open_client(plan) as client:
                if _shows_progress(client, plan, model):
                    await _generate_with_progress(client, plan, model, show)
                else:
                    chunks = client.generate(
                        model, prompt=plan.args.prompt, input=plan.inputs, **webhook_options(plan)
                    )
                    async with aclosing(chunks):
                        async for chunk in chunks:
                            await show(chunk)
                if save is not None and not saved_files:
                    out.end_line()
                    await save_text("".join(text), save, stem)
    finally:
        out.end_line()
    return EXIT_OK


def _shows_progress(client: BaseClient, plan: Plan, model: str | Deployment) -> bool:
    """Whether ``generate`` draws an image model's progress: on a terminal's stderr."""
    if not is_terminal(sys.stderr):
        return False
    return client._service.prepare(model, None, plan.args.prompt, plan.inputs).kind == "image"


async def _generate_with_progress(
    client: BaseClient,
    plan: Plan,
    model: str | Deployment,
    show: Callable[[Output], Awaitable[None]],
) -> None:
    """``generate`` for an image model, with the progress it reports in its logs drawn
    on stderr (one line, redrawn) while it runs. A fan-out of one, for its ``Progress``
    events; ``fail_fast`` raises a failure as ``generate`` would."""
    drawn = False
    events = client.fan_out(
        [model],
        prompt=plan.args.prompt,
        input=plan.inputs,
        progress=True,
        fail_fast=True,
        **webhook_options(plan),
    )
    try:
        async with events as stream:
            async for event in stream:
                if isinstance(event, Progress) and event.prediction.progress is not None:
                    progress = event.prediction.progress
                    sys.stderr.write(
                        f"\r{progress.percentage:4.0%} {progress.current}/{progress.total}"
                    )
                    sys.stderr.flush()
                    drawn = True
                elif isinstance(event, (Chunk, Image)):
                    if drawn:
                        sys.stderr.write("\r\x1b[K")  # the progress line gives way
                        drawn = False
                    await show(event.text if isinstance(event, Chunk) else event.image)
    finally:
        if drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
