"""Running one prediction: to its end, or following its output as it grows."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from ._engine import Engine, StatusCallback
from ._exceptions import OutputRewritten
from ._models import ImageResponse, Prediction
from ._output import ImageScan, TextStream, image_urls, non_text_output, text_chunks
from ._service import PredictionCall

__all__ = ["Output", "follow", "run_to_end", "stream_chunks"]

#: What ``generate()`` yields: a text chunk, or every image of a prediction at once.
Output = str | ImageResponse


async def run_to_end(
    engine: Engine,
    call: PredictionCall,
    *,
    timeout: float | None = None,
    on_status: StatusCallback | None = None,
    wait: float | None = None,
) -> Prediction:
    """Drive one prediction to its terminal state and return it.

    ``wait`` lets the service answer the create with the result (``Prefer: wait``).
    """
    last: Prediction | None = None
    states = engine.run(call, timeout=timeout, on_status=on_status, wait=wait)
    async with aclosing(states):
        async for last in states:  # noqa: B007  # the last state is the result
            pass
    assert last is not None  # run() yields at least once or raises
    return last


async def follow(
    engine: Engine,
    call: PredictionCall,
    *,
    timeout: float | None = None,
    on_status: StatusCallback | None = None,
) -> AsyncGenerator[tuple[Prediction, list[Output]], None]:
    """Yield each state of one prediction with the output it newly made available:
    text chunks as the output grows, or one :class:`ImageResponse` once it succeeded."""
    text, images = TextStream(), ImageScan()
    async with aclosing(engine.run(call, timeout=timeout, on_status=on_status)) as states:
        async for prediction in states:
            yield prediction, _new_output(call, prediction, text, images)


def _new_output(
    call: PredictionCall, prediction: Prediction, text: TextStream, images: ImageScan
) -> list[Output]:
    """What ``prediction`` adds to the output already yielded. Its cost does not grow
    with the output before it while an event stream is read (see :class:`TextStream`)."""
    final = prediction.status == "succeeded"
    if call.kind == "image":
        return [_images(call, prediction)] if final else []
    if not text.has_delivered and images(prediction.output):
        # Image files from a model not known to make images: one ImageResponse at the
        # end, never their URLs as text.
        return [_images(call, prediction)] if final else []
    if prediction.streamed:
        text.fold_line_endings()
    chunks = text_chunks(prediction.output)
    if chunks is None:  # not text: shown once, as JSON, when it is final
        return [non_text_output(prediction.output)] if final else []
    new = text.advance(chunks, final=final)
    if new is None:
        raise OutputRewritten(prediction.id)
    return list(new)


def _images(call: PredictionCall, prediction: Prediction) -> ImageResponse:
    """The prediction's images; their files download as its own do."""
    response = ImageResponse(image_urls(prediction.output), call.prompt or "")
    response._downloads = prediction._downloads
    return response


async def stream_chunks(
    engine: Engine,
    call: PredictionCall,
    *,
    timeout: float | None = None,
    on_status: StatusCallback | None = None,
) -> AsyncGenerator[Output, None]:
    """Yield a prediction's output as text chunks or one :class:`ImageResponse`."""
    states = follow(engine, call, timeout=timeout, on_status=on_status)
    async with aclosing(states):
        async for _prediction, outputs in states:
            for output in outputs:
                yield output
