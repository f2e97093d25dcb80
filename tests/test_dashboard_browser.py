"""The dashboard in a real browser: `harness dashboard` on loopback over a store filled by a real
compare of the default task, loaded in Debian's chromium through playwright. `make test` installs
chromium; the screenshot is kept in test-artifacts/dashboard.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.compare import compare
from tests.conftest import load_benchmark

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "test-artifacts" / "dashboard.png"


# The server and render-wait helpers the speed benchmark times the same page with.
bench = load_benchmark("speed_dashboard")


def test_dashboard_in_chromium_shows_the_default_task_comparison(tmp_path):
    from playwright.sync_api import sync_playwright

    if not Path(bench.CHROMIUM).exists():
        pytest.fail(f"no {bench.CHROMIUM}: `make test` installs it (apt-get install chromium)")
    store = tmp_path / "store.sqlite"
    report = compare(ROOT / "benchmarks" / "tasks" / "bbc_news.yaml", strategies=["zero_shot", "few_shot"], limit=12,
                     store_path=store, progress=False)
    verdict = report.recommendation.verdict

    with bench.serving(store) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=bench.CHROMIUM, args=["--no-sandbox"])
        try:
            # Tall enough for the whole comparison view in one screenshot (Streamlit scrolls inside
            # its own container, so a full-page screenshot would stop at the viewport).
            page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
            page.goto(url)
            bench.wait_for_first_render(page)
            page.get_by_text(f"Verdict: {verdict}", exact=True).wait_for()
            page.get_by_text("bbc_news · smollm2-135m-instruct · 12 eval examples").wait_for()
            assert page.locator(".st-key-charts [data-testid='stVegaLiteChart']").count() == 2
            # The table is drawn on a canvas; its accessible copy holds the cells.
            for name in ("zero_shot", "few_shot"):
                page.locator(".st-key-strategies [data-testid='stDataFrame']").first.get_by_text(
                    name, exact=True).first.wait_for(state="attached")
            page.wait_for_timeout(500)  # let the charts finish their entry transition
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=SCREENSHOT)
            print(f"dashboard screenshot: {SCREENSHOT}")

            with page.expect_download() as download:
                page.get_by_role("button", name="Download report (HTML, with plots)").click()
            html = Path(download.value.path()).read_text(encoding="utf-8")
            assert f"<h2>Verdict: {verdict}</h2>" in html and html.count("data:image/png;base64,") == 1

            page.get_by_role("tab", name="Examples").click()
            page.get_by_text("examples on which the strategies' predictions or scores differ").wait_for()
            assert not page.locator("[data-testid='stException']").count()
        finally:
            browser.close()
