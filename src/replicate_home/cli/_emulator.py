"""``replicate-home emulator``: serve the emulator until interrupted; and the check,
before any command starts one, that the emulator's extra is installed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ._common import UsageError

__all__ = ["check_emulator_installed", "serve_emulator"]


def check_emulator_installed() -> None:
    """A :class:`UsageError` saying how to install the emulator when its extra is missing."""
    try:
        import replicate_home.emulator._server  # noqa: F401  # hypercorn and starlette
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in ("hypercorn", "starlette"):
            raise UsageError(
                "the emulator is not installed: pip install 'replicate-home[emulator]' "
                "(or name a service: --service, --base-url)"
            ) from None
        raise UsageError(f"the emulator cannot start, a module is missing: {error}") from None


async def serve_emulator(
    host: str,
    port: int,
    duration: float,
    token: str | None,
    *,
    stream_port: int = 0,
    rate_limits: tuple[int, int] | None = None,
    file_output: Literal["data", "url"] = "data",
    deployments: Mapping[str, str] | None = None,
) -> None:
    from ..emulator import Emulator, Scenario
    from ..emulator._server import serve_forever

    emulator = Emulator(
        Scenario(duration=duration),
        token=token,
        rate_limits=rate_limits,
        file_output=file_output,
        deployments=deployments,
    )

    def ready(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)
        print(f"output streams served from {emulator.stream_url} (no token)", flush=True)

    await serve_forever(emulator, host, port, on_ready=ready, stream_port=stream_port)
