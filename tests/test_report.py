"""The HTML report in a real headless Chromium: every image decodes, audio and video
play, the grid has every cell, and a hostile output stays text (no script of an output
ever runs)."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import struct
import subprocess
import wave
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from replicate_home import ReplicateAPI
from replicate_home.comparisons import PromptRow, ResultsStore, run_comparison, write_report
from replicate_home.emulator import Emulator, Scenario

LLAMA = "meta/meta-llama-3-8b-instruct"
FLUX = "black-forest-labs/flux-schnell"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'

#: The page the browser opens: the report in a frame, and a script of the test's own
#: (the report itself allows none) that reads the frame's DOM once everything loaded.
HARNESS = """<!DOCTYPE html><html><body>
<iframe id="report" src="report.html" style="width:1400px;height:1000px"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", function () {
  var out = document.getElementById("result");
  try {
    var doc = document.getElementById("report").contentDocument;
    var all = function (selector, read) {
      return Array.prototype.map.call(doc.querySelectorAll(selector), read);
    };
    out.textContent = JSON.stringify({
      title: doc.title,
      scripts: doc.querySelectorAll("script").length,
      images: all("img", function (img) {
        return {src: img.getAttribute("src"), complete: img.complete,
                width: img.naturalWidth, height: img.naturalHeight};
      }),
      cells: all("td.cell", function (td) {
        return {cell: td.getAttribute("data-cell"), status: td.getAttribute("data-status"),
                text: td.textContent};
      }),
      columns: all("table.grid thead th", function (th) { return th.textContent; }),
      rows: doc.querySelectorAll("table.grid tbody tr").length,
      ranking: all("#ranking tbody tr", function (tr) { return tr.getAttribute("data-model"); }),
      summary: all("#summary tbody tr", function (tr) {
        return Array.prototype.map.call(tr.children, function (td) { return td.textContent; });
      })
    });
  } catch (error) { out.textContent = "ERROR " + error; }
});
</script></body></html>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")


def read_in_browser(directory: Path, harness: str = HARNESS) -> dict[str, Any]:
    (directory / "harness.html").write_text(harness, encoding="utf-8")
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--allow-file-access-from-files",  # the harness reads the framed report's DOM
        "--autoplay-policy=no-user-gesture-required",  # the harness presses play
        "--virtual-time-budget=10000",
        "--dump-dom",
        (directory / "harness.html").as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    match = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.DOTALL)
    assert match, done.stdout[-2000:]
    text = html.unescape(match.group(1))
    assert not text.startswith(("ERROR", "pending")), text
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_report_in_chromium(tmp_path: Path) -> None:
    emulator = Emulator(Scenario(duration=0.2))
    emulator.script(HOSTILE, Scenario(duration=0.1, output=[HOSTILE]), model=LLAMA)
    emulator.script(HOSTILE, Scenario(duration=0.1, outcome="failed", error=HOSTILE), model=FLUX)
    prompts = ["a lighthouse at dusk", HOSTILE, "a bowl of pears"]
    async with emulator.serve(), ResultsStore.open(tmp_path / "runs.db") as store:
        async with ReplicateAPI("token", base_url=emulator.base_url) as client:
            run = await run_comparison(client, store, prompts, [LLAMA, FLUX])
        # Written while the emulator serves the images; read after it is gone (offline).
        page = await write_report(store, run.id, tmp_path / "report.html")
    seen = read_in_browser(tmp_path)
    assert page.name == "report.html"
    assert seen["title"] == f"Comparison {run.id}"  # no output's script renamed it
    assert seen["scripts"] == 0
    assert seen["rows"] == len(prompts)
    assert seen["columns"] == ["prompt", LLAMA, FLUX]
    assert [cell["cell"] for cell in seen["cells"]] == [str(n) for n in range(6)]
    statuses = [cell["status"] for cell in seen["cells"]]
    assert statuses == ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 2
    # The standings above the grid: every model ranked (no votes yet: all at 1000), and
    # the per-model summary (model, cells, succeeded, failed, ...).
    assert sorted(seen["ranking"]) == sorted([LLAMA, FLUX])
    assert [row[:4] for row in seen["summary"]] == [[LLAMA, "3", "3", "0"], [FLUX, "3", "2", "1"]]
    # The two successful image cells: each image saved beside the page and decoded.
    assert len(seen["images"]) == 2
    for image in seen["images"]:
        assert image["src"].startswith("report_files/")
        assert image["complete"]
        assert image["width"] > 0
        assert image["height"] > 0
    # The hostile output, prompt and error are there as text, not as markup.
    assert HOSTILE in seen["cells"][2]["text"]  # the text model's output
    assert HOSTILE in seen["cells"][3]["text"]  # the image model's error
    assert all(image["src"] != "x" for image in seen["images"])


#: The page that plays the report's media: every image decoded, every audio and video
#: element loaded and played until its clock moved, read from the framed report.
MEDIA_HARNESS = """<!DOCTYPE html><html><body>
<iframe id="report" src="report.html" style="width:1400px;height:1000px"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", function () {
  var out = document.getElementById("result");
  var doc = document.getElementById("report").contentDocument;
  var images = Array.prototype.map.call(doc.querySelectorAll("img"), function (img) {
    return {src: img.getAttribute("src"), width: img.naturalWidth};
  });
  var media = Array.prototype.slice.call(doc.querySelectorAll("audio, video"));
  var played = [];
  var left = media.length;
  function finish() {
    out.textContent = JSON.stringify({images: images, media: played,
      missing: doc.querySelectorAll(".missing-file").length});
  }
  function done() { left -= 1; if (left === 0) { finish(); } }
  media.forEach(function (element) {
    var seen = {tag: element.tagName.toLowerCase(), src: element.getAttribute("src"),
                played: false, error: null};
    played.push(seen);
    element.muted = true;
    element.addEventListener("error", function () {
      seen.error = "error " + (element.error ? element.error.code : "?"); done();
    }, {once: true});
    element.addEventListener("timeupdate", function moved() {
      if (element.currentTime > 0) {
        element.removeEventListener("timeupdate", moved);
        seen.played = true;
        seen.duration = element.duration;
        seen.width = element.videoWidth || 0;
        element.pause();
        done();
      }
    });
    element.play().catch(function (error) { seen.error = "play: " + error; done(); });
  });
  if (left === 0) { finish(); }
});
</script></body></html>
"""


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A WAV file of a 440 Hz tone (16-bit mono)."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames)
    return buffer.getvalue()


#: A short VP8 WebM, 96x64 (the viewer's browser tests play it too).
WEBM = Path(__file__).parent / "data" / "tiny.webm"
SONG = "acme/tone-maker"  # any other model name is a text model: scripted to give a file
VIDEO = "minimax/video-01"


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_report_written_offline_after_the_emulator_stopped_shows_and_plays_everything(
    tmp_path: Path,
) -> None:
    emulator = Emulator(Scenario(duration=0.1), file_output="url")
    db = tmp_path / "runs.db"
    async with emulator.serve():
        async with ReplicateAPI("token", base_url=emulator.base_url) as client:
            # The audio and video outputs are files the emulator serves by URL, as
            # Replicate's delivery host does (uploaded, then scripted as the output).
            tone = await client.upload_file(wav(), filename="tone.wav")
            clip = await client.upload_file(WEBM.read_bytes(), filename="clip.webm")
            emulator.script("a tone", Scenario(output=emulator.download_url(tone.id)), model=SONG)
            emulator.script("a clip", Scenario(output=emulator.download_url(clip.id)), model=VIDEO)
            async with ResultsStore.open(db) as store:
                images = await run_comparison(client, store, ["a lighthouse", "pears"], [FLUX])
                sounds = await run_comparison(client, store, ["a tone"], [SONG])
                clips = await run_comparison(client, store, [PromptRow("a clip")], [VIDEO])
    # Offline, days later as far as the report knows: one page of every run's files.
    async with ResultsStore.open(db) as store:
        for run, name in ((images, "images"), (sounds, "sounds"), (clips, "clips")):
            folder = tmp_path / name
            folder.mkdir()
            await write_report(store, run.id, folder / "report.html")
    seen = read_in_browser(tmp_path / "images", MEDIA_HARNESS)
    assert len(seen["images"]) == 2
    assert seen["missing"] == 0
    assert all(image["width"] > 0 for image in seen["images"])
    (sound,) = read_in_browser(tmp_path / "sounds", MEDIA_HARNESS)["media"]
    assert (sound["tag"], sound["error"], sound["played"]) == ("audio", None, True)
    assert sound["src"].endswith(".wav")
    assert sound["duration"] == pytest.approx(1.0, abs=0.05)
    (video,) = read_in_browser(tmp_path / "clips", MEDIA_HARNESS)["media"]
    assert (video["tag"], video["error"], video["played"]) == ("video", None, True)
    assert video["src"].endswith(".webm")
    assert video["width"] == 96


@pytest.mark.anyio
async def test_the_report_has_the_summary_scores_and_leaderboard(tmp_path: Path) -> None:
    models = [LLAMA, "google-deepmind/gemma-2b-it"]
    async with ResultsStore.open(tmp_path / "runs.db") as store:
        cells = [
            (p, m, model, f"q{p}", {"prompt": f"q{p}"})
            for p in range(3)
            for m, model in enumerate(models)
        ]
        run = await store.create_run(service="api", models=models, cells=cells, settings={})
        for number in range(6):
            await store.record_end(
                run.id, number, status="succeeded", output_text="x" * (10 + number), latency=1.0
            )
        for p in range(3):  # the first model wins every vote
            await store.record_vote(run.id, 2 * p, 2 * p + 1, "a", "ann")
        await store.record_thumb(run.id, 1, "ann", -1)
        page = await write_report(store, run.id, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    ranking = text[text.index('id="ranking"') : text.index("</table>", text.index('id="ranking"'))]
    assert ranking.index(LLAMA) < ranking.index(models[1])  # ranked first
    assert "3 votes" in text
    assert 'id="pairs"' in text
    assert 'id="summary"' in text
    assert "<script" not in text
