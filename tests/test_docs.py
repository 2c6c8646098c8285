"""Every code example in the docs runs, for real, against the emulator.

The convention, for ``README.md`` and ``docs/*.md`` (the site):

- A ```` ```python ```` block is a **complete program** unless an HTML comment on the line
  just before it says otherwise. It runs as it is, under the backend it names
  (``trio.run``, ``asyncio.run`` or ``anyio.run``); an async program that names none fails.
- ``<!-- async -->``: the block is the body of an ``async def``; it runs under asyncio,
  then under trio.
- ``<!-- async: client = ReplicateHome(...) -->`` (or ``ReplicateAPI(...)``): the same,
  inside ``async with ReplicateHome(...) as client:``. The block imports whatever else it
  uses.
- ``<!-- pytest -->``: the block is a test module; pytest runs it and it must pass.
- ``<!-- fragment: REASON -->``: not run; the reason is required (it is the skip reason),
  and a Python fragment must still compile. Keep them few and justified: a block that
  needs a real token, say. Any other comment right before a block is an error (a typo
  must not turn a program into a fragment, or the reverse).
- Python examples must exit 0 and print something (one that shows nothing probably ran
  nothing); warnings are errors, as in the project's own tests.
- ```` ```sh ```` blocks: each line that starts with ``replicate-home`` (or
  ``uv run replicate-home``) runs and must exit 0, except ``replicate-home emulator``
  (it serves until stopped); other lines (``pip install``, ``export``, ``python
  my_app.py``) do not. ``<!-- fragment: REASON -->`` before the block skips all of it.

How: every example runs in a subprocess (``sys.executable -W error``, a fresh temporary
directory, a timeout), a few at a time, with an environment that points both services at
an emulator this module starts in another process: ``REPLICATE_HOME_BASE_URL`` and
``REPLICATE_BASE_URL`` are its URL, and ``REPLICATE_API_TOKEN`` is set (for shell lines,
only where their block mentions it: without a token the command line picks the homepage
service). So what users read is exactly what runs. Examples that start an emulator of
their own (``Emulator().serve()``) just do.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Seconds one example may take (the whole module stays well under a minute).
EXAMPLE_TIMEOUT = 30
#: How examples run: warnings are errors, as in the project's own tests.
PYTHON = [sys.executable, "-W", "error"]
#: Examples running at once (each is a subprocess that mostly waits on the emulator).
WORKERS = min(8, 2 * (os.cpu_count() or 2))
#: Fragments are the exception: more than this many means examples stopped running.
MAX_FRAGMENTS = 6

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_COMMENT = re.compile(r"^\s*<!--(?P<text>.*?)-->\s*$")
_MARKER = re.compile(
    r"^\s*(?:(?P<fragment>fragment):\s*(?P<reason>\S.*?)"
    r"|(?P<async>async)(?::\s*client\s*=\s*(?P<client>(?:ReplicateHome|ReplicateAPI)\(.*\)))?"
    r"|(?P<pytest>pytest))\s*$"
)
_PYTHON = frozenset({"python", "py"})
_SHELL = frozenset({"sh", "shell", "bash", "console"})
_BACKENDS = re.compile(r"\b(?:trio|asyncio|anyio)\.run\(")


@dataclass(frozen=True)
class Example:
    """One code block of a page, and how to run it."""

    page: str
    line: int
    language: str  # python, shell
    kind: str  # program, async, pytest, shell, fragment; invalid: a marker that is none
    code: str
    detail: str | None = None  # the fragment's reason, the client expression, or the error
    commands: tuple[tuple[str, ...], ...] = field(default=())
    needs_token: bool = True

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _marker(text: str, before: int) -> tuple[str | None, str | None]:
    """The marker in the HTML comment on the line before offset ``before``, if any.

    A comment there that is not a marker gives ``("invalid", why)``: a typo must not
    silently turn a fragment into a program, or a program into a fragment."""
    lines = text[:before].splitlines()
    comment = _COMMENT.match(lines[-1]) if lines else None
    if comment is None:
        return None, None
    marker = _MARKER.match(comment["text"])
    if marker is None:
        return "invalid", f"not an example marker: {lines[-1].strip()}"
    if marker["fragment"]:
        return "fragment", marker["reason"]
    if marker["async"]:
        return "async", marker["client"]
    return "pytest", None


def _shell_commands(body: str) -> tuple[tuple[str, ...], ...]:
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        command = line.strip().removeprefix("uv run ")
        if not command.startswith("replicate-home ") or command.split()[1:2] == ["emulator"]:
            continue
        commands.append(tuple(shlex.split(command, comments=True)[1:]))
    return tuple(commands)


def collect(text: str, name: str) -> Iterator[Example]:
    """The examples of one page (``name`` is where it is, for test ids)."""
    for block in _FENCE.finditer(text):
        lang = block["lang"].lower()
        if lang not in _PYTHON | _SHELL:
            continue
        line = text.count("\n", 0, block.start()) + 1
        kind, detail = _marker(text, block.start())
        body = _dedent(block["body"], block["indent"])
        if lang in _SHELL:
            commands = _shell_commands(body)
            if kind in ("fragment", "invalid"):
                yield Example(name, line, "shell", kind, body, detail)
            elif kind is not None:
                yield Example(
                    name, line, "shell", "invalid", body, "a shell block can only be a fragment"
                )
            elif commands:
                needs_token = "REPLICATE_API_TOKEN" in body
                yield Example(name, line, "shell", "shell", body, None, commands, needs_token)
            continue
        yield Example(name, line, "python", kind or "program", body, detail)


def _dedent(body: str, indent: str) -> str:
    return "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))


EXAMPLES = [
    example
    for page in PAGES
    for example in collect(page.read_text(encoding="utf-8"), page.relative_to(ROOT).as_posix())
]


def wrap_async(example: Example) -> str:
    """A program that runs ``example`` as the body of an async function, on both backends."""
    lines = [
        "import anyio as _anyio",
        "import replicate_home as _replicate_home",
        "",
        "",
        "async def _example():",
    ]
    indent = "    "
    if example.detail is not None:
        lines.append(f"    async with _replicate_home.{example.detail} as client:")
        indent = "        "
    lines += [indent + line if line.strip() else "" for line in example.code.splitlines()]
    lines += [
        "",
        "",
        'for _backend in ("asyncio", "trio"):',
        '    print(f"--- {_backend}", flush=True)',
        "    _anyio.run(_example, backend=_backend)",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def emulator_url(
    emulator_in_subprocess: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """``replicate-home emulator --port 0`` in another process; its base URL. It serves
    the deployment the docs run (``acme/chat``)."""
    deploy = "acme/chat=meta/meta-llama-3-8b-instruct"
    with emulator_in_subprocess("--duration", "0.2", "--deploy", deploy) as url:
        yield url


def example_env(url: str, pycache: Path, *, token: bool) -> dict[str, str]:
    """The environment of an example: both services on the emulator at ``url``.

    Compiled modules are cached in ``pycache`` (shared by the examples, outside the
    repository), even where ``PYTHONDONTWRITEBYTECODE`` is set: otherwise every example
    compiles every module it imports again, which is most of its time."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REPLICATE")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["REPLICATE_HOME_BASE_URL"] = url
    env["REPLICATE_BASE_URL"] = url
    if token:
        env["REPLICATE_API_TOKEN"] = "r8_docs-example-token"
    return env


def run(
    command: list[str], cwd: Path, env: dict[str, str], *, must_print: bool = False
) -> str | None:
    """Run one command; what went wrong, or ``None``. With ``must_print``, printing
    nothing is wrong too (an example that shows nothing probably ran nothing)."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        return f"no end after {EXAMPLE_TIMEOUT} s: {shlex.join(command)}\n{expired.stdout!r}"
    printed = "".join(line for line in done.stdout.splitlines() if not line.startswith("--- "))
    if done.returncode == 0 and (printed.strip() or not must_print):
        return None
    return (
        f"exited with {done.returncode}{'' if done.returncode else ', printing nothing'}: "
        f"{shlex.join(command)}\n"
        f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    )


def execute(example: Example, cwd: Path, env: dict[str, str]) -> str | None:
    """Run ``example`` in directory ``cwd``; what went wrong, or ``None``."""
    if example.kind == "shell":
        for words in example.commands:
            problem = run([*PYTHON, "-m", "replicate_home", *words], cwd, env)
            if problem is not None:
                return problem
        return None
    if example.kind == "pytest":
        (cwd / "pytest.ini").write_text("[pytest]\n")
        (cwd / "test_example.py").write_text(example.code)
        # Only the plugin the example uses (anyio's): the others take a second to load.
        env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        command = [*PYTHON, "-m", "pytest", "-q", "-p", "anyio.pytest_plugin"]
        return run([*command, "-p", "no:cacheprovider", "test_example.py"], cwd, env)
    source = wrap_async(example) if example.kind == "async" else example.code
    (cwd / "example.py").write_text(source)
    return run([*PYTHON, "example.py"], cwd, env, must_print=True)


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, emulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[str | None]]]:
    """Every selected example, started at once on a few workers (each is a subprocess that
    mostly waits), so the module takes seconds rather than a minute."""
    selected = [
        item.callspec.params["example"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_example_runs"
        and item.path == Path(__file__)
    ]
    pycache = tmp_path_factory.mktemp("pycache")
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {}
        for example in selected:
            if example.kind in ("fragment", "invalid"):
                continue
            cwd = tmp_path_factory.mktemp("example")
            env = example_env(emulator_url, pycache, token=example.needs_token)
            futures[example.id] = pool.submit(execute, example, cwd, env)
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.slow  # a subprocess per example, a minute of CPU in all: `pytest -m slow`
@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_example_runs(example: Example, outcomes: dict[str, Future[str | None]]) -> None:
    if example.kind == "fragment":
        pytest.skip(f"fragment: {example.detail}")
    if example.kind == "invalid":
        pytest.fail(f"{example.id}: {example.detail}", pytrace=False)
    problem = outcomes[example.id].result()
    if problem is not None:
        pytest.fail(f"{example.id} ({example.kind}) {problem}", pytrace=False)


# -- the convention itself ------------------------------------------------------------


def test_examples_were_found() -> None:
    kinds = {example.kind for example in EXAMPLES}
    assert {"program", "async", "pytest", "shell"} <= kinds
    assert len(EXAMPLES) > 20


def test_fragments_are_few_and_say_why() -> None:
    fragments = [example for example in EXAMPLES if example.kind == "fragment"]
    assert all(example.detail for example in fragments)
    assert len(fragments) <= MAX_FRAGMENTS, [example.id for example in fragments]


@pytest.mark.parametrize(
    "example",
    [example for example in EXAMPLES if example.language == "python"],
    ids=lambda example: example.id,
)
def test_python_blocks_compile(example: Example) -> None:
    """Fragments too; a program must name the backend it runs under if it is async."""
    code = wrap_async(example) if example.kind == "async" else example.code
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if example.kind == "fragment" else 0
    compile(code, example.id, "exec", flags=flags)
    if example.kind == "program" and "async def" in code:
        assert _BACKENDS.search(code), f"{example.id}: an async program that runs no backend"


def test_the_convention_is_read_as_documented() -> None:
    page = """\
```python
print("a program")
```
<!-- async: client = ReplicateAPI(timeout=5) -->
```python
print(await client.predict(prompt="hi"))
```
<!-- fragment: needs a real token -->
```python
await client.predict()
```
<!-- fragmnet: a typo -->
```python
print("not run")
```
```sh
pip install replicate-home    # not run
uv run replicate-home generate --emulator "it's run"  # a comment
replicate-home emulator --port 8000
```
```text
not an example
```
"""
    examples = list(collect(page, "page.md"))
    assert [(example.line, example.kind) for example in examples] == [
        (1, "program"),
        (5, "async"),
        (9, "fragment"),
        (13, "invalid"),
        (16, "shell"),
    ]
    assert examples[1].detail == "ReplicateAPI(timeout=5)"
    assert examples[2].detail == "needs a real token"
    assert examples[4].commands == (("generate", "--emulator", "it's run"),)
    assert not examples[4].needs_token
    assert "async with _replicate_home.ReplicateAPI(timeout=5) as client:" in wrap_async(
        examples[1]
    )
