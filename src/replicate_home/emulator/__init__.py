"""A faithful loopback emulator of the Replicate services, for tests, benchmarks and demos.

:class:`Emulator` is a real HTTP server (Starlette app served by hypercorn) that runs
inside your event loop, under asyncio or trio alike, and simulates predictions: a create
answers ``starting``, polls see ``processing`` with output growing over time, then a
terminal status. :class:`Scenario` scripts how predictions with a given prompt behave
(timing, outcome, output, content type, :class:`Fault` answers to creates and polls), and
the emulator records what it was asked (:meth:`Emulator.stats`, :attr:`Emulator.requests`,
:meth:`Emulator.wait_for`).

The same server answers the homepage service's routes (``/api/...``) and Replicate's HTTP
API (``/v1/...``: creates by model or version, ``Prefer: wait``, ``Cancel-After``, cancel,
listing, models and versions, ``Bearer`` and ``Token`` auth, optional rate limits,
deployments, community models, signed webhook deliveries to loopback receivers), over
the same predictions, with server-sent output streams on a second origin
(:attr:`Emulator.stream_url`) as the real service serves them; the official
``replicate`` client works against it with
``replicate.Client(api_token=..., base_url=emu.base_url)``.

Example (a client retries a scripted 503, then polls to the end)::

    import anyio

    from replicate_home import ReplicateHome
    from replicate_home.emulator import Emulator, Fault, Scenario


    async def main() -> None:
        emulator = Emulator(Scenario(duration=0.2))
        emulator.script("flaky", Scenario(duration=0.2, poll_faults=[Fault(503)]))
        async with emulator.serve() as emu, ReplicateHome(emu.base_url) as client:
            prediction = await client.predict("gemma-2b", prompt="flaky")
            print(prediction.status, prediction.polls, emu.stats())


    anyio.run(main)  # or anyio.run(main, backend="trio")
"""

from contextlib import AbstractAsyncContextManager

from starlette.types import ASGIApp

from ._app import Emulator
from ._catalogue import FILE_MODELS
from ._file_models import transcription_text, video_sha256
from ._judge_models import JUDGE_MODELS, judge_score
from ._png import png_text
from ._recording import EmulatorStats, RequestRecord
from ._scenarios import Fault, Scenario
from ._schemas import DEFAULT_VIDEO_BYTES
from ._webhooks import WebhookDelivery

__all__ = [
    "DEFAULT_VIDEO_BYTES",
    "FILE_MODELS",
    "JUDGE_MODELS",
    "Emulator",
    "EmulatorStats",
    "Fault",
    "RequestRecord",
    "Scenario",
    "WebhookDelivery",
    "judge_score",
    "png_text",
    "serve_asgi",
    "transcription_text",
    "video_sha256",
]


def serve_asgi(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0
) -> AbstractAsyncContextManager[str]:
    """Serve any ASGI app (your web app, your webhook receiver) the way the emulator is
    served, for the length of an ``async with``, under asyncio or trio; it yields the
    base URL (``http://HOST:PORT``, port 0: any free port). Handy to receive the
    emulator's webhook deliveries in a test."""
    from ._server import serving

    return serving(app, host, port)
