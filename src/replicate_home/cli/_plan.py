"""Everything a command needs, checked before anything starts: where it runs (a
service, or an emulator of this process), its models and its inputs. A problem is a
:class:`UsageError` (exit 2, nothing on stdout)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _catalog
from .._api import BASE_URL_ENV as API_BASE_URL_ENV
from .._api import DEFAULT_API_URL, TOKEN_ENV
from .._api_args import check_webhook
from .._client import BaseClient
from .._home import BASE_URL_ENV as HOME_BASE_URL_ENV
from .._home import DEFAULT_BASE_URL as HOME_DEFAULT_URL
from .._models import Deployment
from ..comparisons._prompts import PromptRow
from ._common import DEFAULT_FILE_CAP, Plan, Target, UsageError, make_client, one_line
from ._emulator import check_emulator_installed
from ._save import check_save_directory
from ._scoring import is_scored
from ._view import check_viewer_installed

__all__ = ["choose_target", "make_api_plan", "make_plan", "parse_inputs"]

#: The token sent to an emulator started here when none is set.
EMULATOR_TOKEN = "r8_replicate_home_cli"

#: Where an emulator started for a check (before the real one) pretends to be.
_PLACEHOLDER_URL = "http://127.0.0.1"


def choose_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """Where the command runs; a :class:`UsageError` when a named service lacks what it
    needs. An environment variable that is set counts as configuration even when empty
    (a CI secret that went missing must not turn into the emulator)."""
    token = environ.get(TOKEN_ENV, "").strip() or None
    if args.emulator:
        service = args.service or ("api" if token else "home")
        # Not a word an answer holds: a token is scrubbed from every answer (the
        # emulator's account is called "emulator").
        return Target(service, None, token or EMULATOR_TOKEN)
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


def make_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    """Check a ``generate`` or ``compare`` command; :class:`UsageError` for any problem."""
    target = choose_target(args, environ)
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        raise UsageError("the trio backend needs trio: pip install trio")
    if target.base_url is None:
        check_emulator_installed()
    if getattr(args, "view", False):
        check_viewer_installed()
    inputs = parse_inputs(args.inputs)
    if args.webhook is not None or args.webhook_events is not None:
        if target.service != "api":
            raise UsageError("--webhook needs the api service (webhooks are an API feature)")
        try:
            check_webhook(args.webhook, args.webhook_events)
        except ValueError as error:
            raise UsageError(one_line(error)) from None
    if getattr(args, "file_encoding", None) is not None and target.service != "api":
        raise UsageError("--file-encoding needs the api service (file inputs are an API feature)")
    if args.save is not None:
        check_save_directory(args.save)
    prompt_set = args.command == "compare" and _is_prompt_set(args)
    # Each call to check: a prompt and the inputs that go with it (a prompt set's rows
    # each, their own inputs over -i's, as the run merges them).
    calls: list[tuple[str | None, dict[str, Any] | None]] = [(args.prompt, inputs)]
    rows: tuple[PromptRow, ...] = ()
    if prompt_set:
        if args.save is not None:
            raise UsageError("--save is for one prompt; a prompt set's outputs are in --db")
        from ._runs import check_prompt_set  # the results database: only when asked

        rows = tuple(check_prompt_set(args))
        calls = [(row.prompt, {**(inputs or {}), **row.input} or None) for row in rows]
    elif args.command == "compare":
        if not args.keep_files or args.max_file_bytes != DEFAULT_FILE_CAP:
            raise UsageError("--no-keep-files and --max-file-bytes are for a prompt set")
        if args.prompt is None:
            raise UsageError("compare needs a PROMPT (or a prompt set: -p, --prompts FILE)")
        if not args.models:
            raise UsageError("compare needs at least one -m MODEL")
    requested = args.models if args.command == "compare" else [args.model]
    try:
        client = make_client(target, args, target.base_url or _PLACEHOLDER_URL)
    except ValueError as error:
        raise UsageError(one_line(error)) from None
    models: list[str | Deployment] = []
    for number, (prompt, call_inputs) in enumerate(calls, 1):
        try:
            checked = [_checked_model(client, target, m, prompt, call_inputs) for m in requested]
        except ValueError as error:
            where = f"prompt {number} of the set: " if len(calls) > 1 else ""
            raise UsageError(where + _for_the_command_line(error, target)) from None
        models = models or checked
    if prompt_set:
        from ._scoring import check_judges, scoring_from_args

        try:
            check_judges(client, scoring_from_args(args)[1])
        except ValueError as error:
            raise UsageError("a judge: " + _for_the_command_line(error, target)) from None
    return Plan(args, target, models, inputs, prompt_set, rows)


def _for_the_command_line(error: ValueError, target: Target) -> str:
    """The library's message in the command line's terms: what it calls ``ReplicateAPI``
    is ``--service api`` here."""
    text = one_line(error)
    if target.service == "home":
        text = text.replace("use ReplicateAPI", "use --service api")
    return text


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
        or args.retry
        or is_scored(args)
        or args.view
    )


def make_api_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    """Check a command of the official API only (``predictions``, ``trainings``,
    ``deployments``, ``collections`` ...): a token, or ``--emulator``."""
    if not args.emulator and TOKEN_ENV not in environ and args.base_url is None:
        raise UsageError(
            f"{args.command} live on the official API: export {TOKEN_ENV}=r8_... "
            "(or pass --emulator to try the emulator)"
        )
    target = choose_target(args, environ)
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        raise UsageError("the trio backend needs trio: pip install trio")
    if target.base_url is None:
        check_emulator_installed()
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
