"""``replicate-home``: generate from the command line, list models, run the emulator.

Everything a command needs is checked before anything starts (arguments, models, inputs,
configuration, the extras it uses): a problem there is exit status 2 with one line on
stderr and nothing on stdout. The emulator runs only when asked (``--emulator``) or when
nothing at all is configured, and then the command says so on stderr; a service the user
named without what it needs (a token, a URL) is an error, never the emulator in its place.

This module is the entry point: it parses, plans, runs the command and turns what went
wrong into an exit status. Each command lives in a module of its own.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TextIO

import anyio
import httpx

from .._exceptions import ReplicateHomeError
from ._catalogue import catalogue_command
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    CommandError,
    Interrupt,
    LineTracker,
    Plan,
    UsageError,
    one_line,
)
from ._compare import compare_command
from ._deployments import deployments_command
from ._emulator import check_emulator_installed, listen_problem, serve_emulator
from ._generate import generate_command
from ._list_models import print_models
from ._parser import parse_arguments
from ._plan import make_api_plan, make_plan
from ._predictions import predictions_command
from ._trainings import trainings_command

__all__ = ["main"]

#: The commands of the official API only, each with its module's entry.
API_COMMANDS: dict[str, Command] = {
    "predictions": predictions_command,
    "trainings": trainings_command,
    "deployments": deployments_command,
    "models": catalogue_command,
    "collections": catalogue_command,
    "hardware": catalogue_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parse_arguments(argv)
    verbose = bool(getattr(args, "verbose", False))
    try:
        if args.command == "models" and args.action is None:
            print_models(sys.stdout)  # this library's catalog: no network
            return EXIT_OK
        if args.command == "emulator":
            check_emulator_installed()
            try:
                anyio.run(
                    partial(
                        serve_emulator,
                        args.host,
                        args.port,
                        args.duration,
                        args.token,
                        stream_port=args.stream_port,
                        rate_limits=args.rate_limits,
                        file_output=args.file_output,
                        tls=args.tls,
                        deployments=dict(args.deployments),
                    )
                )
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED  # how it is meant to stop: nothing to report
            except OSError as error:
                problem = listen_problem(error, args.host, args.port, args.stream_port)
                if problem is None:
                    raise
                raise problem from None
            return EXIT_OK
        if args.command == "view":
            from ._view import check_viewer_installed, view_command

            check_viewer_installed()
            try:
                anyio.run(view_command, args)
            except KeyboardInterrupt:
                return EXIT_OK  # how it is meant to stop
            return EXIT_OK
        if args.command == "report":
            from ._runs import report_command  # the results database: only when asked

            anyio.run(report_command, args)
            return EXIT_OK
        if args.command == "export":
            from ._export import export_command  # the results database: only when asked

            anyio.run(export_command, args)
            return EXIT_OK
        command: Command
        if args.command in API_COMMANDS:
            plan = make_api_plan(args, os.environ)
            command = API_COMMANDS[args.command]
        else:
            if args.command == "compare" and (args.collection or args.search):
                from ._columns import resolve_columns

                args.models = [*args.models, *resolve_columns(args, os.environ)]
            plan = make_plan(args, os.environ)
            command = compare_command if args.command == "compare" else generate_command
            if args.command == "compare" and plan.prompt_set:
                from ._runs import comparison_command

                command = comparison_command
        if plan.target.notice:
            print(plan.target.notice, file=sys.stderr, flush=True)
        with _verbose(verbose, plan.out):
            return anyio.run(run, command, plan, backend=args.backend)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout's reader left (`| head`): nothing more to say, to anyone.
        _silence_stdout()
        return EXIT_FAILED
    except UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except (ReplicateHomeError, CommandError, OSError, httpx.HTTPError, ValueError) as error:
        _error(one_line(error))
        return EXIT_FAILED
    except Exception as error:
        # A defect, not a situation: still one line, the traceback with -v.
        if verbose:
            traceback.print_exc()
        _error(f"internal error: {one_line(error)} (-v shows the traceback)")
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at the null device, so that flushing it at exit raises no second
    BrokenPipeError (Python's advice for command-line tools)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file
        pass


def _error(message: str) -> None:
    sys.stdout.flush()  # what came before is out (and ended its line) before the error
    print(f"replicate-home: error: {message}", file=sys.stderr, flush=True)


def _same_file(one: TextIO, other: TextIO) -> bool:
    try:
        return os.path.sameopenfile(one.fileno(), other.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        return False


class _LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; where stdout is the same terminal or file and its output is mid-line, a
    log line first starts a line of its own (on stderr: stdout's text is unchanged)."""

    def __init__(self, out: LineTracker) -> None:
        super().__init__(sys.stderr)
        self._out = out
        self._shared = _same_file(sys.stdout, sys.stderr)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self._shared and not self._out.at_line_start:
            self.stream.write("\n")
            self._out.at_line_start = True
        super().emit(record)


@contextmanager
def _verbose(enabled: bool, out: LineTracker) -> Iterator[None]:
    """``-v``: this library's log on stderr (its requests, status changes), not httpx's
    or httpcore's; undone after the command (``main`` may run more than once)."""
    if not enabled:
        yield
        return
    handler = _LogHandler(out)
    library = logging.getLogger("replicate_home")
    level = library.level
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


async def run(command: Command, plan: Plan) -> int:
    """Run ``command`` with Ctrl-C turned into a cancellation it can report."""
    interrupt = Interrupt()
    failure: Exception | None = None
    code = EXIT_FAILED
    async with anyio.create_task_group() as group:
        if _can_watch_signals():
            await group.start(interrupt.watch)
        try:
            code = await command(plan, interrupt)
        except Exception as error:  # raised as it is below, not in an exception group
            failure = error
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if interrupt.happened:
        _error("interrupted")
        return EXIT_INTERRUPTED
    return code


def _can_watch_signals() -> bool:
    return sys.platform != "win32" and threading.current_thread() is threading.main_thread()
