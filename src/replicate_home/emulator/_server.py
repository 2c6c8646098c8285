"""Serving an ASGI app with hypercorn under whichever async backend is running.

The listening socket is bound here, before hypercorn starts, so the URL is known at once
(clients that connect early wait in the listen backlog). Hypercorn is then handed the
socket's file descriptor (``fd://``); from the moment it adopts it, hypercorn closes it,
otherwise :func:`serving` does: the descriptor is closed exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, cast

import anyio
from hypercorn.config import Config, Sockets
from hypercorn.typing import Framework
from starlette.types import ASGIApp

from ._tls import LocalAuthority

__all__ = ["Servable", "serve_forever", "serving"]

#: Seconds hypercorn gives open connections to finish once shutdown starts.
GRACEFUL_TIMEOUT = 0.5
#: Seconds :func:`serving` waits for hypercorn to stop before cancelling it outright.
STOP_TIMEOUT = GRACEFUL_TIMEOUT + 2.0
_BACKLOG = 1024

#: Hypercorn's error log. Only errors by default; configure this logger to see more.
logger = logging.getLogger("replicate_home.emulator.server")
if logger.level == logging.NOTSET:
    logger.setLevel(logging.ERROR)


class _Config(Config):
    """Hypercorn config that notes when hypercorn adopts the listening socket."""

    adopted_socket = False

    def create_sockets(self) -> Sockets:
        # From here on the socket object hypercorn wraps around the fd owns it.
        self.adopted_socket = True
        return super().create_sockets()


def _make_config(fd: int, tls: LocalAuthority | None) -> _Config:
    config = _Config()
    config.bind = [f"fd://{fd}"]
    if tls is not None:
        # With a certificate, hypercorn serves its binds over TLS.
        config.certfile = str(tls.cert_chain)
        config.keyfile = str(tls.key)
    config.accesslog = None
    config.errorlog = logger
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.backlog = _BACKLOG
    return config


async def _listen(host: str, port: int) -> socket.socket:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


async def _run_hypercorn(app: ASGIApp, config: Config, shutdown: anyio.Event) -> None:
    framework = cast(Framework, app)
    if _running_asyncio():
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(framework, config, shutdown_trigger=shutdown.wait, mode="asgi")
    else:
        from hypercorn.trio import serve as trio_serve

        await trio_serve(framework, config, shutdown_trigger=shutdown.wait, mode="asgi")


def _running_asyncio() -> bool:
    """Whether this task runs on asyncio; anyio's only other backend is trio.

    The standard library answers this, so the emulator needs no ``sniffio`` (which an
    asyncio-only install does not have: neither anyio nor httpx requires it).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@asynccontextmanager
async def serving(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, tls: LocalAuthority | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` for the duration of the block; yields the base URL
    (``https`` with ``tls``: the certificate that authority issued).

    On exit (normal, exception or cancellation) the server is shut down gracefully: idle
    keep-alive connections are closed, requests in progress get ``GRACEFUL_TIMEOUT``
    seconds; after ``STOP_TIMEOUT`` seconds hypercorn is cancelled. The body's exception
    propagates unchanged; a server failure is raised as ``RuntimeError``.
    """
    sock = await _listen(host, port)
    base_url = _base_url(sock, "http" if tls is None else "https")
    fd = sock.detach()
    config = _make_config(fd, tls)
    shutdown = anyio.Event()
    stopped = anyio.Event()
    # Shielded so that cancelling the body does not cancel hypercorn mid-flight: it is
    # always asked to shut down gracefully first, and only cancelled after STOP_TIMEOUT.
    server_scope = anyio.CancelScope(shield=True)
    server_errors: list[Exception] = []
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                with server_scope:
                    try:
                        await _run_hypercorn(app, config, shutdown)
                    except Exception as exc:
                        server_errors.append(exc)
                        tg.cancel_scope.cancel()  # stop the body: the server is gone
                    finally:
                        stopped.set()

            tg.start_soon(run)
            try:
                yield base_url
            except BaseException as exc:
                # Kept out of the task group so that it propagates as itself, not wrapped
                # in an exception group.
                body_error = exc
            finally:
                shutdown.set()
                with anyio.move_on_after(STOP_TIMEOUT, shield=True):
                    await stopped.wait()
                server_scope.cancel()
    finally:
        if not config.adopted_socket:
            socket.socket(fileno=fd).close()
    if server_errors:
        raise RuntimeError("the emulator's HTTP server failed") from server_errors[0]
    if body_error is not None:
        raise body_error


class Served(Protocol):
    """Something served: it knows its URL."""

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (or ``https://``) it is served at."""
        ...


class Servable(Protocol):
    """Something that serves itself for the length of an ``async with`` (an
    :class:`Emulator`)."""

    def serve(
        self, host: str, port: int, *, stream_port: int
    ) -> AbstractAsyncContextManager[Served]:
        """Serve on ``host:port`` (and ``host:stream_port``) until the block exits."""
        ...


async def serve_forever(
    emulator: Servable,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    *,
    stream_port: int = 0,
) -> None:
    """Serve ``emulator`` until cancelled; ``on_ready(base_url)`` is called once listening."""
    async with emulator.serve(host, port, stream_port=stream_port) as emu:
        if on_ready is not None:
            on_ready(emu.base_url)
        await anyio.sleep_forever()
