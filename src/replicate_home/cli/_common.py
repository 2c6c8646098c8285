"""What several commands of the command line share: the exit statuses and the errors
that set them, the checked plan a command runs, Ctrl-C as a cancellation, the client of
the plan's service, and argument types. No command imports another through here: each
imports this module, and the entry point (``_main``) imports the commands."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

import anyio
import httpx

from .._client import BaseClient
from .._models import Deployment
from .._provider import ReplicateHome
from .._replicate_api import ReplicateAPI
from ..comparisons._prompts import PromptRow

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "CommandError",
    "Interrupt",
    "LineTracker",
    "Plan",
    "Target",
    "UsageError",
    "add_api_options",
    "format_table",
    "is_terminal",
    "make_client",
    "one_line",
    "open_client",
    "plain",
    "positive_float",
    "positive_int",
    "shown_url",
    "webhook_options",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Seconds a prediction may take, when ``--timeout`` is not given.
DEFAULT_TIMEOUT = 150.0


class CommandError(Exception):
    """An error to print as one line before exiting with status 1."""


class UsageError(CommandError):
    """Bad arguments, missing configuration or a missing extra: exit 2."""


# -- argument types: a bad value is argparse's usage error (exit 2) before anything starts


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

#: ``--max-file-bytes`` unless given: the comparisons' ``DEFAULT_MAX_FILE_BYTES``
#: (written here so the command line imports the comparisons only when it runs one).
DEFAULT_FILE_CAP = 1024**3


def byte_size(text: str) -> int | None:
    """A size in bytes (``512``, ``64K``, ``100M``, ``2G``: binary units), or ``none``
    (no limit: ``None``)."""
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    if cleaned == "none":
        return None
    unit = cleaned[-1:] if cleaned[-1:] in _SIZE_UNITS else ""
    number = cleaned[: len(cleaned) - len(unit)]
    try:
        value = int(number) * _SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size (e.g. 500M, 2G, none): {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, not {text}")
    return value


def add_api_options(action: argparse.ArgumentParser) -> None:
    """The options of a command that runs on the official API only (``predictions``,
    ``trainings``, ``deployments``, ``collections`` ...): ``--json``, where it runs,
    its deadline, the event loop, ``-v``."""
    action.add_argument("--json", action="store_true", help="print JSON")
    where = action.add_mutually_exclusive_group()
    where.add_argument("--base-url", help="the API's URL (default: $REPLICATE_BASE_URL)")
    where.add_argument(
        "--emulator", action="store_true", help="run on an emulator started in this process"
    )
    action.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds (default: %(default)g)",
    )
    action.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop"
    )
    action.add_argument("-v", "--verbose", action="store_true", help="log requests")
    action.set_defaults(service="api", poll_interval=None, inputs=[])


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of text as aligned columns (the first row is the header)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def plain(value: Any) -> Any:
    """A record (a frozen dataclass of the library) as plain JSON data: its public
    fields, timestamps in ISO 8601."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if f.name[0] != "_"}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# -- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The service a command runs on; ``base_url`` ``None`` is an emulator started in
    this process. ``notice`` is said on stderr before anything runs."""

    service: str
    base_url: str | None
    token: str | None = field(default=None, repr=False)
    notice: str | None = None


@dataclass(frozen=True)
class Plan:
    """A command, checked and resolved: what ``_main.run`` needs and nothing to validate."""

    args: argparse.Namespace
    target: Target
    models: list[str | Deployment]
    inputs: dict[str, Any] | None
    #: ``compare`` with a prompt set (recorded, resumable): see ``_runs``.
    prompt_set: bool = False
    #: A new prompt set's rows, read and checked (none for ``--resume``).
    rows: tuple[PromptRow, ...] = ()
    #: stdout, written through a tracker of its line ends.
    out: LineTracker = field(default_factory=lambda: LineTracker(sys.stdout))


def make_client(target: Target, args: argparse.Namespace, base_url: str) -> BaseClient:
    """The client of ``target``'s service at ``base_url``, set up from the options."""
    options: dict[str, Any] = {"timeout": args.timeout, "poll_interval": args.poll_interval}
    if target.service == "home":
        return ReplicateHome(base_url, **options)
    if getattr(args, "file_encoding", None) is not None:
        options["file_encoding"] = args.file_encoding
    return ReplicateAPI(target.token, base_url=base_url, **options)


def webhook_options(plan: Plan) -> dict[str, Any]:
    """``--webhook`` and ``--webhook-events`` as keyword arguments (none when unset)."""
    args = plan.args
    if getattr(args, "webhook", None) is None:
        return {}
    return {"webhook": args.webhook, "webhook_events_filter": args.webhook_events}


def one_line(error: BaseException) -> str:
    """An error as one line of text: its message on one line, an OS error as its file
    and what happened (``notes.txt: No such file or directory``, not ``[Errno 2] …``),
    an HTTP library's error with its kind, which its message alone often lacks."""
    if isinstance(error, OSError) and error.strerror:
        where = [str(name) for name in (error.filename, error.filename2) if name is not None]
        return ": ".join([*where, error.strerror])
    text = " ".join(str(error).split())
    if isinstance(error, httpx.HTTPError) or not text:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


class LineTracker:
    """Writes to a text stream and remembers whether the last line was ended, so that
    partial output can end its line before an error, and a log line on the same
    terminal or file can start on a line of its own."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.at_line_start = True

    def write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.at_line_start:
            self.write("\n")


def shown_url(url: str) -> str:
    """An output file's URL as a person reading a terminal sees it: the URL, or for a
    ``data:`` URI (the whole file, inline: hundreds of kilobytes of base64) what it
    holds and how to get it as a file. Scripts (a pipe, ``--json``) get the URI whole."""
    if not url.startswith("data:"):
        return url
    header, _, payload = url.partition(",")
    media = header[len("data:") :].split(";", 1)[0] or "text/plain"
    size = len(payload) * 3 // 4 if header.endswith(";base64") else len(payload)
    return f"a data: URI holding {media} of {_size(size)} (--save DIR writes it to a file)"


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1000:.0f} KB"
    return f"{count / 1_000_000:.1f} MB"


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a person reads it, at its width)."""
    return stream.isatty()


# -- running ----------------------------------------------------------------------------


@dataclass
class Interrupt:
    """Ctrl-C while a command runs cancels :attr:`scope` instead of raising, so the
    command can still print what it has; a second Ctrl-C interrupts as usual."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    happened: bool = False

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                self.happened = True
                self.scope.cancel()
                return


Command = Callable[[Plan, Interrupt], Awaitable[int]]


class Writer(Protocol):
    """Where a command prints (the plan's stdout, or a test's buffer)."""

    def write(self, text: str) -> None: ...


#: One action of an API-only command (``predictions``, ``trainings``, ``deployments``,
#: ``models search``...), given the API client, the parsed arguments and stdout.
ApiAction = Callable[[ReplicateAPI, argparse.Namespace, Writer], Awaitable[int]]


def api_command(action: ApiAction) -> Command:
    """The command that runs ``action`` on the plan's client, interruptible by Ctrl-C.

    The plan of an API-only command always targets the official API, so the client is a
    :class:`ReplicateAPI`.
    """

    async def command(plan: Plan, interrupt: Interrupt) -> int:
        code = EXIT_OK
        with interrupt.scope:
            async with open_client(plan) as client:
                assert isinstance(client, ReplicateAPI)  # the plan is always the api service
                code = await action(client, plan.args, plan.out)
        return code

    return command


@asynccontextmanager
async def open_client(plan: Plan) -> AsyncIterator[BaseClient]:
    """The client of the plan's target, on an emulator started here where it says so."""
    target, args = plan.target, plan.args
    if target.base_url is not None:
        async with make_client(target, args, target.base_url) as client:
            yield client
        return
    from ..emulator import Emulator

    async with (
        Emulator().serve() as emulator,
        make_client(target, args, emulator.base_url) as client,
    ):
        yield client
