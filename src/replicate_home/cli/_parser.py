"""The command line's parser: every command, its options and its help (the exit
statuses and where predictions run, in each command's epilog)."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from pathlib import Path

from .._api import BASE_URL_ENV as API_BASE_URL_ENV
from .._api import DEFAULT_API_URL, TOKEN_ENV
from .._home import BASE_URL_ENV as HOME_BASE_URL_ENV
from .._home import DEFAULT_BASE_URL as HOME_DEFAULT_URL
from .._models import Deployment
from .._version import __version__
from ._catalogue import add_catalogue_parsers
from ._common import DEFAULT_FILE_CAP, DEFAULT_TIMEOUT, byte_size, positive_float, positive_int
from ._deployments import add_deployments_parser
from ._predictions import add_predictions_parser
from ._save import SAVE_HELP
from ._scoring import add_scoring_options
from ._trainings import add_trainings_parser

__all__ = ["EPILOG", "build_parser", "deployment_argument", "parse_arguments"]

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
       reached (compare: any model did not succeed, unless --allow-failures; a
       scored run under --fail-under or --min-pass-rate)
  2    usage: bad arguments, an unknown model, missing configuration or a missing
       extra (checked before any emulator or network starts; nothing on stdout)
  130  interrupted (Ctrl-C); what had arrived is printed first
"""


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
    columns = compare.add_mutually_exclusive_group()
    columns.add_argument(
        "--collection",
        metavar="SLUG",
        help="compare the models of this Replicate collection that take the prompts' inputs "
        "(api service; listed on stderr before anything is sent)",
    )
    columns.add_argument(
        "--search",
        metavar="QUERY",
        help="compare the best models a search finds that take the prompts' inputs",
    )
    compare.add_argument(
        "--top",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --collection or --search: at most N models (default: 3 for --search, "
        "all for --collection)",
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
        "--view",
        action="store_true",
        help="serve the viewer (on 127.0.0.1, any free port) while the run goes, its outputs "
        "streamed into the page token by token (the viewer extra)",
    )
    compare.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="with --resume: send again the cells whose create may have left before the "
        "run stopped (homepage service; they end 'in doubt' otherwise)",
    )
    compare.add_argument(
        "--retry",
        metavar="STATUSES",
        help="with --resume: send again, as a new attempt, the cells that ended with one of "
        "these statuses (comma-separated: succeeded, failed, canceled, aborted, timeout, "
        "'not sent', 'in doubt', error)",
    )
    compare.add_argument(
        "--max-file-bytes",
        type=byte_size,
        default=DEFAULT_FILE_CAP,
        metavar="SIZE",
        help="keep each output file of a prompt set up to SIZE bytes in the archive beside "
        "the database (K, M, G suffixes; 'none' for no cap; default: 1G)",
    )
    compare.add_argument(
        "--no-keep-files",
        dest="keep_files",
        action="store_false",
        help="keep no output file of a prompt set (their URLs are recorded; "
        "report --fetch can keep them later, while the service still has them)",
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
    add_scoring_options(compare)
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
        help="the page to write; its files go beside it (default: %(default)s)",
    )
    report.add_argument(
        "--fetch",
        action="store_true",
        help="first try to keep the run's output files the archive lacks (failed, too "
        "large, not kept), while the service still has them",
    )
    report.add_argument(
        "--db",
        type=Path,
        default=Path("replicate-home.db"),
        metavar="PATH",
        help="the results database (default: %(default)s)",
    )

    export = commands.add_parser(
        "export",
        help="write a recorded run's cells, scores and votes as CSV or JSON Lines",
        description="Write a recorded prompt-set run as CSV or JSON Lines: its cells (output, "
        "assertion results, judge verdicts, votes and thumbs), its votes, or a row a model "
        "(the summary beside the Bradley-Terry rating). docs/judging.md describes the columns.",
    )
    export.add_argument("run", metavar="RUN", help="the run's name (compare prints it)")
    export.add_argument(
        "--format", choices=("csv", "jsonl"), default="jsonl", help="default: %(default)s"
    )
    export.add_argument(
        "--table",
        choices=("cells", "votes", "models"),
        default="cells",
        help="what to write, a row a cell, a vote or a model (default: %(default)s)",
    )
    export.add_argument(
        "-o", "--output", type=Path, default=None, help="the file to write (default: stdout)"
    )
    export.add_argument(
        "--db",
        type=Path,
        default=Path("replicate-home.db"),
        metavar="PATH",
        help="the results database (default: %(default)s)",
    )

    view = commands.add_parser(
        "view",
        help="browse a results database in a local web app (live grid, votes, leaderboard)",
        description="Serve the viewer of a results database until Ctrl-C: the runs, a run's "
        "grid (live while the run goes, from any process), blind pairwise votes and the "
        "leaderboard. Needs the viewer extra: pip install 'replicate-home[viewer]'.",
    )
    view.add_argument("run", nargs="?", metavar="RUN", help="open this run's grid")
    view.add_argument(
        "--db",
        type=Path,
        default=Path("replicate-home.db"),
        metavar="PATH",
        help="the results database (default: %(default)s)",
    )
    view.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; any other address is reachable by "
        "others and is warned about)",
    )
    view.add_argument(
        "--port", type=_port, default=8765, help="port to bind, 0 for any (default: %(default)s)"
    )
    view.add_argument(
        "--no-browser", action="store_true", help="don't open a browser (only the URL is printed)"
    )

    add_catalogue_parsers(commands, EPILOG, formatter)
    add_predictions_parser(commands, EPILOG, formatter)
    add_trainings_parser(commands, EPILOG, formatter)
    add_deployments_parser(commands, EPILOG, formatter)

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
        default=None,
        help="/v1 image outputs as data: URIs, which the official clients wrap as files, or "
        "as URLs of files the emulator serves (default: url with --tls, else data)",
    )
    emulator.add_argument(
        "--tls",
        action="store_true",
        help="serve every origin over https with a local certificate authority (printed: "
        "trust it with SSL_CERT_FILE); output files are then https URLs, as on Replicate",
    )
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's namespace gets ``command_parser``, its own parser, so that a
    problem found after parsing is told with that command's usage, not the top level's
    (the innermost command's default wins: argparse copies a subcommand's namespace
    over its parent's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                _remember_parsers(command)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, parsed and checked as far as arguments go: a problem exits 2
    through the usage of the command it concerns (``generate --emulater`` shows
    ``generate``'s usage and the option it most likely meant)."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
    if extras:
        command.error(_unrecognized(command, extras))
    if args.command == "compare" and not args.resume:
        # Required unless the run comes from the database (argparse can't say "unless").
        if not args.models and not (args.collection or args.search):
            command.error(
                "the following arguments are required: -m/--model (or -d/--deployment, "
                "--collection, --search)"
            )
        if args.top is not None and not (args.collection or args.search):
            command.error("--top goes with --collection or --search")
        if args.prompt is None and not args.prompts and args.prompts_file is None:
            command.error("give a PROMPT, -p/--prompt PROMPT or --prompts FILE")
    if args.command == "generate" and args.prompt is None and not args.inputs:
        # Optional only for a model that takes no prompt, run on its -i inputs alone.
        command.error("the following arguments are required: PROMPT (or -i inputs)")
    return args


def _unrecognized(command: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """argparse's message for arguments no option took, with the closest option of the
    command for a misspelt one, and the quotes a prompt of several words needs."""
    options = [name for action in command._actions for name in action.option_strings]
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.partition("=")[0], options, n=1)
            if close:
                hint = f"did you mean {close[0]}?"
                hints.append(hint if len(extras) == 1 else f"{extra}: {hint}")
    if not any(extra.startswith("-") for extra in extras) and "PROMPT" in command.format_usage():
        hints.append('a prompt of several words goes in quotes: "a cat in a hat"')
    message = f"unrecognized arguments: {' '.join(extras)}"
    return f"{message} ({'; '.join(hints)})" if hints else message


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
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds (default: %(default)g)",
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
