"""Every module the package imports is declared by the package or by the extra it belongs
to (CI's ``.ci/clean-install`` checks the same on real fresh installs, with the network)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check is the same on 3.10

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "replicate_home"

#: Distribution name -> the top-level module it installs, where they differ.
MODULE_OF = {"httpx-sse": "httpx_sse"}

#: Modules that only the given extra may import (the command line's modules, the emulator).
EXTRA_OF = {
    "cli/_compare.py": "cli",
    "cli/_runs.py": "cli",
    "cli/_run_view.py": "cli",
    "cli/_terminal_view.py": "cli",
    "emulator": "emulator",
    "comparisons/_report.py": "report",
    "comparisons/_assertions.py": "scoring",
    "viewer": "viewer",
}


def _declared() -> dict[str | None, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def modules(requirements: list[str]) -> set[str]:
        names = set()
        for requirement in requirements:
            name = requirement.split(";")[0]
            for sep in "<>=!~[ ":
                name = name.split(sep)[0]
            names.add(MODULE_OF.get(name, name.replace("-", "_")))
        return names

    core = modules(project["dependencies"])
    declared: dict[str | None, set[str]] = {None: core}
    for extra, requirements in project["optional-dependencies"].items():
        declared[extra] = core | modules(requirements)
    return declared


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_import_is_declared() -> None:
    declared = _declared()
    # The CLI can reach the emulator (it imports it lazily, and says how to install it).
    declared["cli"] |= declared["emulator"]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        extra = EXTRA_OF.get(relative.as_posix(), EXTRA_OF.get(relative.parts[0]))
        allowed = declared[extra] | set(sys.stdlib_module_names) | {"replicate_home"}
        missing += [f"{relative}: {name}" for name in sorted(_imports(path) - allowed)]
    assert not missing, f"imported but not declared: {missing}"


def test_the_emulator_serves_without_sniffio() -> None:
    """An asyncio-only install has no sniffio (anyio and httpx do not require it); under
    trio it is there (trio needs it), so asyncio is the case to check."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sniffio"] = None  # import sniffio raises ImportError
        import anyio
        from replicate_home import ReplicateHome
        from replicate_home.emulator import Emulator, Scenario

        async def main():
            async with Emulator(Scenario(duration=0.05)).serve() as emu:
                async with ReplicateHome(emu.base_url) as client:
                    print((await client.predict(prompt="hi")).status)

        anyio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "succeeded"
