"""``replicate-home``: generate from the command line, list models, run the emulator.

Everything a command needs is checked before anything starts (arguments, models, inputs,
configuration, the extras it uses): a problem there is exit status 2 with one line on
stderr and nothing on stdout. The emulator runs only when asked (``--emulator``) or when
nothing at all is configured, and then the command says so on stderr; a service the user
named without what it needs (a token, a URL) is an error, never the emulator in its place.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio
import httpx

from . import _catalog
from ._api import BASE_URL_ENV as API_BASE_URL_ENV
from ._api import DEFAULT_API_URL, TOKEN_ENV, check_webhook
from ._cli_args import positive_float, positive_int
from ._cli_predictions import add_predictions_parser, run_predictions
from ._cli_save import SAVE_HELP, model_stem, save_files, save_result, save_text
from ._client import BaseClient
from ._compare_report import markdown_report, result_json
from ._exceptions import ReplicateHomeError
from ._fanout import (
    Chunk,
    ComparisonResult,
    Failed,
    Finished,
    Image,
    Progress,
    ResultCollector,
)
from ._home import BASE_URL_ENV as HOME_BASE_URL_ENV
from ._home import DEFAULT_BASE_URL as HOME_DEFAULT_URL
from ._models import Deployment, ImageResponse
from ._provider import ReplicateHome
from ._replicate_api import ReplicateAPI
from ._run import Output
from ._version import __version__

if TYPE_CHECKING:
    from ._compare_view import LiveView

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The status the table and JSON give a model that had not ended at Ctrl-C.
INTERRUPTED = "interrupted"

#: ``-v``: each model's end in ``compare`` (the library's requests log on ``replicate_home.http``).
logger = logging.getLogger("replicate_home.cli")

#: Where an emulator started for a check (before the real one) pretends to be.
_PLACEHOLDER_URL = "http://127.0.0.1"

EPILOG = f"""\
where predictions run:
  --emulator           an emulator started in this process (made-up output, no network)
  --service, --base-url, ${HOME_BASE_URL_ENV}, ${API_BASE_URL_ENV}, ${TOKEN_ENV}
                       any of these names a real service, which then must be complete:
                       --service api (the default when ${TOKEN_ENV} is set) needs a
                       token; an empty URL or token is an error, not a fallback
  nothing of the above the emulator, with a notice on stderr

exit status:
  0    success
  1    a prediction failed, was canceled or timed out, or the service could not be
       reached (compare: any model did not succeed, unless --allow-failures)
  2    usage: bad arguments, an unknown model, missing configuration or a missing
       extra (checked before any emulator or network starts; nothing on stdout)
  130  interrupted (Ctrl-C); what had arrived is printed first
"""


class CommandError(Exception):
    """An error to print as one line before exiting with status 1."""


class UsageError(CommandError):
    """Bad arguments, missing configuration or a missing extra: exit 2."""


# -- arguments ---------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="replicate-home",
        description="Run Replicate predictions, on Replicate or on a local emulator.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="run one prediction and print its output as it arrives",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    generate.add_argument(
        "prompt",
        metavar="PROMPT",
        nargs="?",
        default=None,
        help="the prompt; a model that takes none (an upscaler) runs on its -i inputs alone",
    )
    which = generate.add_mutually_exclusive_group()
    which.add_argument(
        "-m", "--model", default=None, help="model name or alias (default: gemma-2b)"
    )
    which.add_argument(
        "-d",
        "--deployment",
        dest="model",
        type=deployment_argument,
        metavar="OWNER/NAME",
        help="a deployment to run instead of a model (api service)",
    )
    generate.add_argument("--save", metavar="DIR", type=Path, help=SAVE_HELP)
    _add_service_options(generate)

    compare = commands.add_parser(
        "compare",
        help="run prompts on several models at once and compare them",
        description="Run one prompt on several models at once. On a terminal: a live line "
        "per model, then a table. Otherwise (a pipe, a file): Markdown with every model's "
        "whole output. --json: one object per model. A prompt set (-p repeated, --prompts "
        "FILE) is recorded cell by cell in a results database (--db), can be resumed "
        "(--resume RUN) and reported (--report FILE, or the report command).",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    compare.add_argument("prompt", metavar="PROMPT", nargs="?", default=None)
    compare.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        default=[],
        help="a model name or alias; repeat for each model (a model may repeat)",
    )
    compare.add_argument(
        "-d",
        "--deployment",
        dest="models",
        action="append",
        type=deployment_argument,
        metavar="OWNER/NAME",
        help="a deployment (api service), mixed with the models in the order given",
    )
    compare.add_argument(
        "-p",
        "--prompt",
        dest="prompts",
        action="append",
        default=[],
        metavar="PROMPT",
        help="a prompt of a prompt set; repeatable",
    )
    compare.add_argument(
        "--prompts",
        dest="prompts_file",
        type=Path,
        metavar="FILE",
        help="a prompt set: .jsonl (a prompt and inputs a row), .csv (a prompt column, "
        "other columns are inputs) or plain lines",
    )
    compare.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="the results database of prompt-set runs (default: replicate-home.db)",
    )
    compare.add_argument(
        "--name", metavar="RUN", help="name a new prompt-set run (default: its start time)"
    )
    compare.add_argument(
        "--resume", metavar="RUN", help="finish the prompt-set run RUN of the database"
    )
    compare.add_argument(
        "--report", type=Path, metavar="FILE", help="write the run's HTML report to FILE"
    )
    compare.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="with --resume: send again the cells whose create may have left before the "
        "run stopped (homepage service; they end 'in doubt' otherwise)",
    )
    compare.add_argument(
        "--limit", type=positive_int, default=None, help="predictions in flight at most"
    )
    compare.add_argument("--json", action="store_true", help="print the results as JSON")
    compare.add_argument("--save", metavar="DIR", type=Path, help=SAVE_HELP)
    compare.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when a model did not succeed (default: exit 1)",
    )
    _add_service_options(compare)

    report = commands.add_parser(
        "report", help="write the HTML report of a recorded prompt-set run"
    )
    report.add_argument("run", metavar="RUN", help="the run's name (compare prints it)")
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("report.html"),
        help="the page to write; images go beside it (default: %(default)s)",
    )
    report.add_argument(
        "--db",
        type=Path,
        default=Path("replicate-home.db"),
        metavar="PATH",
        help="the results database (default: %(default)s)",
    )

    commands.add_parser("models", help="list the models, their kinds and aliases")

    add_predictions_parser(commands, EPILOG, formatter)

    emulator = commands.add_parser("emulator", help="serve the emulator until interrupted")
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    emulator.add_argument(
        "--port", type=_port, default=8000, help="port to bind, 0 for any (default: %(default)s)"
    )
    emulator.add_argument(
        "--stream-port",
        type=_port,
        default=0,
        help="port of the output streams' origin, 0 for any (default: %(default)s)",
    )
    emulator.add_argument(
        "--token", default=None, help="accept only this API token on /v1 (default: any)"
    )
    emulator.add_argument(
        "--duration",
        type=positive_float,
        default=1.0,
        help="seconds each emulated prediction takes (default: %(default)s)",
    )
    emulator.add_argument(
        "--rate-limits",
        type=_rate_limits,
        default=None,
        metavar="CREATES,OTHERS",
        help="enforce these /v1 rate limits, per minute (Replicate's: 600,3000; default: off)",
    )
    emulator.add_argument(
        "--deploy",
        dest="deployments",
        action="append",
        default=[],
        type=_deployment_spec,
        metavar="OWNER/NAME=MODEL",
        help="serve a deployment that runs MODEL (owner/name); repeatable",
    )
    emulator.add_argument(
        "--file-output",
        choices=("data", "url"),
        default="data",
        help="/v1 image outputs as data: URIs, which the official clients wrap as files, or "
        "as http URLs of files the emulator serves (default: %(default)s)",
    )
    return parser


def deployment_argument(text: str) -> Deployment:
    """``-d OWNER/NAME``: a :class:`Deployment`, checked as the option is read."""
    try:
        return Deployment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _deployment_spec(value: str) -> tuple[str, str]:
    """``OWNER/NAME=MODEL``: a deployment for the emulator to serve."""
    name, sep, model = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected OWNER/NAME=MODEL, got {value!r}")
    try:
        Deployment(name)
        Deployment(model)  # the same owner/name grammar
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r}: {error}") from None
    return name, model


def _rate_limits(value: str) -> tuple[int, int]:
    """``CREATES,OTHERS``: two positive whole numbers of requests per minute."""
    parts = value.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected CREATES,OTHERS (requests per minute, e.g. 600,3000), got {value!r}"
        )
    creates, others = (int(part) for part in parts)
    if creates < 1 or others < 1:
        raise argparse.ArgumentTypeError(f"rate limits must be at least 1, got {value!r}")
    return creates, others


def _add_service_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--webhook",
        metavar="URL",
        default=None,
        help="also have the api service POST each prediction to URL (signed deliveries)",
    )
    command.add_argument(
        "--webhook-events",
        metavar="EVENTS",
        type=lambda text: [event.strip() for event in text.split(",") if event.strip()],
        default=None,
        help="which deliveries: some of start,output,logs,completed (default: all)",
    )
    command.add_argument(
        "--service",
        choices=("home", "api"),
        default=None,
        help=f"the homepage endpoint or the official API (default: api when ${TOKEN_ENV} "
        "is set, else home)",
    )
    command.add_argument(
        "-i",
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model input for the api service; repeatable. VALUE may be JSON; @FILE sends "
        "that file (see --file-encoding), @- standard input's bytes, @@text the text @text",
    )
    command.add_argument(
        "--file-encoding",
        choices=("upload", "data"),
        default=None,
        help="how the api service gets @FILE inputs: upload (the Files API, each file once, "
        "then its URL; the default) or data (a data: URI inside the request, at most 10 MB)",
    )
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url",
        help=f"the service's URL (default: ${HOME_BASE_URL_ENV} or {HOME_DEFAULT_URL} for "
        f"home, ${API_BASE_URL_ENV} or {DEFAULT_API_URL} for api)",
    )
    where.add_argument(
        "--emulator",
        action="store_true",
        help="run on an emulator started in this process (made-up output)",
    )
    command.add_argument(
        "--timeout", type=positive_float, default=150.0, help="seconds (default: 150)"
    )
    command.add_argument(
        "--poll-interval", type=positive_float, default=None, help="fixed seconds between polls"
    )
    command.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop to run on"
    )
    command.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log this library's requests (method, URL, status, time) to stderr",
    )


# -- where the predictions run -----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The service a command runs on; ``base_url`` ``None`` is an emulator started in
    this process. ``notice`` is said on stderr before anything runs."""

    service: str
    base_url: str | None
    token: str | None = field(default=None, repr=False)
    notice: str | None = None


def choose_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """Where the command runs; a :class:`UsageError` when a named service lacks what it
    needs. An environment variable that is set counts as configuration even when empty
    (a CI secret that went missing must not turn into the emulator)."""
    token = environ.get(TOKEN_ENV, "").strip() or None
    if args.emulator:
        service = args.service or ("api" if token else "home")
        return Target(service, None, token or "emulator")
    named = [env for env in (HOME_BASE_URL_ENV, API_BASE_URL_ENV, TOKEN_ENV) if env in environ]
    if args.service is None and args.base_url is None and not named:
        return Target(
            "home",
            None,
            notice="replicate-home: no service configured: running on the local emulator, "
            f"whose output is made up (--service home for Replicate's homepage, ${TOKEN_ENV} "
            "for its API, --emulator to choose the emulator)",
        )
    service = args.service
    if service is None:
        only_api_url = API_BASE_URL_ENV in environ and HOME_BASE_URL_ENV not in environ
        service = "api" if TOKEN_ENV in environ or only_api_url else "home"
    if service == "home":
        url, source = _url(args, environ, HOME_BASE_URL_ENV, HOME_DEFAULT_URL)
        if not url:
            raise UsageError(
                f"{source} is empty: give the homepage service's URL, leave it unset for "
                f"{HOME_DEFAULT_URL}, or pass --emulator"
            )
        return Target("home", url)
    if token is None:
        problem = f"${TOKEN_ENV} is empty" if TOKEN_ENV in environ else "no API token"
        raise UsageError(
            f"{problem}: the api service needs one (export {TOKEN_ENV}=r8_...), "
            "or pass --emulator to try the emulator"
        )
    url, source = _url(args, environ, API_BASE_URL_ENV, DEFAULT_API_URL)
    if not url:
        raise UsageError(
            f"{source} is empty: give the API's URL, leave it unset for {DEFAULT_API_URL}, "
            "or pass --emulator"
        )
    return Target("api", url, token)


def _url(
    args: argparse.Namespace, environ: Mapping[str, str], env: str, default: str
) -> tuple[str, str]:
    if args.base_url is not None:
        return args.base_url.strip(), "--base-url"
    if env in environ:
        return environ[env].strip(), f"${env}"
    return default, "the default URL"


# -- the plan: everything checked before anything starts ---------------------------------


@dataclass(frozen=True)
class Plan:
    """A command, checked and resolved: what :func:`run` needs and nothing to validate."""

    args: argparse.Namespace
    target: Target
    models: list[str | Deployment]
    inputs: dict[str, Any] | None
    #: ``compare`` with a prompt set (recorded, resumable): see ``_cli_runs``.
    prompt_set: bool = False
    #: stdout, written through a tracker of its line ends.
    out: LineTracker = field(default_factory=lambda: LineTracker(sys.stdout))


def make_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    """Check a ``generate`` or ``compare`` command; :class:`UsageError` for any problem."""
    target = choose_target(args, environ)
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        raise UsageError("the trio backend needs trio: pip install trio")
    if target.base_url is None:
        _check_emulator_installed()
    inputs = parse_inputs(args.inputs)
    if args.webhook is not None or args.webhook_events is not None:
        if target.service != "api":
            raise UsageError("--webhook needs the api service (webhooks are an API feature)")
        try:
            check_webhook(args.webhook, args.webhook_events)
        except ValueError as error:
            raise UsageError(_one_line(error)) from None
    if getattr(args, "file_encoding", None) is not None and target.service != "api":
        raise UsageError("--file-encoding needs the api service (file inputs are an API feature)")
    prompt_set = args.command == "compare" and _is_prompt_set(args)
    prompt = args.prompt
    if prompt_set:
        if args.save is not None:
            raise UsageError("--save is for one prompt; a prompt set's outputs are in --db")
        from ._cli_runs import check_prompt_set

        prompt = check_prompt_set(args)
    elif args.command == "compare":
        if prompt is None:
            raise UsageError("compare needs a PROMPT (or a prompt set: -p, --prompts FILE)")
        if not args.models:
            raise UsageError("compare needs at least one -m MODEL")
    try:
        client = _client(target, args, target.base_url or _PLACEHOLDER_URL)
        requested = args.models if args.command == "compare" else [args.model]
        models = [_checked_model(client, target, model, prompt, inputs) for model in requested]
    except ValueError as error:
        raise UsageError(_one_line(error)) from None
    return Plan(args, target, models, inputs, prompt_set)


def _is_prompt_set(args: argparse.Namespace) -> bool:
    """``compare`` runs a recorded prompt set when any prompt-set option is given."""
    return bool(
        args.prompts
        or args.prompts_file
        or args.resume
        or args.db
        or args.report
        or args.name
        or args.resend_in_doubt
    )


def make_predictions_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    """Check a ``predictions`` command: the official API (a token), or ``--emulator``."""
    if not args.emulator and TOKEN_ENV not in environ and args.base_url is None:
        raise UsageError(
            f"predictions live on the official API: export {TOKEN_ENV}=r8_... "
            "(or pass --emulator to try the emulator)"
        )
    target = choose_target(args, environ)
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        raise UsageError("the trio backend needs trio: pip install trio")
    if target.base_url is None:
        _check_emulator_installed()
    return Plan(args, target, [], None)


def _checked_model(
    client: BaseClient,
    target: Target,
    model: str | Deployment | None,
    prompt: str | None,
    inputs: dict[str, Any] | None,
) -> str | Deployment:
    """The model's resolved name (a deployment as it is); the call's arguments are
    validated as the client would, with no request."""
    if target.service == "api":
        model = model or _catalog.DEFAULT_MODEL
    resolved = client._service.prepare(model, None, prompt, inputs).model
    return model if isinstance(model, Deployment) else resolved


def _client(target: Target, args: argparse.Namespace, base_url: str) -> BaseClient:
    options: dict[str, Any] = {"timeout": args.timeout, "poll_interval": args.poll_interval}
    if target.service == "home":
        return ReplicateHome(base_url, **options)
    if getattr(args, "file_encoding", None) is not None:
        options["file_encoding"] = args.file_encoding
    return ReplicateAPI(target.token, base_url=base_url, **options)


def _check_emulator_installed() -> None:
    try:
        import replicate_home.emulator._server  # noqa: F401  # hypercorn and starlette
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in ("hypercorn", "starlette"):
            raise UsageError(
                "the emulator is not installed: pip install 'replicate-home[emulator]' "
                "(or name a service: --service, --base-url)"
            ) from None
        raise UsageError(f"the emulator cannot start, a module is missing: {error}") from None


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any] | None:
    """``key=value`` pairs as a model input; a value that parses as JSON is JSON,
    ``@FILE`` is that file, ``@-`` standard input's bytes, ``@@text`` the text ``@text``."""
    if not pairs:
        return None
    values: dict[str, Any] = {}
    stdin_used = False
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-i expects KEY=VALUE, not {pair!r}")
        if raw.startswith("@@"):
            values[key.strip()] = raw[1:]  # a literal value starting with @
            continue
        if raw == "@-":
            if stdin_used:
                raise UsageError("-i KEY=@- reads standard input; only one input can")
            stdin_used = True
            values[key.strip()] = sys.stdin.buffer.read()
            continue
        if raw.startswith("@"):
            path = Path(raw[1:])
            if not path.is_file():
                raise UsageError(f"-i {key.strip()}=@FILE: {raw[1:]!r} is not a file")
            values[key.strip()] = path
            continue
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw
    return values


# -- running -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare" and not args.resume:
        # Required unless the run comes from the database (argparse can't say "unless").
        if not args.models:
            parser.error(
                "compare: the following arguments are required: -m/--model (or -d/--deployment)"
            )
        if args.prompt is None and not args.prompts and args.prompts_file is None:
            parser.error("compare: give a PROMPT, -p/--prompt PROMPT or --prompts FILE")
    if args.command == "generate" and args.prompt is None and not args.inputs:
        # Optional only for a model that takes no prompt, run on its -i inputs alone.
        parser.error("generate: the following arguments are required: PROMPT (or -i inputs)")
    verbose = bool(getattr(args, "verbose", False))
    try:
        if args.command == "models":
            print_models(sys.stdout)
            return EXIT_OK
        if args.command == "emulator":
            _check_emulator_installed()
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
                        deployments=dict(args.deployments),
                    )
                )
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED  # how it is meant to stop: nothing to report
            return EXIT_OK
        if args.command == "report":
            from ._cli_runs import report_command

            anyio.run(report_command, args)
            return EXIT_OK
        command: Command
        if args.command == "predictions":
            plan = make_predictions_plan(args, os.environ)
            command = predictions_command
        else:
            plan = make_plan(args, os.environ)
            command = compare_command if args.command == "compare" else generate_command
            if args.command == "compare" and plan.prompt_set:
                from ._cli_runs import comparison_command

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
        _error(_one_line(error))
        return EXIT_FAILED
    except Exception as error:
        # A defect, not a situation: still one line, the traceback with -v.
        if verbose:
            traceback.print_exc()
        _error(f"internal error: {_one_line(error)} (-v shows the traceback)")
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


def _one_line(error: BaseException) -> str:
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


@asynccontextmanager
async def open_client(plan: Plan) -> AsyncIterator[BaseClient]:
    """The client of the plan's target, on an emulator started here where it says so."""
    target, args = plan.target, plan.args
    if target.base_url is not None:
        async with _client(target, args, target.base_url) as client:
            yield client
        return
    from .emulator import Emulator

    async with Emulator().serve() as emulator, _client(target, args, emulator.base_url) as client:
        yield client


async def generate_command(plan: Plan, interrupt: Interrupt) -> int:
    (model,) = plan.models
    out, save = plan.out, plan.args.save
    stem = model_stem(str(model))
    text: list[str] = []
    saved_files = False

    async def show(chunk: Output) -> None:
        nonlocal saved_files
        if isinstance(chunk, ImageResponse):
            for url in chunk.images:
                out.write((url if not url.startswith("data:") else url[:60] + "…") + "\n")
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
                        model, prompt=plan.args.prompt, input=plan.inputs, **_webhook(plan)
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


def _webhook(plan: Plan) -> dict[str, Any]:
    """``--webhook`` and ``--webhook-events`` as keyword arguments (none when unset)."""
    args = plan.args
    if getattr(args, "webhook", None) is None:
        return {}
    return {"webhook": args.webhook, "webhook_events_filter": args.webhook_events}


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
        **_webhook(plan),
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


async def compare_command(plan: Plan, interrupt: Interrupt) -> int:
    args, models = plan.args, plan.models
    names = [str(model) for model in models]
    collector = ResultCollector(names)
    live = None if args.json else _live_view(names)
    with interrupt.scope:
        async with open_client(plan) as client:
            events = client.fan_out(
                models,
                prompt=args.prompt,
                input=plan.inputs,
                limit=args.limit,
                progress=True,
                **_webhook(plan),
            )
            async with events as stream:
                with live if live is not None else nullcontext():
                    async for event in stream:
                        collector.add(event)
                        if live is not None:
                            live.update(event)
                        if isinstance(event, (Finished, Failed)):
                            status = collector.result(event.index).status
                            logger.debug("%d %s: %s", event.index, event.model, status)
    results = collector.results(unfinished=INTERRUPTED)
    print_results(results, as_json=args.json)
    if args.save is not None:
        for result in results:
            await save_result(result, args.save)
    if interrupt.happened or args.allow_failures or all(result.ok for result in results):
        return EXIT_OK
    return EXIT_FAILED


async def predictions_command(plan: Plan, interrupt: Interrupt) -> int:
    code = EXIT_OK
    with interrupt.scope:
        async with open_client(plan) as client:
            assert isinstance(client, ReplicateAPI)  # the plan is always the api service
            code = await run_predictions(client, plan.args, plan.out)
    return code


def _live_view(models: Sequence[str]) -> LiveView | None:
    """The live lines on stderr when it is a terminal and rich is installed, else None."""
    if not is_terminal(sys.stderr) or importlib.util.find_spec("rich") is None:
        return None
    from rich.console import Console

    from ._compare_view import LiveView

    return LiveView(models, Console(stderr=True))


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a person reads it, at its width)."""
    return stream.isatty()


def print_results(results: Sequence[ComparisonResult], *, as_json: bool) -> None:
    """JSON; else rich's table on a terminal (with the ``cli`` extra); else Markdown with
    every model's whole output (a pipe or a file gets everything, at any width)."""
    if as_json:
        json.dump([result_json(result) for result in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif is_terminal(sys.stdout) and importlib.util.find_spec("rich") is not None:
        from rich.console import Console

        from ._compare_view import results_table

        Console().print(results_table(results))
    else:
        sys.stdout.write(markdown_report(results))
    sys.stdout.flush()


def print_models(out: TextIO) -> None:
    aliases: dict[str, list[str]] = {}
    for alias, model in _catalog.MODEL_ALIASES.items():
        aliases.setdefault(model, []).append(alias)
    width = max(len(model) for model in _catalog.MODELS)
    print(f"{'MODEL':<{width}}  KIND   ALIASES", file=out)
    defaults = (_catalog.DEFAULT_MODEL, _catalog.DEFAULT_IMAGE_MODEL)
    for model in _catalog.MODELS:
        kind = _catalog.model_kind(model)
        names = ", ".join(aliases.get(model, []))
        default = " (default)" if model in defaults else ""
        print(f"{model:<{width}}  {kind:<5}  {names}{default}", file=out)


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
    from .emulator import Emulator, Scenario
    from .emulator._server import serve_forever

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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
