"""End to end in headless Chromium (Debian's, driven by Playwright): the report works offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="python package playwright not installed"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _column(page, table: str, col: int) -> list[float]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr:not([hidden])",
        f"rows => rows.map(r => parseFloat(r.cells[{col}].getAttribute('data-v')))",
    )


def test_report_in_chromium(browser, built_report, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    page.goto(built_report.as_uri())
    page.wait_for_load_state("load")
    assert page.title().startswith("quantmet report")
    # every image on the index loaded (local files)
    page.evaluate("() => Array.from(document.images).forEach(i => i.loading = 'eager')")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    broken = page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)"
    )
    assert broken == []

    # sorting: click "score" (column 3) -> ascending, again -> descending
    header = page.locator("#clusters-table thead th", has_text="score").first
    header.click()
    asc = _column(page, "clusters-table", 3)
    assert asc == sorted(asc) and len(asc) > 2
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert _column(page, "clusters-table", 3) == sorted(asc, reverse=True)

    # filtering: the text box hides rows and updates the count
    n_all = len(_column(page, "clusters-table", 0))
    page.fill('input[data-table="clusters-table"]', "maskA")
    shown = page.eval_on_selector_all(
        "#clusters-table tbody tr:not([hidden])", "rs => rs.map(r => r.cells[1].textContent)"
    )
    assert shown and set(shown) == {"maskA"} and len(shown) < n_all
    assert page.text_content("#clusters-table-count") == f"{len(shown)} of {n_all} rows"
    page.fill('input[data-table="clusters-table"]', "")
    assert len(_column(page, "clusters-table", 0)) == n_all

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("QUANTMET_SCREENSHOTS")
    if keep:  # for a person to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_index.png")

    # a gallery link opens its image
    link = page.locator("#clusters-table a.crop").first
    href = link.get_attribute("href")
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(href)
    assert page.evaluate(
        "() => document.images.length === 1 && document.images[0].naturalWidth > 100"
    )

    # the scan page of the scan named like an XSS payload shows the name as text
    page.goto(built_report.as_uri())
    page.click("#scans-table a:text('<img src=x onerror=alert(1)>')")
    page.wait_for_load_state("load")
    assert "<img src=x onerror=alert(1)>" in page.text_content("dl.facts")
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.naturalWidth > 0)")
    if keep:
        page.screenshot(path=str(Path(keep) / "report_scan_page.png"), full_page=True)

    assert problems == []
    assert all(u.startswith("file://") for u in requests), [
        u for u in requests if not u.startswith("file://")
    ]
    page.close()
