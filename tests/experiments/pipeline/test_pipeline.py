"""End-to-end pipeline on tiny inputs: output contract, bad input, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from experiments.config import pipeline_config
from experiments.pipeline.job import run_pipeline

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from conftest import write_mask  # noqa: E402


def _run(compose, tmp_path, *overrides):
    cfg = compose(["+exp=mlography", "report.html=false", *overrides])
    out = tmp_path / "run"
    code = run_pipeline(pipeline_config(cfg), out)
    return code, out


def test_mask_archive_outputs(compose, tmp_path, mask_archive):
    code, out = _run(compose, tmp_path, f"data.input={mask_archive}")
    assert code == 0
    regions = pd.read_parquet(out / "regions.parquet")
    scans = pd.read_parquet(out / "scans.parquet")
    clusters = pd.read_parquet(out / "clusters.parquet")
    assert scans["scan_id"].tolist() == ["a", "lot2/b", "lot2/c"]
    assert (scans["status"] == "ok").all()
    assert scans["n_regions"].tolist() == [30, 30, 15]
    assert len(regions) == 75
    for col in ["scan_id", "region_id", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax", "area_px",
                "spatial_score", "circle_score", "combined_score", "cluster_id"]:
        assert col in regions, col
    assert regions["combined_score"].between(0, 1).all()
    assert {"rank", "score", "norm_score", "percentile", "core_region_ids"} <= set(clusters.columns)
    for sid in scans["scan_id"]:
        assert (out / "heatmaps" / f"{sid}.png").is_file()
        assert (out / "labels" / f"{sid}.tif").is_file()
    # region ids are the pixel labels of the written label image
    import tifffile

    lab = tifffile.imread(out / "labels" / "a.tif")
    ra = regions[regions.scan_id == "a"]
    np.testing.assert_array_equal(np.bincount(lab.ravel())[1:], ra["area_px"].to_numpy())


def test_one_bad_file_among_good(compose, tmp_path, mask_archive):
    (mask_archive / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out = _run(compose, tmp_path, f"data.input={mask_archive}")
    assert code == 1  # a partial result is not a success: the failed scan is listed with its error
    scans = pd.read_parquet(out / "scans.parquet").set_index("scan_id")
    assert scans.loc["broken", "status"] == "failed"
    assert "truncated" in scans.loc["broken", "error"]
    assert (scans.drop(index="broken")["status"] == "ok").all()


def test_all_failed_exit_code(compose, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    code, out = _run(compose, tmp_path, f"data.input={bad}")
    assert code == 1
    assert pd.read_parquet(out / "scans.parquet")["status"].tolist() == ["failed"]
    clusters = pd.read_parquet(out / "clusters.parquet")
    assert len(clusters) == 0 and {"scan_id", "cluster_id", "rank", "percentile"} <= set(clusters.columns)


def test_no_impurities_and_exactly_one(compose, tmp_path):
    d = tmp_path / "edge"
    d.mkdir()
    cv2.imwrite(str(d / "empty.png"), np.zeros((50, 60), np.uint8))
    one = np.zeros((50, 60), np.uint8)
    cv2.circle(one, (30, 25), 5, 255, -1)
    cv2.imwrite(str(d / "one.png"), one)
    code, out = _run(compose, tmp_path, f"data.input={d}", "data.mask_polarity=white")
    assert code == 0
    scans = pd.read_parquet(out / "scans.parquet").set_index("scan_id")
    assert scans.loc["empty", "status"] == "ok" and scans.loc["empty", "n_regions"] == 0
    assert scans.loc["one", "status"] == "ok" and scans.loc["one", "n_regions"] == 1
    regions = pd.read_parquet(out / "regions.parquet")
    assert len(regions) == 1 and np.isfinite(regions["combined_score"]).all()

    only_empty = tmp_path / "only_empty"
    only_empty.mkdir()
    cv2.imwrite(str(only_empty / "empty.png"), np.zeros((50, 60), np.uint8))
    code, out2 = _run(compose, tmp_path / "e", f"data.input={only_empty}", "data.mask_polarity=white")
    assert code == 0
    regions = pd.read_parquet(out2 / "regions.parquet")
    assert len(regions) == 0 and {"scan_id", "region_id", "bbox_rmin", "area_px", "combined_score"} <= set(regions)


def test_rgba_and_16bit_inputs(compose, tmp_path):
    d = tmp_path / "formats"
    m = cv2.imread(str(write_mask(d / "m8.png")), cv2.IMREAD_GRAYSCALE)
    import tifffile

    tifffile.imwrite(d / "m16.tif", m.astype(np.uint16) * 257)
    rgba = np.dstack([m, m, m, np.full_like(m, 255)])
    cv2.imwrite(str(d / "mrgba.png"), rgba)
    code, out = _run(compose, tmp_path, f"data.input={d}")
    assert code == 0
    scans = pd.read_parquet(out / "scans.parquet")
    assert (scans["status"] == "ok").all()
    assert scans["n_regions"].nunique() == 1 and scans["n_regions"].iloc[0] == 30


def test_tables_are_deterministic(compose, tmp_path, mask_archive):
    _, a = _run(compose, tmp_path / "1", f"data.input={mask_archive}")
    _, b = _run(compose, tmp_path / "2", f"data.input={mask_archive}")
    for name in ("regions.parquet", "clusters.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_demo_on_real_scans(compose, tmp_path):
    cfg = compose(["+exp=demo", "report.html=false"])
    code = run_pipeline(pipeline_config(cfg), tmp_path / "demo")
    assert code == 0
    scans = pd.read_parquet(tmp_path / "demo" / "scans.parquet")
    assert scans["status"].tolist() == ["ok", "ok"]
    assert (scans["n_regions"] > 50).all()
    assert (0 < scans["area_fraction"]).all() and (scans["area_fraction"] < 0.2).all()
    # clusters point somewhere: without anomaly.area.max_gap_px each scan became one cluster
    # spanning the whole scan
    cl = pd.read_parquet(tmp_path / "demo" / "clusters.parquet").merge(scans[["scan_id", "height", "width"]])
    box = (cl.bbox_rmax - cl.bbox_rmin + 1) * (cl.bbox_cmax - cl.bbox_cmin + 1)
    assert len(cl) >= 4 and (box / (cl.height * cl.width)).max() < 0.2


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_cli_unknown_key_is_a_message_not_a_traceback(tmp_path):
    r = _cli("+exp=demo", "data.no_such_key=1", f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert r.returncode != 0
    assert "no_such_key" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_input_is_a_message(tmp_path):
    r = _cli("+exp=mlography", f"data.input={tmp_path}/missing", f"hydra.run.dir={tmp_path}/o", cwd=REPO)
    assert r.returncode == 2
    text = r.stdout + r.stderr
    assert "input not found" in text and "Traceback" not in text


@pytest.mark.slow
def test_cli_mlography_on_a_real_mask(tmp_path):
    """One row per connected component of a real impurity mask above the detection limit (> 3 px)."""
    from data import binarize_mask, label_mask

    mask = REPO / "data" / "samples" / "large_masks" / "scan4tag-19.png"
    r = _cli("+exp=mlography", f"data.input={mask}", f"hydra.run.dir={tmp_path}", "report.html=false", cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    regions = pd.read_parquet(tmp_path / "regions.parquet")
    px = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    lab, n = label_mask(binarize_mask(px))
    sizes = np.bincount(lab.ravel())[1:]
    assert len(regions) == int((sizes >= 4).sum()) < n  # 1-3 px specks are not impurities
    assert regions["area_px"].min() >= 4


@pytest.mark.slow
def test_multirun_sweeps_presets_and_values(tmp_path, mask_archive):
    """A Hydra multirun over two presets, and a sweep over a scorer option, each job in its own dir."""
    sweep = tmp_path / "sweep"
    r = _cli("-m", "+exp=demo,mlography", "report.html=false", f"hydra.sweep.dir={sweep}", cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for job in ("0", "1"):
        scans = pd.read_parquet(sweep / job / "scans.parquet")
        assert (scans["status"] == "ok").all() and len(scans) == 2
    assert pd.read_parquet(sweep / "0" / "scans.parquet")["kind"].iloc[0] == "scan"
    assert pd.read_parquet(sweep / "1" / "scans.parquet")["kind"].iloc[0] == "mask"

    ks = tmp_path / "k"
    r = _cli("-m", "+exp=mlography", f"data.input={mask_archive}", "anomaly.scorers.spatial.k=5,10",
             "report.html=false", f"hydra.sweep.dir={ks}", cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    a = pd.read_parquet(ks / "0" / "regions.parquet")["spatial_score"]
    b = pd.read_parquet(ks / "1" / "regions.parquet")["spatial_score"]
    assert len(a) == len(b) == 75 and not np.allclose(a, b)


def test_grain_size_of_raw_scans(compose, tmp_path):
    """segmentation.grains.enabled: grain boundaries by the shipped U-Net, Heyn mean and ASTM G per scan."""
    cfg = compose(["+exp=demo", "segmentation.grains.enabled=true", "data.pixel_size_um=0.5", "report.html=false"])
    assert run_pipeline(pipeline_config(cfg), tmp_path / "g") == 0
    scans = pd.read_parquet(tmp_path / "g" / "scans.parquet")
    assert (scans["grain_count"] > 20).all()
    assert scans["heyn_mean_px"].between(5, 300).all()
    assert scans["grain_size_G"].between(3, 15).all()  # ASTM E112 numbers of real alloys
    uncal = run_pipeline(pipeline_config(compose(["+exp=demo", "segmentation.grains.enabled=true",
                                                  "report.html=false"])), tmp_path / "u")
    assert uncal == 0
    assert pd.read_parquet(tmp_path / "u" / "scans.parquet")["grain_size_G"].isna().all()  # G needs a pixel size


def test_warm_up_loads_the_configured_models(compose, tmp_path, caplog):
    """ScanAnalyzer.warm_up loads each worker's models before its first scan; a bad file is only logged."""
    from anomaly.scorers import shape as shape_ae
    from data import discover_inputs
    from experiments.pipeline.runners import StageFactory, run_serial
    from experiments.pipeline.stage import ScanAnalyzer
    from segmentation import models

    pc = pipeline_config(compose(["+exp=demo", "report.html=false", "anomaly.scorers.shape={min_area_px: 20}"]))  # U-Net, grains, shape AE
    models._load.cache_clear()
    shape_ae._load_cached.cache_clear()
    ScanAnalyzer(pc).warm_up()
    assert models._load.cache_info().currsize == 2 and shape_ae._load_cached.cache_info().currsize == 1
    for kind in ("impurities", "grains"):  # served from the cache: no new load
        misses = models._load.cache_info().misses
        models.load_model(kind)
        assert models._load.cache_info().misses == misses
    # masks need no segmentation model
    models._load.cache_clear()
    ScanAnalyzer(pipeline_config(compose(["+exp=mlography", "report.html=false"]))).warm_up()
    assert models._load.cache_info().currsize == 0
    # a missing weight file: warm-up logs it, each scan then fails with the error in its row
    bad = pipeline_config(compose(["+exp=demo", "report.html=false", f"segmentation.unet.weights={tmp_path}/no.keras"]))
    with caplog.at_level("WARNING"):
        ScanAnalyzer(bad).warm_up()
    assert "warm-up failed" in caplog.text
    rows = []
    stats = run_serial(discover_inputs(REPO / "data" / "samples" / "scans")[:1], StageFactory(bad), rows.append)
    assert stats["workers"] == 1 and stats["startup_s"] >= 0
    assert rows[0].row["status"] == "failed" and "no.keras" in rows[0].row["error"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_worker_threads_must_be_a_positive_integer(bad):
    from experiments.config import RuntimeConfig

    with pytest.raises(ValueError, match="worker_threads"):
        RuntimeConfig(mode="ray", worker_threads=bad)
    assert RuntimeConfig(mode="ray", worker_threads=None).worker_threads is None


@pytest.mark.parametrize("how", ["config", "csv"])
def test_ratings_use_the_resolved_calibration(compose, tmp_path, how):
    """A scan calibrated by data.pixel_size_um or a calibration CSV (no metadata in the file) is rated."""
    mask = REPO / "data" / "samples" / "large_masks" / "scan4tag-19.png"
    extra = ["data.pixel_size_um=1.0"]
    if how == "csv":
        (tmp_path / "cal.csv").write_text(f"path,pixel_size_um\n{mask},1.0\n")
        extra = [f"data.calibration_csv={tmp_path / 'cal.csv'}"]
    cfg = compose(["+exp=mlography", f"data.input={mask}", "report.html=false", *extra])
    assert run_pipeline(pipeline_config(cfg), tmp_path / "r") == 0
    scan = pd.read_parquet(tmp_path / "r" / "scans.parquet").iloc[0]
    assert scan["pixel_size_source"] == how
    assert scan["rating_n_fields"] > 0 and scan["e45_DS_worst"] >= 0.5, scan["rating_note"]
    assert len(pd.read_parquet(tmp_path / "r" / "ratings.parquet")) > 0


def test_a_data_bar_is_left_out_of_the_unet_normalisation_and_the_domain_check(compose, tmp_path, monkeypatch):
    """A SEM-style file (a dark data bar with a scale bar burned in): the U-Net gets the exclusion for its
    input normalisation, and the scan is not flagged out of domain for the bar's black pixels."""
    import segmentation.models as models
    from data.labfiles import make_lab_micrograph

    base = cv2.imread(str(REPO / "data/samples/scans/10.jpg"), cv2.IMREAD_GRAYSCALE)
    m = make_lab_micrograph(4242, base=base, base_name="10")
    assert m.truth.data_bar is not None
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "10_sem.png"), m.pixels)
    seen = []
    real = models.predict_impurity_mask

    def spy(pixels, **kw):
        seen.append(kw.get("exclude"))
        return real(pixels, **kw)

    monkeypatch.setattr(models, "predict_impurity_mask", spy)
    cfg = compose(["+exp=demo", "report.html=false", "segmentation.grains.enabled=false", f"data.input={src}"])
    out = tmp_path / "run"
    assert run_pipeline(pipeline_config(cfg), out) == 0
    row = pd.read_parquet(out / "scans.parquet").iloc[0]
    assert row["status"] == "ok" and row["pixel_size_source"] == "scale_bar"
    r0, c0, r1, c1 = m.truth.data_bar
    assert len(seen) == 1 and seen[0] is not None and seen[0][r0:r1, c0:c1].all()
    assert bool(row["in_domain"]), row["domain_note"]
