"""``--save DIR``: data: URIs and URLs alike, one line for a failed download, names of
our own (never from a URL), nothing outside DIR, nothing overwritten, text saved too."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import replicate_home.emulator
from replicate_home import _downloads
from replicate_home.cli import main
from replicate_home.emulator import Emulator, Scenario


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _emulate(monkeypatch: pytest.MonkeyPatch, **scenario: object) -> None:
    """Make the CLI's own emulator play ``scenario``."""
    patched = functools.partial(Emulator, Scenario(duration=0.05, **scenario))  # type: ignore[arg-type]
    monkeypatch.setattr(replicate_home.emulator, "Emulator", patched)


def _entries(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_save_writes_data_uri_images(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _emulate(monkeypatch, file_output="data", images=2)
    argv = ["generate", "--emulator", "--backend", backend, "-m", "sdxl"]
    assert main([*argv, "--save", str(tmp_path), "a cat"]) == 0
    # sdxl is an alias of bytedance/sdxl-lightning-4step: the files are named for it.
    first = {"sdxl-lightning-4step-1.png", "sdxl-lightning-4step-2.png"}
    assert _entries(tmp_path) == first
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in tmp_path.iterdir())
    # A second run does not overwrite the first one's files.
    assert main([*argv, "--save", str(tmp_path), "a cat"]) == 0
    second = {"sdxl-lightning-4step-1-2.png", "sdxl-lightning-4step-2-2.png"}
    assert _entries(tmp_path) == first | second
    assert "saved" in capsys.readouterr().err


def test_a_failed_download_is_one_line_and_a_non_zero_exit(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_downloads, "RETRY_DELAY", 0.001)
    # Nothing listens on port 9; the URL's path tries to climb out of DIR.
    _emulate(monkeypatch, output=["http://127.0.0.1:9/a/b/../../x.png"])
    save = tmp_path / "out"
    code = main(
        ["generate", "--emulator", "--backend", backend, "-m", "sdxl", "--save", str(save), "a"]
    )
    assert code != 0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "Traceback" not in err
    assert "downloading http://127.0.0.1:9/" in errors[0]
    assert _entries(tmp_path) <= {"out"}
    assert not any(save.iterdir())


def test_save_names_come_from_the_model_and_position_not_the_url(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    _emulate(monkeypatch, output=[png, "data:image/webp;base64,UklGRg=="])
    save = tmp_path / "a" / "b"
    argv = ["generate", "--emulator", "--backend", backend, "-m", "sdxl"]
    assert main([*argv, "--save", str(save), "x"]) == 0
    # DIR is created; each suffix comes from the file's content type.
    assert _entries(tmp_path) == {
        "a",
        "a/b",
        "a/b/sdxl-lightning-4step-1.png",
        "a/b/sdxl-lightning-4step-2.webp",
    }


@pytest.mark.slow
def test_save_with_a_text_model_writes_the_text(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", "--emulator", "--backend", backend, "--save", str(tmp_path), "Hi there"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (saved,) = tmp_path.iterdir()
    assert saved.name.endswith(".txt")
    assert saved.read_text() == out.rstrip("\n")


def test_compare_saves_every_model_s_files(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulate(monkeypatch, file_output="data")
    argv = ["compare", "--emulator", "--backend", backend, "--json", "--save", str(tmp_path)]
    models = ["-m", "sdxl", "-m", "sdxl", "-m", "gemma-2b"]
    assert main([*argv, *models, "a hat"]) == 0
    names = _entries(tmp_path)
    assert {"1-sdxl-lightning-4step-1.png", "2-sdxl-lightning-4step-1.png"} <= names
    assert any(name.startswith("3-gemma-2b") and name.endswith(".txt") for name in names)
