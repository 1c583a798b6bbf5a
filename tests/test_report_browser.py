"""The HTML report opened in a real headless Chromium (the system's package, driven by Selenium):
no console error, every figure drawn, nothing fetched, and it prints. Skips, saying why, where
no browser is installed (CI installs Debian's chromium and chromium-driver when apt works)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from test_report import squad_file, synthetic_result

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def _find(names) -> str | None:
    for name in names:
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    binary, driver_path = _find(BROWSERS), _find(DRIVERS)
    if binary is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    mp = pytest.MonkeyPatch()
    mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look anything up: the driver is named
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a skip, said why
        mp.undo()
        pytest.skip(f"Chromium did not start: {str(exc).strip().splitlines()[0][:200]}")
    yield driver
    driver.quit()
    mp.undo()


def _open(driver, page: Path) -> list[dict]:
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


FIGURES_JS = """
return Array.from(document.querySelectorAll('figure')).map(f => {
  const svg = f.querySelector('svg'); const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return [f.id, Math.round(r.width), Math.round(r.height), svg ? svg.querySelectorAll('path, use').length : 0];
});
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from spanqa.report import write_report

    root = tmp_path_factory.mktemp("pages")
    data = squad_file(root / "bridges.json")
    a = synthetic_result(root / "fp32", data, seed=1)
    b = synthetic_result(root / "int8", data, seed=2)
    v2 = synthetic_result(root / "v2", squad_file(root / "bridges2.json", version_2=True), seed=4)
    write_report([a, b], root / "cmp.html")
    write_report([v2], root / "v2.html")
    return root / "cmp.html", root / "v2.html"


EXPECTED = {
    "cmp": {"accuracy-figure", "difference-figure", "by-context-pieces-figure", "by-windows-figure", "by-question-type-figure"}
    | {"latency-figure", "throughput-figure"},
    "v2": {"accuracy-figure", "threshold-figure", "by-context-pieces-figure", "by-windows-figure", "by-question-type-figure"}
    | {"latency-figure", "throughput-figure"},
}


@pytest.mark.parametrize("which", ["cmp", "v2"])
def test_report_opens_without_errors_with_its_figures(browser, pages, which):
    page = pages[0] if which == "cmp" else pages[1]
    assert _open(browser, page) == []
    figures = browser.execute_script(FIGURES_JS)
    assert {f[0] for f in figures} == EXPECTED[which]
    for fig_id, width, height, marks in figures:
        assert width > 200 and height > 100 and marks > 10, (fig_id, width, height, marks)
    # Nothing was fetched: no resource besides the page itself.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.execute_script("return document.scripts.length") == 0
    title = browser.execute_script("return document.querySelector('h1').textContent")
    assert title == ("spanqa report: fp32, int8" if which == "cmp" else "spanqa report: v2")
    if which == "cmp":
        cards = browser.execute_script("return document.querySelectorAll('#differences .q').length")
        assert cards > 0 and browser.execute_script("return document.querySelectorAll('#differences .q .g').length") > 0


def test_report_prints(browser, pages):
    _open(browser, pages[0])
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": True})["data"])
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>") >= 2


def test_console_errors_are_seen(browser, tmp_path):
    """The check can fail: a page that fetches a missing file logs a console error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png" alt="x"></body></html>', encoding="utf-8")
    errors = _open(browser, bad)
    assert errors and "missing.png" in errors[0]["message"]
