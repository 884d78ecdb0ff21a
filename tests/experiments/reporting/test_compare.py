"""The compare task on a run dir built from rated synthetic masks: tables equal scipy, one-scan group, PDF renders."""

from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from data import label_mask, regions_from_labels
from data.standards import RatingConfig, rate_scan
from experiments.reporting.compare import CompareConfig, CompareError, compare_run


def _scan(seed: int, n_discs: int) -> tuple[dict, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    m = np.zeros((1500, 1500), np.uint8)
    for _ in range(n_discs):
        cv2.circle(m, (int(rng.integers(20, 1480)), int(rng.integers(20, 1480))), int(rng.integers(2, 9)), 255, -1)
    labels, _ = label_mask(m)
    reg = regions_from_labels(labels, pixel_size_um=1.0)
    r = rate_scan(reg, shape=m.shape, pixel_size_um=1.0, cfg=RatingConfig(rolling_direction=0), labels=labels)
    return r.scan_values, r.fields


def _run_dir(tmp_path, *, with_worst=True):
    rows, fields = [], []
    plan = [("lot1", 60), ("lot1", 70), ("lot1", 65), ("lot2", 150), ("lot2", 170), ("lot2", 160), ("lot3", 90)]
    for i, (lot, n) in enumerate(plan):
        sid = f"{lot}/s{i}"
        values, f = _scan(i, n)
        f["scan_id"] = sid
        fields.append(f)
        row = {"scan_id": sid, "path": f"/data/{sid}.png", "status": "ok", "pixel_size_um": 1.0,
               "area_fraction": values["e1245_area_fraction_mean"],
               "number_density_per_mm2": values["e1245_number_per_mm2_mean"], "grain_size_G": np.nan}
        row.update({k: v for k, v in values.items() if with_worst or not k.startswith("e45_")})
        rows.append(row)
    rows.append({"scan_id": "lot1/broken", "path": "/data/lot1/broken.png", "status": "failed"})
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_parquet(run / "scans.parquet")
    pd.concat(fields, ignore_index=True).to_parquet(run / "ratings.parquet")
    return run, pd.DataFrame(rows)


def test_compare_tables_equal_scipy(tmp_path):
    run, scans = _run_dir(tmp_path)
    metrics = ("area_fraction", "number_density_per_mm2", "e1245_number_per_mm2_mean", "e45_D_thin_worst")
    res = compare_run(run, cfg=CompareConfig(metrics=metrics), out_dir=tmp_path / "out")
    ok = scans[scans.status == "ok"]
    lots = {g: ok[ok.scan_id.str.startswith(g + "/")] for g in ("lot1", "lot2", "lot3")}
    assert res.groups.group.tolist() == ["lot1"] * 3 + ["lot2"] * 3 + ["lot3"]
    assert "1 failed scan(s) left out" in res.notes
    for m in ("area_fraction", "e1245_number_per_mm2_mean", "e45_D_thin_worst"):
        assert m in res.metrics
        a, b = lots["lot1"][m].to_numpy(float), lots["lot2"][m].to_numpy(float)
        an = res.anova[res.anova.metric == m].iloc[0]
        if np.ptp(np.r_[a, b]) == 0:
            assert np.isnan(an.p_value)
            continue
        assert an.p_value == pytest.approx(stats.f_oneway(a, b).pvalue, rel=1e-12)
        assert an.groups_tested == "lot1;lot2" and an.groups_excluded == "lot3"
        tk = res.tukey[res.tukey.metric == m].iloc[0]
        assert tk.p_value == pytest.approx(stats.tukey_hsd(a, b).pvalue[0, 1], rel=1e-12)
    one = res.summary[(res.summary.group == "lot3")]
    assert (one.note == "1 scan: no test statistic").all()
    # density differs strongly between the lots (60-70 vs 150-170 discs)
    p = res.anova.set_index("metric").loc["number_density_per_mm2", "p_value"]
    assert p < 0.01
    for name in ("groups.csv", "summary.csv", "anova.csv", "tukey.csv", "compare.pdf", "fragment.html",
                 "index.html", "compare.json"):
        assert (res.out_dir / name).exists(), name
    info = json.loads((res.out_dir / "compare.json").read_text())
    assert "plots/area_fraction.png" in info["files"]
    assert "<section" in (res.out_dir / "fragment.html").read_text()


def test_worst_fields_from_ratings_parquet_and_csv_groups(tmp_path):
    run, scans = _run_dir(tmp_path, with_worst=False)
    spec = tmp_path / "groups.csv"
    ok = scans[scans.status == "ok"]
    spec.write_text("path,group\n" + "".join(f"{p},{'even' if i % 2 == 0 else 'odd'}\n" for i, p in enumerate(ok.path)))
    res = compare_run(run, cfg=CompareConfig(groups=str(spec), metrics=("e45_D_thin_worst",), pdf=False),
                      out_dir=tmp_path / "out")
    assert "worst-field severities taken from ratings.parquet" in res.notes
    assert "e45_D_thin_worst" in res.metrics
    assert res.groups.group.tolist() == ["even", "odd", "even", "odd", "even", "odd", "even"]


def test_compare_errors(tmp_path):
    with pytest.raises(CompareError, match="no scans.parquet"):
        compare_run(tmp_path)
    run, _ = _run_dir(tmp_path)
    with pytest.raises(CompareError, match="unknown metric"):
        compare_run(run, cfg=CompareConfig(metrics=("nope",)), out_dir=tmp_path / "o")


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_pdf_renders(tmp_path):
    run, _ = _run_dir(tmp_path)
    metrics = ("area_fraction", "number_density_per_mm2", "e1245_mean_free_path_um_mean", "e45_D_thin_worst")
    res = compare_run(run, cfg=CompareConfig(metrics=metrics), out_dir=tmp_path / "out")
    prefix = tmp_path / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(res.out_dir / "compare.pdf"), str(prefix)], check=True,
                   capture_output=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    img = cv2.imread(str(pages[0]), cv2.IMREAD_GRAYSCALE)
    assert img is not None and img.shape[0] > img.shape[1]  # A4 portrait
    assert (img < 128).mean() > 0.005  # text and tables were drawn


def test_compare_task_through_hydra(compose, tmp_path):
    from experiments.tasks import get_task

    run, _ = _run_dir(tmp_path)
    cfg = compose(["+exp=compare", f"compare.run_dir={run}", "compare.pdf=false", "compare.metrics=[area_fraction]"])
    assert cfg.task == "compare"
    out = tmp_path / "hydra_out"
    out.mkdir()
    assert get_task("compare")(cfg, out) == 0
    assert (out / "anova.csv").exists() and not (out / "compare.pdf").exists()
    with pytest.raises(CompareError, match="run_dir is required"):
        get_task("compare")(compose(["+exp=compare"]), out)
