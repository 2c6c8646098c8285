"""The viewer in a real headless Chromium (Debian's, driven by Playwright through
``executable_path``: no browser is ever downloaded): cells appear live while a run in
another process goes, a click shows the full image, audio and video load and play,
text streams token by token under ``compare --view``, twenty keyboard votes make the
leaderboard, and hostile outputs stay text while no script but the viewer's runs.

Screenshots go to ``$REPLICATE_HOME_SCREENSHOTS`` when set (``docs/img`` for the docs'
judging page), else to the test's temporary directory.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from replicate_home.comparisons import ResultsStore
from replicate_home.emulator import Emulator, Scenario, serve_asgi
from replicate_home.viewer import Viewer

pytestmark = pytest.mark.slow

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Installed before any page script: records every CSP violation the page reports.
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective);
});
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(WATCH_CSP)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """An event loop in a thread for the servers (the browser is driven from here)."""
    with start_blocking_portal() as running:
        yield running


def serving(portal: BlockingPortal, manager: Any) -> AbstractContextManager[Any]:
    return portal.wrap_async_context_manager(manager)


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    directory = Path(os.environ.get("REPLICATE_HOME_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(directory / name), full_page=False)


def no_foreign_script_ran(page: Any) -> None:
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0


@contextmanager
def cli(*arguments: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "replicate_home", *arguments]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()


def wait_for_line(process: subprocess.Popen[str], marker: str) -> str:
    """The first stderr line of ``process`` that holds ``marker``."""
    assert process.stderr is not None
    for line in process.stderr:
        if marker in line:
            return line
    raise AssertionError(f"the command ended without printing {marker!r}")


def api_env(base_url: str) -> dict[str, str]:
    env = {**os.environ, "REPLICATE_API_TOKEN": "r8_viewer", "REPLICATE_BASE_URL": base_url}
    env.pop("REPLICATE_HOME_BASE_URL", None)
    return env


def test_cells_appear_live_while_another_process_runs(
    portal: BlockingPortal, page: Any, tmp_path: Path
) -> None:
    database = tmp_path / "runs.db"
    prompts = [f"a lighthouse, take {n}" for n in range(6)] + [HOSTILE]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    emulator = Emulator(Scenario(duration=0.8), file_output="url")
    emulator.script(HOSTILE, Scenario(duration=0.3, output=[HOSTILE]), model=LLAMA)
    with serving(portal, emulator.serve()) as emu:
        arguments = ["compare", "--service", "api", "--base-url", emu.base_url]
        arguments += ["--prompts", str(tmp_path / "prompts.txt"), "-m", LLAMA, "-m", FLUX]
        arguments += ["--db", str(database), "--name", "live", "--limit", "2"]
        with cli(*arguments, "--allow-failures", env=api_env(emu.base_url)) as process:
            wait_for_line(process, "run live:")  # recorded: the viewer can open it
            # Any failure below must not leave the run going: cli() kills it.
            with serving(portal, Viewer(database).serve()) as url:
                page.goto(f"{url}/runs/live/grid")
                page.wait_for_selector("td.cell[data-cell]")
                page.evaluate("window.__same_page = true")
                done_at_start = page.locator('td.cell[data-status="succeeded"]').count()
                total = len(prompts) * 2
                page.wait_for_function(
                    "n => document.querySelectorAll('td.cell[data-status=\"succeeded\"]')"
                    ".length === n",
                    arg=total,
                    timeout=60_000,
                )
                assert done_at_start < total  # they came in while the page was open...
                assert page.evaluate("window.__same_page") is True  # ...with no reload
                assert process.wait(timeout=30) == 0
                screenshot(page, "viewer-grid.png", tmp_path)
                # A click shows the image at full size.
                thumb = page.locator("img.thumb").first
                thumb.wait_for()
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('img.thumb'))"
                    ".every(img => img.complete && img.naturalWidth > 0)"
                )
                natural = thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]")
                thumb.click()
                full = page.locator("#lightbox-image")
                full.wait_for(state="visible")
                page.wait_for_function(
                    "() => document.getElementById('lightbox-image').naturalWidth > 0"
                )
                shown = full.evaluate("img => [img.width, img.height]")
                assert shown == natural
                page.keyboard.press("Escape")
                full.wait_for(state="hidden")
                # A thumbs up, under the voter's name, through the token-guarded POST.
                page.fill("#voter", "ann")
                page.locator("#voter").dispatch_event("change")
                page.locator("td.cell .thumb-up").first.click()
                page.wait_for_selector('td.cell[data-thumb="1"]')
                # The hostile output is there as text; none of its markup ran.
                text = page.locator("td.cell pre.text", has_text="window.pwned=1")
                assert text.count() == 1
                assert HOSTILE in text.inner_text()
                no_foreign_script_ran(page)
                prompt_cell = page.locator("th.prompt", has_text="<script>")
                assert prompt_cell.count() == 1
                # Markup slipped into the page (as a bug would) still runs no script: CSP.
                page.evaluate(
                    """() => {
                      document.body.insertAdjacentHTML(
                        "beforeend", '<img id="slipped" src="x" onerror="window.pwned=3">');
                      var script = document.createElement("script");
                      script.textContent = "window.pwned = 4";
                      document.body.appendChild(script);
                    }"""
                )
                page.wait_for_function("() => window.__violations.length >= 2")
                no_foreign_script_ran_after = page.evaluate("window.pwned")
                assert no_foreign_script_ran_after is None
                assert "script-src-elem" in page.evaluate("window.__violations") or (
                    "script-src" in page.evaluate("window.__violations")
                )


def write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8000))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))


def test_audio_and_video_load_and_play(portal: BlockingPortal, page: Any, tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "tone.wav")
    shutil.copy(Path(__file__).with_name("data") / "tiny.webm", media / "clip.webm")
    files = Starlette(routes=[Mount("/files", StaticFiles(directory=media))])
    database = tmp_path / "runs.db"
    with serving(portal, serve_asgi(files)) as files_url:

        async def record() -> None:
            async with ResultsStore.open(database) as store:
                cells = [
                    (0, 0, "openai/tts", "a tone", {"prompt": "a tone"}),
                    (0, 1, "minimax/video-01", "a tone", {"prompt": "a tone"}),
                ]
                run = await store.create_run(
                    service="api",
                    models=["openai/tts", "minimax/video-01"],
                    cells=cells,
                    settings={},
                    run_id="media",
                )
                await store.record_end(
                    run.id, 0, status="succeeded", images=[f"{files_url}/files/tone.wav"]
                )
                await store.record_end(
                    run.id, 1, status="succeeded", images=[f"{files_url}/files/clip.webm"]
                )

        portal.call(record)
        with serving(portal, Viewer(database).serve()) as url:
            page.goto(f"{url}/runs/media/grid")
            for selector in ("audio", "video"):
                element = page.locator(f"td.cell {selector}")
                element.wait_for()
                played = element.evaluate(
                    """async el => {
                      el.muted = true;
                      await el.play();
                      await new Promise(done => {
                        var check = () => el.currentTime > 0 ? done() : setTimeout(check, 20);
                        check();
                      });
                      return {ready: el.readyState, duration: el.duration,
                              error: el.error && el.error.code};
                    }"""
                )
                assert played["error"] is None
                assert played["ready"] >= 2  # HAVE_CURRENT_DATA: it loaded
                assert played["duration"] > 0.5
            screenshot(page, "viewer-media.png", tmp_path)


def test_compare_view_streams_text_token_by_token(
    portal: BlockingPortal, page: Any, tmp_path: Path
) -> None:
    database = tmp_path / "runs.db"
    with serving(portal, Emulator(Scenario(duration=4.0)).serve()) as emu:
        arguments = ["compare", "--view", "--service", "api", "--base-url", emu.base_url]
        arguments += ["--db", str(database), "--name", "streamed", "-m", LLAMA, "a long story"]
        with cli(*arguments, env=api_env(emu.base_url)) as process:
            line = wait_for_line(process, "viewer at ")
            url = line.split("viewer at ", 1)[1].split()[0]
            assert url.endswith("/runs/streamed/grid")
            page.goto(url)
            # Text arrives in the page while the cell still runs...
            page.wait_for_function(
                "() => { var td = document.querySelector('td.cell[data-cell=\"0\"]');"
                " return td && td.dataset.status === 'running'"
                " && Number(td.dataset.streamed || 0) > 0; }",
                timeout=30_000,
            )
            partial = page.locator('td.cell[data-cell="0"] pre.text').inner_text()
            # ...and the whole of it once it ended (the streamed text was its start).
            page.wait_for_function(
                "() => document.querySelector('td.cell[data-cell=\"0\"]')"
                ".dataset.status === 'succeeded'",
                timeout=30_000,
            )
            final = page.locator('td.cell[data-cell="0"] pre.text').inner_text()
            assert final.startswith(partial)
            assert len(final) > len(partial)
            assert process.wait(timeout=30) == 0


def test_twenty_keyboard_votes_make_the_leaderboard(
    portal: BlockingPortal, page: Any, tmp_path: Path
) -> None:
    database = tmp_path / "runs.db"
    models = [LLAMA, "google-deepmind/gemma-2b-it", "mistralai/mistral-7b"]

    async def record() -> None:
        async with ResultsStore.open(database) as store:
            cells = [
                (p, m, model, f"question {p}", {"prompt": f"question {p}"})
                for p in range(8)
                for m, model in enumerate(models)
            ]
            run = await store.create_run(
                service="api", models=models, cells=cells, settings={}, run_id="votes"
            )
            for number, (_, m, _, _, _) in enumerate(cells):
                # The first model writes answers a voter prefers (they say "best").
                text = f"best answer {number}" if m == 0 else f"an answer {number} <b>{HOSTILE}"
                await store.record_end(run.id, number, status="succeeded", output_text=text)

    portal.call(record)
    with serving(portal, Viewer(database).serve()) as url:
        page.goto(f"{url}/runs/votes/vote")
        page.fill("#voter", "ann")
        page.locator("#voter").dispatch_event("change")
        page.locator("h1").click()  # leave the name field: keys are votes again
        for number in range(20):
            page.wait_for_function("() => document.body.dataset.ready === 'yes'")
            if number == 0:
                screenshot(page, "viewer-vote.png", tmp_path)
            a = page.locator("#side-a pre.text").inner_text()
            b = page.locator("#side-b pre.text").inner_text()
            key = "a" if a.startswith("best") else "b" if b.startswith("best") else "t"
            page.keyboard.press(key.upper() if number % 2 else key)
            page.wait_for_function("n => document.body.dataset.votes === String(n)", arg=number + 1)
            assert "A was " in page.locator("#reveal").inner_text()
        no_foreign_script_ran(page)
        page.goto(f"{url}/runs/votes/leaderboard")
        assert "20 votes" in page.locator("#vote-total").inner_text()
        rows = page.locator("#ranking tbody tr")
        assert rows.count() == 3
        assert rows.first.get_attribute("data-model") == LLAMA  # the one voters preferred
        assert page.locator("#pairs tbody tr").count() >= 1
        screenshot(page, "viewer-leaderboard.png", tmp_path)
        no_foreign_script_ran(page)
