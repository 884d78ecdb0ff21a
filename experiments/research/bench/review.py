"""Benchmark ``bench_review``: is the review app fast on a 5000 x 5000 scan?

A run dir with one synthetic scan of ``shape`` (default 5000 x 5000, written by
:func:`experiments.review.synthetic_run.write_synthetic_run` with the pipeline's library
calls) is served by ``python -m experiments.review`` in a subprocess, started cold (nothing
decoded).  Measured:

- ``first_view_s`` (headless Chromium, Playwright): from the navigation to the page until
  every tile of the first view is drawn (OpenSeadragon's ``getFullyLoaded``), right after the
  server printed its URL; the scan's decoding and pyramid are inside this time.
- ``first_view_http_s`` (no browser needed): page, script, viewer, cluster list, cluster
  detail, then the tiles covering a ``viewport`` view of the cluster, 6 requests at a time
  like a browser.
- ``tile_ms`` (median, p95, max over ``n_tiles``): uncached tiles of the finest
  ``zoom_levels`` levels at random places, one request at a time (pan and zoom), server
  already warm; and ``browser_tile_ms``: the Resource Timing durations of the tiles Chromium
  fetched while panning and zooming with the keyboard and the viewer API (from the request
  leaving the browser to its last byte, and with the browser's own queue in front).

Writes ``bench_review.json`` and ``bench_review.md`` into the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments._markdown import markdown_table
from experiments.config import REPO_ROOT, dataclass_from
from .config import BenchReviewConfig

__all__ = ["BenchReviewConfig", "run"]

log = logging.getLogger(__name__)

LOADED = (
    "() => { const v = window.quantmetReview && window.quantmetReview.viewer;"
    " return !!v && v.world.getItemCount() > 0 && v.world.getItemAt(0).getFullyLoaded(); }"
)


def _start(run_dir: Path, timeout: float = 120) -> tuple[subprocess.Popen, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.review", f"run_dir={run_dir}", "port=0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"review server did not start: {line!r} {proc.stderr.read()!r}")
    return proc, m.group(1).rstrip("/"), time.perf_counter() - t0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=float)
    return (
        {
            "n": int(a.size),
            "median_ms": float(np.median(a)),
            "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max()),
        }
        if a.size
        else {"n": 0}
    )


def _view_tiles(detail: dict, viewport: tuple[int, int]) -> list[str]:
    """Tile paths covering a ``viewport`` (w, h) view of the cluster box with the page's margin."""
    img, box = detail["image"], detail["box"]
    w = box["bbox_cmax"] - box["bbox_cmin"] + 1
    h = box["bbox_rmax"] - box["bbox_rmin"] + 1
    m = max(40, 0.6 * max(w, h))
    vw, vh = w + 2 * m, h + 2 * m  # image px shown
    scale = min(viewport[0] / vw, viewport[1] / vh)  # screen px per image px
    top = img["max_level"]
    level = max(0, min(top, top - int(math.floor(math.log2(max(1e-9, 1 / scale))))))
    f = 2.0 ** (top - level)
    ts = img["tile_size"]
    c0, c1 = box["bbox_cmin"] - m, box["bbox_cmax"] + m
    r0, r1 = box["bbox_rmin"] - m, box["bbox_rmax"] + m
    lw, lh = math.ceil(img["width"] / f), math.ceil(img["height"] / f)
    cols = range(max(0, int(c0 / f // ts)), min(math.ceil(lw / ts), int(c1 / f // ts) + 1))
    rows = range(max(0, int(r0 / f // ts)), min(math.ceil(lh / ts), int(r1 / f // ts) + 1))
    return [f"{img['tiles']}{level}/{c}_{r}.jpg" for c in cols for r in rows]


def _first_view_http(url: str, viewport: tuple[int, int]) -> dict:
    import requests

    s = requests.Session()
    t0 = time.perf_counter()
    for path in (
        "/",
        "/static/review.js",
        "/static/review.css",
        "/static/vendor/openseadragon/openseadragon.min.js",
    ):
        s.get(url + path, timeout=60).raise_for_status()
    first = s.get(url + "/api/clusters", timeout=60).json()[0]
    detail = s.get(
        url + "/api/cluster",
        params={"scan_id": first["scan_id"], "cluster_id": first["cluster_id"]},
        timeout=60,
    ).json()
    tiles = _view_tiles(detail, viewport)
    sessions = [requests.Session() for _ in range(6)]

    def get(i_path):
        i, path = i_path
        r = sessions[i % 6].get(url + path, timeout=60)
        r.raise_for_status()
        return len(r.content)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(get, enumerate(tiles)))
    return {
        "first_view_http_s": time.perf_counter() - t0,
        "first_view_tiles": len(tiles),
        "detail": detail,
    }


def _tile_latencies(url: str, detail: dict, n: int, zoom_levels: int, seed: int) -> list[float]:
    import requests

    img = detail["image"]
    rng = np.random.default_rng(seed)
    top = img["max_level"]
    s = requests.Session()
    seen, out = set(), []
    while len(out) < n:
        level = int(rng.integers(max(0, top - zoom_levels + 1), top + 1))
        f = 2 ** (top - level)
        nc = math.ceil(math.ceil(img["width"] / f) / img["tile_size"])
        nr = math.ceil(math.ceil(img["height"] / f) / img["tile_size"])
        key = (level, int(rng.integers(nc)), int(rng.integers(nr)))
        if key in seen:
            if len(seen) >= sum(
                math.ceil(math.ceil(img["width"] / 2 ** (top - lv)) / img["tile_size"])
                * math.ceil(math.ceil(img["height"] / 2 ** (top - lv)) / img["tile_size"])
                for lv in range(max(0, top - zoom_levels + 1), top + 1)
            ):
                break
            continue
        seen.add(key)
        t0 = time.perf_counter()
        r = s.get(f"{url}{img['tiles']}{key[0]}/{key[1]}_{key[2]}.jpg", timeout=60)
        r.raise_for_status()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def _browser(url: str, chromium: str, viewport: tuple[int, int]) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = b.new_page(viewport={"width": viewport[0] + 640, "height": viewport[1] + 60})
        t0 = time.perf_counter()
        page.goto(url + "/")
        page.wait_for_function(LOADED, timeout=60_000)
        first = time.perf_counter() - t0
        n0 = page.evaluate(
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/tiles/')).length"
        )
        # pan and zoom like a user: zoom in / out with the keys, pan with the viewer
        for step in range(24):
            if step % 3 == 0:
                page.keyboard.press("+")
            elif step % 3 == 1:
                page.evaluate(
                    "window.quantmetReview.viewer.viewport.panBy(new OpenSeadragon.Point(0.08, 0.05))"
                )
            else:
                page.keyboard.press("-")
            page.wait_for_timeout(250)
            page.wait_for_function(LOADED, timeout=60_000)
        ent = page.evaluate(
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/tiles/'))"
            ".map(e => [e.duration, e.responseEnd - e.requestStart])"
        )
        b.close()
    ent = ent[n0:]
    return {
        "first_view_s": first,
        "first_view_browser_tiles": int(n0),
        "browser_tile_ms": [e[0] for e in ent],
        "browser_served_ms": [e[1] for e in ent],
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_review``."""
    bc = dataclass_from(
        BenchReviewConfig, OmegaConf.to_container(cfg.get("bench", {}) or {}), where="bench"
    )
    from experiments.review.synthetic_run import write_synthetic_run

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    run_dir = write_synthetic_run(
        output_dir / "run", n_scans=1, shape=tuple(bc.shape), seed=bc.seed
    )
    t_build = time.perf_counter() - t0
    viewport = tuple(bc.viewport)
    result: dict = {
        "shape": list(bc.shape),
        "build_run_s": t_build,
        "load_average_start": load_start,
    }
    chromium = bc.chromium if bc.chromium and Path(bc.chromium).exists() else None
    # 1. cold start, first view in the browser (or over HTTP when there is no browser)
    proc, url, t_start = _start(run_dir)
    result["server_start_s"] = t_start
    try:
        if chromium:
            br = _browser(url, chromium, viewport)
            result["first_view_s"] = br["first_view_s"]
            result["first_view_browser_tiles"] = br["first_view_browser_tiles"]
            result["browser_tile"] = _stats(br["browser_tile_ms"])
            result["browser_served"] = _stats(br["browser_served_ms"])
        else:
            result["first_view_s"] = None
            log.warning("no Chromium at %r: first view measured over HTTP only", bc.chromium)
    finally:
        _stop(proc)
    # 2. cold start again, first view over HTTP, then many uncached tiles (warm scan)
    proc, url, _ = _start(run_dir)
    try:
        fv = _first_view_http(url, viewport)
        result["first_view_http_s"] = fv["first_view_http_s"]
        result["first_view_tiles"] = fv["first_view_tiles"]
        lat = _tile_latencies(url, fv["detail"], bc.n_tiles, bc.zoom_levels, bc.seed)
        result["tile"] = _stats(lat)
    finally:
        _stop(proc)
    fv_s = (
        result["first_view_s"]
        if result["first_view_s"] is not None
        else result["first_view_http_s"]
    )
    t = result["tile"]
    result["targets"] = {
        "first_view_s": bc.target_first_view_s,
        "tile_ms": bc.target_tile_ms,
        "first_view_met": bool(fv_s < bc.target_first_view_s),
        "tile_met": bool(t["median_ms"] < bc.target_tile_ms and t["p95_ms"] < bc.target_tile_ms),
    }
    result["load_average_end"] = os.getloadavg()
    rows = [
        {
            "measure": "first view, headless Chromium (page + first tiles drawn), cold server",
            "value": "n/a" if result["first_view_s"] is None else f"{result['first_view_s']:.2f} s",
            "target": f"< {bc.target_first_view_s:g} s",
        },
        {
            "measure": f"first view over HTTP ({result['first_view_tiles']} tiles, 6 at a time), cold server",
            "value": f"{result['first_view_http_s']:.2f} s",
            "target": f"< {bc.target_first_view_s:g} s",
        },
        {
            "measure": f"uncached tile, finest {bc.zoom_levels} levels, random places ({t['n']} tiles): median / p95 / max",
            "value": f"{t['median_ms']:.1f} / {t['p95_ms']:.1f} / {t['max_ms']:.1f} ms",
            "target": f"< {bc.target_tile_ms:g} ms",
        },
    ]
    if result.get("browser_tile", {}).get("n"):
        bt = result["browser_tile"]
        sv = result["browser_served"]
        rows.append(
            {
                "measure": f"tiles Chromium fetched while panning / zooming ({bt['n']}), request sent to "
                "last byte: median / p95 / max",
                "value": f"{sv['median_ms']:.1f} / {sv['p95_ms']:.1f} / {sv['max_ms']:.1f} ms",
                "target": f"< {bc.target_tile_ms:g} ms",
            }
        )
        rows.append(
            {
                "measure": "the same tiles including the browser's own queue (6 connections): "
                "median / p95 / max",
                "value": f"{bt['median_ms']:.1f} / {bt['p95_ms']:.1f} / {bt['max_ms']:.1f} ms",
                "target": "",
            }
        )
    rows.append(
        {
            "measure": "server start (process start to URL printed)",
            "value": f"{t_start:.2f} s",
            "target": "",
        }
    )
    md = (
        f"bench_review: one synthetic {bc.shape[0]} x {bc.shape[1]} scan, viewer {viewport[0]} x {viewport[1]} px; "
        f"load average at start {load_start[0]:.1f} (shared machine)\n\n" + markdown_table(rows)
    )
    (output_dir / "bench_review.md").write_text(md + "\n")
    (output_dir / "bench_review.json").write_text(json.dumps(result, indent=2, default=str))
    log.info("\n%s", md)
    return 0
