"""The HTML report in a real headless Chromium: every image decodes, the grid has every
cell, and a hostile output stays text (no script of an output ever runs)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from replicate_home import ReplicateAPI
from replicate_home.comparisons import ResultsStore, run_comparison, write_report
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
      columns: all("thead th", function (th) { return th.textContent; }),
      rows: doc.querySelectorAll("tbody tr").length
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


def read_in_browser(directory: Path) -> dict[str, Any]:
    (directory / "harness.html").write_text(HARNESS, encoding="utf-8")
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--allow-file-access-from-files",  # the harness reads the framed report's DOM
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
