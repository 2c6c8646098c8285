"""``replicate-home``: generate from the command line, list models, run the emulator.

Where no service is configured (no ``--base-url``, no ``REPLICATE_HOME_BASE_URL`` or
``REPLICATE_BASE_URL``, and for the API no ``REPLICATE_API_TOKEN``) the commands run
against an emulator started in this process, so a first try needs no network and no
account.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import anyio
import httpx

from . import _catalog
from ._api import BASE_URL_ENV as API_BASE_URL_ENV
from ._api import DEFAULT_API_URL as API_DEFAULT_URL
from ._api import TOKEN_ENV, parse_model_ref
from ._client import BaseClient
from ._exceptions import ReplicateHomeError
from ._fanout import ComparisonResult, compare_results
from ._home import BASE_URL_ENV
from ._models import ImageResponse
from ._provider import ReplicateHome
from ._replicate_api import ReplicateAPI
from ._version import __version__

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An error to print as one line before exiting non-zero."""


class UsageError(CommandError):
    """Bad arguments or missing configuration: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replicate-home",
        description="Run Replicate predictions; on a local emulator unless a service is set.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate", help="run one prediction and print its output as it arrives"
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument(
        "-m", "--model", default=None, help="model name or alias (default: gemma-2b)"
    )
    generate.add_argument(
        "--save", metavar="DIR", type=Path, help="download generated images into DIR"
    )
    _add_service_options(generate)

    compare = commands.add_parser(
        "compare", help="run one prompt on several models at once and compare them"
    )
    compare.add_argument("prompt", metavar="PROMPT")
    compare.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        required=True,
        help="a model name or alias; repeat for each model (a model may repeat)",
    )
    compare.add_argument("--limit", type=int, default=None, help="predictions in flight at most")
    compare.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_service_options(compare)

    commands.add_parser("models", help="list the models, their kinds and aliases")

    emulator = commands.add_parser("emulator", help="serve the emulator until interrupted")
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    emulator.add_argument(
        "--port", type=int, default=8000, help="port to bind, 0 for any (default: %(default)s)"
    )
    emulator.add_argument(
        "--stream-port",
        type=int,
        default=0,
        help="port of the output streams' origin, 0 for any (default: %(default)s)",
    )
    emulator.add_argument(
        "--token", default=None, help="accept only this API token on /v1 (default: any)"
    )
    emulator.add_argument(
        "--duration",
        type=float,
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
        "--file-output",
        choices=("data", "url"),
        default="data",
        help="/v1 image outputs as data: URIs, which the official clients wrap as files, or "
        "as http URLs of files the emulator serves (default: %(default)s)",
    )
    return parser


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
        help="a model input for the api service (VALUE may be JSON); repeatable",
    )
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url",
        help=f"service URL (default: ${BASE_URL_ENV} or ${API_BASE_URL_ENV}; with neither, and "
        f"for home without ${TOKEN_ENV} too, the local emulator)",
    )
    where.add_argument(
        "--emulator", action="store_true", help="use an emulator started in this process"
    )
    command.add_argument("--timeout", type=float, default=150.0, help="seconds (default: 150)")
    command.add_argument(
        "--poll-interval", type=float, default=None, help="fixed seconds between polls"
    )
    command.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop to run on"
    )
    command.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        if args.command == "models":
            print_models(sys.stdout)
            return 0
        if args.command == "emulator":
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
                )
            )
            return 0
        backend = args.backend
        if backend == "trio":
            _require("trio", "the trio backend needs trio: pip install trio")
        if args.command == "compare" and not args.json:
            _require("rich", "the live view needs rich: pip install 'replicate-home[cli]'")
        command = compare_command if args.command == "compare" else generate_command
        anyio.run(command, args, backend=backend)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as error:
        print(f"replicate-home: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ReplicateHomeError, ValueError, CommandError, OSError) as error:
        print(f"replicate-home: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _require(module: str, message: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise CommandError(message) from None


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


def chosen_service(args: argparse.Namespace) -> str:
    """``--service``, else ``api`` when a token is configured, else ``home``."""
    if args.service is not None:
        return str(args.service)
    return "api" if os.environ.get(TOKEN_ENV, "").strip() else "home"


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any] | None:
    """``key=value`` pairs as a model input; a value that parses as JSON is JSON."""
    if not pairs:
        return None
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"-i expects KEY=VALUE, not {pair!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw
    return values


@asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[BaseClient]:
    """The client the command asked for: on the service given, or on an emulator
    started in this process when none is configured (or ``--emulator``)."""
    service = chosen_service(args)
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if service == "home":
        configured = args.base_url or os.environ.get(BASE_URL_ENV)
    else:
        configured = (
            args.base_url
            or os.environ.get(API_BASE_URL_ENV)
            or (API_DEFAULT_URL if token else None)
        )
    options = {"timeout": args.timeout, "poll_interval": args.poll_interval}
    if configured and not args.emulator:
        if service == "home":
            async with ReplicateHome(configured, **options) as home:
                yield home
        else:
            async with ReplicateAPI(token, base_url=configured, **options) as api:
                yield api
        return
    try:
        from .emulator import Emulator
    except ImportError:
        raise UsageError(
            "no service configured and the emulator is not installed: "
            "pip install 'replicate-home[emulator]'"
        ) from None
    if not args.emulator:
        print(
            "replicate-home: no service configured; using the local emulator "
            "(pass --base-url to use a real one)",
            file=sys.stderr,
        )
    async with Emulator().serve() as emulator:
        if service == "home":
            async with ReplicateHome(emulator.base_url, **options) as home:
                yield home
        else:
            # The emulator takes any token; a configured one is used as it is.
            async with ReplicateAPI(
                token or "emulator", base_url=emulator.base_url, **options
            ) as api:
                yield api


def resolve_models(args: argparse.Namespace, models: Sequence[str | None]) -> list[str]:
    """Validate model names before any request (each service has its own rules)."""
    if chosen_service(args) == "home":
        return [ReplicateHome.get_model(model) for model in models]
    chosen = [model or _catalog.DEFAULT_MODEL for model in models]
    for model in chosen:
        parse_model_ref(model)  # raises ValueError for a malformed reference
    return chosen


async def generate_command(args: argparse.Namespace) -> None:
    (model,) = resolve_models(args, [args.model])
    inputs = parse_inputs(args.inputs)
    async with open_client(args) as client:
        ended_with_newline = True
        chunks = client.generate(model, prompt=args.prompt, input=inputs)
        async with aclosing(chunks):
            async for chunk in chunks:
                if isinstance(chunk, ImageResponse):
                    for url in chunk.images:
                        print(url if not url.startswith("data:") else url[:60] + "…", flush=True)
                    if args.save is not None:
                        await save_images(chunk, args.save, model)
                else:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                    ended_with_newline = chunk.endswith("\n")
        if not ended_with_newline:
            sys.stdout.write("\n")


async def compare_command(args: argparse.Namespace) -> None:
    models = resolve_models(args, args.models)
    inputs = parse_inputs(args.inputs)
    async with open_client(args) as client:
        events = client.fan_out(
            models, prompt=args.prompt, input=inputs, limit=args.limit, progress=True
        )
        if args.json:
            results = await compare_results(events, len(models))
            json.dump([result_json(result) for result in results], sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        from rich.console import Console

        from ._compare_view import LiveView, results_table

        with LiveView(models, Console(stderr=True)) as view:
            results = await compare_results(events, len(models), view.update)
        Console().print(results_table(results))


def result_json(result: ComparisonResult) -> dict[str, Any]:
    """A comparison result as plain JSON data."""
    return {
        "index": result.index,
        "model": result.model,
        "status": result.status,
        "latency": result.latency,
        "polls": result.polls,
        "text": result.text,
        "images": list(result.images),
        "error": None if result.error is None else str(result.error),
        "error_type": None if result.error is None else type(result.error).__name__,
        "prediction_id": None if result.prediction is None else result.prediction.id,
    }


async def save_images(image: ImageResponse, directory: Path, model: str) -> list[Path]:
    """Download every image of ``image`` into ``directory``; print each file's path."""
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    saved = []
    async with httpx.AsyncClient(timeout=60) as http:
        for url in image.images:
            response = await http.get(url)
            if not response.is_success:
                raise CommandError(f"downloading {url} failed: HTTP {response.status_code}")
            suffix = Path(urlsplit(url).path).suffix or ".png"
            name = f"{model.rsplit('/', 1)[-1]}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
            path = directory / f"{name}{suffix}"
            await anyio.Path(path).write_bytes(response.content)
            print(f"saved {path}", file=sys.stderr)
            saved.append(path)
    return saved


async def serve_emulator(
    host: str,
    port: int,
    duration: float,
    token: str | None,
    *,
    stream_port: int = 0,
    rate_limits: tuple[int, int] | None = None,
    file_output: Literal["data", "url"] = "data",
) -> None:
    try:
        from .emulator import Emulator, Scenario
        from .emulator._server import serve_forever
    except ImportError:
        raise CommandError(
            "the emulator is not installed: pip install 'replicate-home[emulator]'"
        ) from None

    emulator = Emulator(
        Scenario(duration=duration), token=token, rate_limits=rate_limits, file_output=file_output
    )

    def ready(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)
        print(f"output streams served from {emulator.stream_url} (no token)", flush=True)

    await serve_forever(emulator, host, port, on_ready=ready, stream_port=stream_port)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
