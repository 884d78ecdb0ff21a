"""The review flow in real headless Chromium (Playwright): keys, zoom, notes escaped, SIGKILL + restart."""

from __future__ import annotations

import re

import pytest
from _review_helpers import GONE_ID, XSS_ID, ProcessServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOADED = (
    "() => { const v = window.quantmetReview && window.quantmetReview.viewer;"
    " return !!v && v.world.getItemCount() > 0 && v.world.getItemAt(0).getFullyLoaded(); }"
)
NOTE = "<script>window.__xss = 1</script> <b>bold?</b> & done"


def tile_levels(urls: list[str]) -> list[int]:
    return [int(m.group(1)) for u in urls if (m := re.search(r"/tiles/\d+/(\d+)/", u))]


def goto(page, objs, cur: int, target: int) -> int:
    """Move from position ``cur`` to ``target`` with the j / k keys."""
    for _ in range(abs(target - cur)):
        page.keyboard.press("j" if target > cur else "k")
    rank = objs[target]["rank"]
    page.wait_for_function(
        f"() => document.getElementById('title').textContent.startsWith('#{rank} ')"
    )
    return target


def _launch(p, chromium):
    """Headless Chromium (the system one, see conftest.chromium)."""
    return p.chromium.launch(executable_path=str(chromium),
                             args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def test_review_flow_in_chromium(chromium, review_run):
    import requests
    from playwright.sync_api import sync_playwright

    srv = ProcessServer(review_run)
    objs = requests.get(srv.url + "/api/clusters", timeout=10).json()
    n = len(objs)
    xss = next(i for i, o in enumerate(objs) if o["scan_id"] == XSS_ID)
    gone = next(i for i, o in enumerate(objs) if o["scan_id"] == GONE_ID)
    assert n >= 5 and xss + 1 < n
    errors: list[str] = []
    tiles: list[str] = []
    try:
        with sync_playwright() as p:
            browser = _launch(p, chromium)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: tiles.append(r.url) if "/tiles/" in r.url else None)
            page.goto(srv.url + "/")
            page.wait_for_selector("[data-testid=row]")
            page.wait_for_function(
                "() => document.getElementById('title').textContent.startsWith('#1 ')"
            )
            assert page.get_by_test_id("progress").inner_text() == f"0 of {n} reviewed"
            cur = goto(page, objs, 0, xss)  # a cluster on the scan with an XSS name
            page.wait_for_function(LOADED)
            assert XSS_ID in page.get_by_test_id("title").inner_text()  # shown as text
            assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
            assert page.locator("[data-testid=cluster-box]").count() == 1
            zoom = "window.quantmetReview.viewer.viewport.getZoom()"
            drawn = (
                "(() => { const t = window.quantmetReview.viewer.world.getItemAt(0).getTilesToDraw();"
                " return t.map(x => x.tile.level); })()"
            )
            zoom0 = page.evaluate(zoom)
            top = max(page.evaluate(drawn))
            for _ in range(5):  # zoom out: the whole scan, drawn from coarser pyramid levels
                page.keyboard.press("-")
            page.wait_for_timeout(600)
            page.wait_for_function(LOADED)
            assert page.evaluate(zoom) < zoom0 / 3
            assert max(page.evaluate(drawn)) < top
            for _ in range(9):  # and in, past the first view, to single scan pixels
                page.keyboard.press("+")
            page.wait_for_timeout(600)
            page.wait_for_function(LOADED)
            assert page.evaluate(zoom) > 2 * zoom0
            px = page.evaluate(
                "(() => { const v = window.quantmetReview.viewer;"
                " return v.viewport.viewportToImageZoom(v.viewport.getZoom()); })()"
            )
            assert px > 2  # one scan pixel covers more than 2 screen pixels
            assert set(page.evaluate(drawn)) == {
                10
            }  # full-resolution tiles (level 10 of a 1024 px scan)
            assert max(tile_levels(tiles)) == 10
            page.keyboard.press("h")  # back to the cluster

            page.keyboard.press("c")
            page.wait_for_function(
                "() => document.getElementById('progress').textContent.startsWith('1 of')"
            )
            assert page.get_by_test_id("verdict").inner_text() == "confirmed"
            cur = goto(page, objs, cur, cur + 1)
            page.keyboard.press("d")
            page.wait_for_function(
                "() => document.getElementById('progress').textContent.startsWith('2 of')"
            )
            cur = goto(page, objs, cur, xss)
            assert page.get_by_test_id("verdict").inner_text() == "confirmed"

            page.get_by_test_id("note").fill(NOTE)
            page.get_by_test_id("save-note").click()
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('note')"
            )
            assert page.evaluate("window.__xss") is None
            row = page.locator(f"[data-testid=row][data-index='{xss}']")
            assert NOTE in row.inner_text()
            assert (
                page.evaluate("document.querySelectorAll('#list-rows script, #list-rows b').length")
                == 0
            )

            cur = goto(page, objs, cur, gone)  # the scan file is gone: the view says so
            page.wait_for_function("() => !document.getElementById('gone').hidden")
            assert "gone" in page.get_by_test_id("gone").inner_text()

            page.get_by_test_id("filter").select_option("confirmed")
            assert page.locator("[data-testid=row]").count() == 1
            browser.close()
        srv.kill()  # SIGKILL, then a new server on the same run dir
        srv = ProcessServer(review_run)
        with sync_playwright() as p:
            browser = _launch(p, chromium)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(srv.url + "/")
            page.wait_for_function(
                "() => document.getElementById('progress').textContent.startsWith('2 of')"
            )
            page.wait_for_function(
                "() => document.getElementById('title').textContent.startsWith('#1 ')"
            )
            cur = goto(page, objs, 0, xss)
            assert page.get_by_test_id("verdict").inner_text() == "confirmed"
            assert page.get_by_test_id("note").input_value() == NOTE
            cur = goto(page, objs, cur, xss + 1)
            assert page.get_by_test_id("verdict").inner_text() == "dismissed"
            browser.close()
    finally:
        srv.kill()
    assert not errors, errors
