"""The HTML report in a real browser: headless Chromium loads it with every image and table, no console message.

Skipped, with the reason, where no Chromium is installed (``.ci/run`` installs the Debian package ``chromium``
when apt works). The report is built from a synthetic stored run (no model).
Run: pytest tests/eval/test_report_browser.py -v
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ropeshift.cli.main import main

from .synthetic_run import write_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (apt-get install chromium) for the "
                                                         "headless browser test of the HTML report")

# appended to a copy of the page: after load, count images that decoded and tables, and write the counts into the DOM
PROBE = """<script>window.addEventListener("load", function () {
  var im = document.images, ok = 0;
  for (var i = 0; i < im.length; i++) { if (im[i].complete && im[i].naturalWidth > 0) ok++; }
  var d = document.createElement("pre"); d.id = "probe";
  d.textContent = ["images", im.length, "loaded", ok, "tables", document.getElementsByTagName("table").length,
                   "first", document.querySelector("h2").textContent].join(" ");
  document.body.appendChild(d);
});</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    run = write_run(root / "runs")
    assert main(["report", str(run), "--out", str(root / "report")]) == 0
    return root / "report" / "report.html"


def test_report_loads_with_images_and_tables_and_no_console_messages(report, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    done = _chromium("--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    m = re.search(r'<pre id="probe">images (\d+) loaded (\d+) tables (\d+) first (.*?)</pre>', done.stdout)
    assert m, "the page did not finish loading: " + done.stdout[-500:]
    images, loaded, tables, first = int(m[1]), int(m[2]), int(m[3]), m[4]
    assert images >= 5 and loaded == images          # length curve, heatmaps and depth curves all decode
    assert tables >= 6 and first == "Headline"       # the page opens with the headline table
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console                      # the report has no script: any console line is an error


def test_report_screenshot(report, tmp_path):
    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000   # a rendered page, not a blank one
