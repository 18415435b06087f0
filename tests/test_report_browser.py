"""report.html in a real browser: headless Chromium (the Debian ``chromium`` package, which
``.ci/run`` installs when missing) opens it through Playwright. Every plot must decode, and the
page must log no console or Content-Security-Policy error. A screenshot is kept beside the
report. Skips with the reason where Chromium or Playwright can't be had."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_report import make_study

from rewardgym.evaluation.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs playwright: pip install -e '.[dev]'"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


def test_every_plot_decodes_and_the_page_logs_no_error(browser, tmp_path: Path) -> None:
    paths = write_report(make_study(tmp_path, sweep=True))
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(paths["report.html"].resolve().as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    plots = [k for k in paths if k.startswith("plots/")]
    assert len(widths) == len(plots) > 0
    assert all(width > 0 for width in widths), widths
    assert problems == [], problems  # a CSP violation is logged as a console error
    screenshot = paths["report.html"].with_name("report.png")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    page.close()


def test_a_blocked_script_is_reported_as_a_csp_error(browser, tmp_path: Path) -> None:
    """The check can fail: an inline script in the page is refused by its policy, and the
    refusal reaches the console listener the test above relies on."""
    paths = write_report(make_study(tmp_path))
    html = paths["report.html"].read_text(encoding="utf-8")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(html.replace("</body>", "<script>1</script></body>"), encoding="utf-8")
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(tampered.as_uri())
    page.wait_for_load_state("load")
    assert any("Content Security Policy" in p for p in problems), problems
    page.close()
