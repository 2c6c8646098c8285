"""``replicate-home emulator``: serve the emulator until interrupted; and the check,
before any command starts one, that the emulator's extra is installed."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Literal

from ._common import UsageError

__all__ = ["check_emulator_installed", "listen_problem", "serve_emulator"]


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
    file_output: Literal["data", "url"] | None = None,
    deployments: Mapping[str, str] | None = None,
    tls: bool = False,
) -> None:
    from ..emulator import Emulator, Scenario
    from ..emulator._server import serve_forever

    emulator = Emulator(
        Scenario(duration=duration),
        token=token,
        rate_limits=rate_limits,
        file_output=file_output,
        deployments=deployments,
        tls=tls,
    )

    def ready(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)
        print(f"output streams served from {emulator.stream_url} (no token)", flush=True)
        if tls:
            bundle = emulator.ca_bundle
            print(
                f"trust its certificate authority: SSL_CERT_FILE={bundle} "
                f"(NODE_EXTRA_CA_CERTS={bundle} for Node.js)",
                flush=True,
            )

    await serve_forever(emulator, host, port, on_ready=ready, stream_port=stream_port)


def listen_problem(error: OSError, host: str, port: int, stream_port: int) -> UsageError | None:
    """What to tell a user whose ``--host``/``--port`` can't be listened on (a port in
    use, a privileged port, an address not of this machine), instead of the raw
    ``[Errno 98]``; ``None`` for any other error."""
    ports = f"port {port}" if not stream_port else f"port {port} or {stream_port}"
    if error.errno == errno.EADDRINUSE:
        return UsageError(
            f"{ports} on {host} is in use (another emulator?): pick another --port, "
            "or --port 0 for any free one"
        )
    if error.errno == errno.EACCES:
        return UsageError(
            f"not allowed to listen on {ports} of {host} (ports under 1024 need privileges): "
            "pick another --port, or --port 0 for any free one"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"{host} is not an address of this machine: pick another --host")
    return None
