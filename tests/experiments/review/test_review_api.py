"""The review app's HTTP API against a real server (uvicorn in a thread, free loopback port)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import requests
from _review_helpers import GONE_ID, XSS_ID, ThreadServer

from experiments.review.app import ReviewApp, create_app
from experiments.review.rundata import load_run
from experiments.review.store import VerdictStore
from experiments.review.tiles import deep_zoom_levels

LIST_KEYS = {"scan_id", "cluster_id", "rank", "score", "reason", "verdict", "note"}


@pytest.fixture
def served(review_run):
    run = load_run(review_run)
    store = VerdictStore(run.layout.feedback_db, export_path=run.layout.feedback_parquet)
    state = ReviewApp(run, store)
    srv = ThreadServer(create_app(state))
    yield srv, run, store
    srv.stop()
    store.close()


def post(url, body, **kw):
    return requests.post(url + "/api/feedback", json=body, timeout=10, **kw)


def test_clusters_list_pages_and_verdicts(served):
    srv, run, _ = served
    all_ = requests.get(srv.url + "/api/clusters", timeout=10).json()
    assert len(all_) == len(run.clusters) >= 5
    assert all(set(o) == LIST_KEYS for o in all_)
    assert [o["rank"] for o in all_] == list(range(1, len(all_) + 1))
    assert all(
        o["verdict"] is None and o["note"] is None and o["score"] > 0 and o["reason"] for o in all_
    )
    assert XSS_ID in {o["scan_id"] for o in all_}
    page = requests.get(srv.url + "/api/clusters?offset=2&limit=3", timeout=10).json()
    assert page == all_[2:5]
    assert requests.get(srv.url + "/api/clusters?offset=-1", timeout=10).status_code == 400
    assert requests.get(srv.url + "/api/clusters?order=nonsense", timeout=10).status_code == 400

    first = all_[0]
    r = post(
        srv.url,
        {
            "scan_id": first["scan_id"],
            "cluster_id": first["cluster_id"],
            "verdict": "confirmed",
            "note": "<script>alert(1)</script>",
        },
    )
    assert r.status_code == 200
    rec = r.json()
    assert (
        rec["verdict"] == "confirmed"
        and rec["note"] == "<script>alert(1)</script>"
        and rec["revision"] == 1
    )
    again = requests.get(srv.url + "/api/clusters?limit=1", timeout=10).json()[0]
    assert again["verdict"] == "confirmed" and again["note"] == "<script>alert(1)</script>"
    # the verdict alone (no note key) keeps the note; null clears the verdict
    r = post(
        srv.url, {"scan_id": first["scan_id"], "cluster_id": first["cluster_id"], "verdict": None}
    )
    assert r.json()["verdict"] is None and r.json()["note"] == "<script>alert(1)</script>"
    unrev = requests.get(srv.url + "/api/clusters?verdict=unreviewed", timeout=10).json()
    assert len(unrev) == len(all_)
    exported = pd.read_parquet(run.layout.feedback_parquet)
    assert exported["revision"].tolist() == [2]


def test_feedback_rejects_bad_input_and_stores_nothing(served):
    srv, run, store = served
    c = run.clusters.iloc[0]
    ok = {"scan_id": c["scan_id"], "cluster_id": int(c["cluster_id"]), "verdict": "dismissed"}
    cases = [
        (415, dict(data='{"scan_id": "x"}', headers={"Content-Type": "text/plain"})),
        (
            415,
            dict(
                data="scan_id=x&cluster_id=0&verdict=confirmed",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
        ),
        (400, dict(data="{not json", headers={"Content-Type": "application/json"})),
        (400, dict(json=[1, 2])),
        (404, dict(json={**ok, "cluster_id": 999})),
        (404, dict(json={**ok, "scan_id": "no such scan"})),
        (422, dict(json={**ok, "verdict": "maybe"})),
        (422, dict(json={**ok, "verdict": "Confirmed"})),
        (422, dict(json={k: v for k, v in ok.items() if k != "verdict"})),
        (422, dict(json={**ok, "cluster_id": "0"})),
        (422, dict(json={**ok, "cluster_id": True})),
        (422, dict(json={**ok, "note": 5})),
        (422, dict(json={**ok, "extra": 1})),
        (
            413,
            dict(
                data='{"note": "' + "x" * 70_000 + '"}',
                headers={"Content-Type": "application/json"},
            ),
        ),
    ]
    for status, kw in cases:
        r = requests.post(srv.url + "/api/feedback", timeout=10, **kw)
        assert r.status_code == status, (status, kw.get("json"), r.text)
        msg = r.json()["error"]
        assert msg and "\n" not in msg
    assert store.all() == {} and store.history() == []


def test_two_tabs_last_write_wins_both_in_history(served):
    srv, run, _ = served
    c = run.clusters.iloc[1]
    key = {"scan_id": c["scan_id"], "cluster_id": int(c["cluster_id"])}
    tab1, tab2 = requests.Session(), requests.Session()
    assert (
        post(
            srv.url,
            {**key, "verdict": "confirmed", "note": "tab 1"},
        ).status_code
        == 200
    )
    tab1.close()
    r = tab2.post(
        srv.url + "/api/feedback", json={**key, "verdict": "dismissed", "note": "tab 2"}, timeout=10
    )
    assert r.json()["revision"] == 2
    hist = requests.get(srv.url + "/api/history", params=key, timeout=10).json()
    assert [(h["verdict"], h["note"]) for h in hist] == [
        ("confirmed", "tab 1"),
        ("dismissed", "tab 2"),
    ]
    cur = requests.get(srv.url + "/api/cluster", params=key, timeout=10).json()
    assert cur["verdict"] == "dismissed" and cur["note"] == "tab 2"


def test_cluster_detail_tiles_and_gone_image(served):
    srv, run, _ = served
    c = run.clusters[run.clusters.scan_id != GONE_ID].iloc[0]
    d = requests.get(
        srv.url + "/api/cluster",
        params={"scan_id": c["scan_id"], "cluster_id": int(c["cluster_id"])},
        timeout=10,
    ).json()
    img = d["image"]
    assert img["available"] and img["width"] == 1024 and img["height"] == 640 and img["has_overlay"]
    assert d["box"]["bbox_rmin"] == c["bbox_rmin"] and dict(d["measurements"])["impurities"] == str(
        c["n_regions"]
    )
    assert img["max_level"] == len(deep_zoom_levels(1024, 640)) - 1 == 10
    # the full-resolution level: 4 x 3 tiles of 256 px, overlapping their neighbours by 1 px
    r = requests.get(f"{srv.url}{img['tiles']}10/3_2.jpg", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    tile = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert tile.shape == (640 - 511, 1024 - 767, 3)
    mid = cv2.imdecode(
        np.frombuffer(
            requests.get(f"{srv.url}{img['tiles']}10/1_1.jpg", timeout=10).content, np.uint8
        ),
        1,
    )
    assert mid.shape == (258, 258, 3)
    # impurities are coloured, the plain tiles are gray
    colour = gray = 0
    for t in ("10/0_0", "10/1_0", "10/2_1", "10/3_2"):
        plain = cv2.imdecode(
            np.frombuffer(
                requests.get(
                    f"{srv.url}{img['tiles']}{t}.jpg", params={"overlay": "0"}, timeout=10
                ).content,
                np.uint8,
            ),
            1,
        ).astype(int)
        col = cv2.imdecode(
            np.frombuffer(
                requests.get(f"{srv.url}{img['tiles']}{t}.jpg", timeout=10).content, np.uint8
            ),
            1,
        ).astype(int)
        gray = max(gray, np.abs(plain[..., 0] - plain[..., 2]).max())
        colour = max(colour, np.abs(col[..., 0] - col[..., 2]).max())
    assert gray <= 12 < 40 < colour  # JPEG chroma noise only vs score colours
    small = requests.get(f"{srv.url}{img['tiles']}0/0_0.jpg", timeout=10)
    assert cv2.imdecode(np.frombuffer(small.content, np.uint8), 1).shape[:2] == (1, 1)
    for bad in ("10/4_0.jpg", "11/0_0.jpg", "10/0_3.jpg", "9/2_0.jpg"):
        assert requests.get(f"{srv.url}{img['tiles']}{bad}", timeout=10).status_code == 404
    assert requests.get(srv.url + "/tiles/99/0/0_0.jpg", timeout=10).status_code == 404
    # the scan whose file is gone: the list works, the view says the image is gone
    g = run.clusters[run.clusters.scan_id == GONE_ID].iloc[0]
    dg = requests.get(
        srv.url + "/api/cluster",
        params={"scan_id": GONE_ID, "cluster_id": int(g["cluster_id"])},
        timeout=10,
    ).json()
    assert dg["image"]["available"] is False and "gone" in dg["image"]["message"]
    si = dg["image"]["scan"]
    assert requests.get(f"{srv.url}/tiles/{si}/0/0_0.jpg", timeout=10).status_code == 404
    assert (
        requests.get(
            srv.url + "/api/cluster", params={"scan_id": "x", "cluster_id": 0}, timeout=10
        ).status_code
        == 404
    )


def test_learned_order_after_both_verdicts(served):
    srv, run, _ = served
    objs = requests.get(srv.url + "/api/clusters", timeout=10).json()
    s = requests.get(srv.url + "/api/summary", timeout=10).json()
    assert (
        s["clusters"] == len(objs)
        and s["reviewed"] == 0
        and s["learned_order"].startswith("rank order")
    )
    same = requests.get(srv.url + "/api/clusters?order=learned", timeout=10).json()
    assert [o["rank"] for o in same] == [o["rank"] for o in objs]  # nothing learned yet: rank order
    for o, v in zip(objs[:4], ["confirmed", "dismissed", "confirmed", "dismissed"]):
        assert post(
            srv.url, {"scan_id": o["scan_id"], "cluster_id": o["cluster_id"], "verdict": v}
        ).ok
    learned = requests.get(srv.url + "/api/clusters?order=learned", timeout=10).json()
    assert len(learned) == len(objs)
    head = learned[: len(objs) - 4]
    assert all(o["verdict"] is None and 0 <= o["learned_score"] <= 1 for o in head)
    ls = [o["learned_score"] for o in head]
    assert ls == sorted(ls, reverse=True)
    assert [o["rank"] for o in learned[-4:]] == [1, 2, 3, 4]  # reviewed ones last, in rank order
    s = requests.get(srv.url + "/api/summary", timeout=10).json()
    assert s["reviewed"] == 4 and "trained on this run's 4 verdicts" in s["learned_order"]


def test_token_and_host_checks(review_run):
    run = load_run(review_run)
    store = VerdictStore(run.layout.feedback_db)
    state = ReviewApp(run, store)
    srv = ThreadServer(create_app(state, token="s3cret-token", loopback=False))
    try:
        for path in ("/", "/api/clusters", "/static/review.js", "/tiles/0/0/0_0.jpg"):
            assert requests.get(srv.url + path, timeout=10).status_code == 401, path
        assert (
            requests.get(
                srv.url + "/api/clusters", headers={"X-Review-Token": "wrong"}, timeout=10
            ).status_code
            == 401
        )
        assert requests.get(
            srv.url + "/api/clusters", headers={"X-Review-Token": "s3cret-token"}, timeout=10
        ).ok
        r = requests.post(
            srv.url + "/api/feedback",
            json={"scan_id": "x", "cluster_id": 0, "verdict": None},
            timeout=10,
        )
        assert r.status_code == 401
        sess = requests.Session()
        page = sess.get(srv.url + "/?token=s3cret-token", timeout=10)
        assert page.ok and "quantmet review" in page.text
        assert (
            "HttpOnly" in page.headers["set-cookie"]
            and "SameSite=Strict" in page.headers["set-cookie"]
        )
        assert sess.get(srv.url + "/api/summary", timeout=10).ok  # the cookie from the first visit
        assert "script-src 'self'" in page.headers["content-security-policy"]
    finally:
        srv.stop()
    loop = ThreadServer(create_app(state))
    try:
        assert requests.get(loop.url + "/api/summary", timeout=10).ok
        assert (
            requests.get(
                loop.url + "/api/summary", headers={"Host": "attacker.example:80"}, timeout=10
            ).status_code
            == 421
        )  # DNS rebinding
    finally:
        loop.stop()
        store.close()


def _as_phase_run(run_dir):
    """Turn the synthetic run into what ``+exp=phases`` writes: a phases table and the clusters' phases."""
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    clusters.insert(0, "phase", ["oxide+pore" if i % 2 else "pore" for i in range(len(clusters))])
    clusters.to_parquet(run_dir / "clusters.parquet", index=False)
    scans = pd.read_parquet(run_dir / "scans.parquet")
    pd.DataFrame(
        [{"scan_id": s, "phase": p, "area_fraction": 0.1} for s in scans["scan_id"] for p in ("pore", "oxide")]
    ).to_parquet(run_dir / "phases.parquet", index=False)
    return run_dir


@pytest.mark.parametrize("phases", [False, True], ids=["impurity-run", "phase-run"])
def test_measurement_labels_name_the_run_objects(review_run, phases):
    # a phase run's clusters are oxides and pores: the fact table says "objects", like the report
    run = load_run(_as_phase_run(review_run) if phases else review_run)
    store = VerdictStore(run.layout.feedback_db)
    try:
        labels = [k for k, _ in ReviewApp(run, store).measurements(0)]
    finally:
        store.close()
    expect = (
        ["objects", "largest object", "mean object area", "seed objects"]
        if phases
        else ["impurities", "largest impurity", "mean impurity area", "seed impurities"]
    )
    assert [k for k in labels if k in set(expect)] == expect, labels
    if phases:
        assert not any("impurit" in k for k in labels), labels
