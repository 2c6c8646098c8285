"""``replicate-home``: generate from the command line, list models, run the emulator.

Without ``--base-url`` (or ``REPLICATE_HOME_BASE_URL``) the commands run against an
emulator started in this process, so a first try needs no network and no account.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio
import httpx

from . import __version__, _catalog
from ._exceptions import ReplicateHomeError
from ._fanout import ComparisonResult, compare_results
from ._home import BASE_URL_ENV
from ._models import ImageResponse
from ._provider import ReplicateHome

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An error to print as one line before exiting non-zero."""


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
        "--duration",
        type=float,
        default=1.0,
        help="seconds each emulated prediction takes (default: %(default)s)",
    )
    return parser


def _add_service_options(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url", help=f"service URL (default: ${BASE_URL_ENV}, else the local emulator)"
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
            anyio.run(serve_emulator, args.host, args.port, args.duration)
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
    for model in _catalog.MODELS:
        kind = _catalog.model_kind(model)
        default = (
            " (default)"
            if model
            in (
                _catalog.DEFAULT_MODEL,
                _catalog.DEFAULT_IMAGE_MODEL,
            )
            else ""
        )
        print(
            f"{model:<{width}}  {kind:<5}  {', '.join(aliases.get(model, []))}{default}", file=out
        )


@asynccontextmanager
async def service_url(base_url: str | None, force_emulator: bool) -> AsyncIterator[str]:
    """The base URL to use: the one given, else the environment's, else an emulator's."""
    configured = base_url or os.environ.get(BASE_URL_ENV)
    if configured and not force_emulator:
        yield configured
        return
    try:
        from .emulator import Emulator
    except ImportError:
        raise CommandError(
            "no service configured (--base-url or $REPLICATE_HOME_BASE_URL) and the emulator "
            "is not installed: pip install 'replicate-home[emulator]'"
        ) from None
    if not force_emulator:
        print(
            "replicate-home: no service configured; using the local emulator "
            "(pass --base-url to use a real one)",
            file=sys.stderr,
        )
    async with Emulator().serve() as emulator:
        yield emulator.base_url


async def generate_command(args: argparse.Namespace) -> None:
    async with service_url(args.base_url, args.emulator) as base_url:
        client = ReplicateHome(base_url, timeout=args.timeout, poll_interval=args.poll_interval)
        # Validate before any request so bad input fails fast.
        model = client.get_model(args.model)
        async with client:
            ended_with_newline = True
            async for chunk in client.generate(model, prompt=args.prompt):
                if isinstance(chunk, ImageResponse):
                    for url in chunk.images:
                        print(url, flush=True)
                    if args.save is not None:
                        await save_images(chunk, args.save, model)
                else:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                    ended_with_newline = chunk.endswith("\n")
            if not ended_with_newline:
                sys.stdout.write("\n")


async def compare_command(args: argparse.Namespace) -> None:
    async with service_url(args.base_url, args.emulator) as base_url:
        client = ReplicateHome(base_url, timeout=args.timeout, poll_interval=args.poll_interval)
        # Resolve (and so validate) every model before any request.
        models = [client.get_model(model) for model in args.models]
        async with client:
            events = client.fan_out(models, prompt=args.prompt, limit=args.limit, progress=True)
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


async def serve_emulator(host: str, port: int, duration: float) -> None:
    try:
        from .emulator import Emulator, Scenario
        from .emulator._server import serve_forever
    except ImportError:
        raise CommandError(
            "the emulator is not installed: pip install 'replicate-home[emulator]'"
        ) from None

    def ready(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)

    await serve_forever(Emulator(Scenario(duration=duration)), host, port, on_ready=ready)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
