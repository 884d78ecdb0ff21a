"""+exp=phases end to end: phase tables, pores through the scorers, files, report, resume, config errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from data.synthetic_phases import coating_scan
from experiments.config import ConfigError, pipeline_config
from experiments.pipeline.job import run_pipeline
from experiments.pipeline.phases import phase_configs, region_phases
from experiments.pipeline.validate import validate_pipeline

FRACTION_COLUMNS = ["scan_id", "phase", "area_fraction", "ci_low", "ci_high", "n_fields",
                    "point_count_fraction", "point_count_se"]
COATING_COLUMNS = ["scan_id", "thickness_mean_um", "thickness_std_um", "thickness_min_um", "thickness_max_um",
                   "porosity", "porosity_ci_low", "porosity_ci_high"]


@pytest.fixture(scope="module")
def coatings(tmp_path_factory):
    """Two calibrated coating cross-sections written as ImageJ TIFFs (µm per px in the tags), with truth."""
    import tifffile

    root = tmp_path_factory.mktemp("coatings")
    truth = {}
    for name, seed, por in (("lot-A/c1", 11, 0.03), ("lot-B/c2", 12, 0.08)):
        t = coating_scan(shape=(320, 384), seed=seed, pixel_size_um=0.5, thickness_px=120.0, porosity=por)
        p = root / f"{name}.tif"
        p.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(p, t.image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
        truth[name] = t
    return root, truth


def _run(compose, out, *overrides):
    cfg = compose(["+exp=phases", *overrides])
    return run_pipeline(pipeline_config(cfg), out)


@pytest.fixture(scope="module")
def phase_run(coatings, tmp_path_factory):
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    from conftest import CONF
    from experiments.schemas import register

    register()
    root, truth = coatings
    out = tmp_path_factory.mktemp("phase-run") / "run"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose(config_name="config", overrides=["+exp=phases", f"data.input={root}", "report.top_n=4"])
    assert run_pipeline(pipeline_config(cfg), out) == 0
    return out, truth


def test_phase_tables_have_the_issue_columns_and_match_truth(phase_run):
    out, truth = phase_run
    ph = pd.read_parquet(out / "phases.parquet")
    assert list(ph.columns[: len(FRACTION_COLUMNS)]) == FRACTION_COLUMNS
    assert sorted(ph["scan_id"].unique()) == ["lot-A/c1", "lot-B/c2"]
    assert set(ph["phase"]) == {"pore", "oxide", "coating", "substrate"}
    assert ((ph["ci_low"] <= ph["area_fraction"]) & (ph["area_fraction"] <= ph["ci_high"])).all()
    co = pd.read_parquet(out / "coating.parquet").set_index("scan_id")
    assert set(COATING_COLUMNS) <= set(co.reset_index().columns)
    for sid, t in truth.items():
        # a sanity bound (the accuracy targets are +exp=eval_phases's): the two lots' porosities differ
        assert abs(co.loc[sid, "porosity"] - t.porosity) < 0.015, (sid, co.loc[sid, "porosity"], t.porosity)
        assert abs(co.loc[sid, "thickness_mean_um"] / t.thickness_mean_um - 1) < 0.05
    assert (co["thickness_unit"] == "um").all()


def test_pores_are_scored_regions_with_their_phase(phase_run):
    out, _ = phase_run
    regions = pd.read_parquet(out / "regions.parquet")
    assert "phase" in regions.columns and set(regions["phase"]) <= {"pore", "oxide"}
    assert (regions["phase"] == "pore").sum() > 5
    assert regions["combined_score"].notna().all() and "cluster_id" in regions.columns
    clusters = pd.read_parquet(out / "clusters.parquet")
    assert len(clusters) >= 1 and "rank" in clusters.columns
    # the expert reads what the cluster is made of, not "impurities"
    assert set(clusters["phase"]) <= {"pore", "oxide", "oxide+pore"}
    assert not clusters["reason"].str.contains("impurit").any()
    first = clusters.iloc[0]
    assert first["phase"].split("+")[0] in first["reason"]
    scans = pd.read_parquet(out / "scans.parquet")
    assert (scans["status"] == "ok").all()
    assert scans["n_regions"].tolist() == regions.groupby("scan_id").size().loc[scans["scan_id"]].tolist()


def test_phase_files_and_report(phase_run):
    import tifffile

    out, _ = phase_run
    scans = pd.read_parquet(out / "scans.parquet")
    for _, r in scans.iterrows():
        assert (out / r["phases_file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / r["thickness_file"]).is_file()
        with tifffile.TiffFile(out / r["phases_file"].replace(".png", ".tif")) as tf:
            lab = tf.asarray()
            assert tf.imagej_metadata["unit"] == "micron"
        assert lab.shape == (320, 384) and set(np.unique(lab)) <= {0, 1, 2, 3, 4}
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    for anchor in ('id="phases"', 'id="coating"', 'id="phase-sizes"', "img/phases/lot-A/c1.png",
                   "img/thickness/lot-B/c2.png", "objects (oxide, pore)"):
        assert anchor in html, anchor
    assert "impurities, 95% interval" not in html  # the rows are pores and oxides, not impurities
    assert "impurities " not in html.split('id="gallery"')[-1].split("</section>")[0]  # the gallery cards too
    assert not (out / "exports" / "notes.txt").exists()  # no note about the ratings it did not write
    assert (out / "report" / "img" / "phases" / "lot-A" / "c1.png").is_file()
    assert (out / "exports" / "phases.csv").is_file() and (out / "exports" / "coating.csv").is_file()


def test_resume_reuses_the_phase_tables(phase_run, coatings, compose, tmp_path):
    out, _ = phase_run
    root, _ = coatings
    before = pd.read_parquet(out / "phases.parquet")
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(out, copy)
    assert _run(compose, copy, f"data.input={root}", "report.top_n=4", "runtime.resume=true") == 0
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "phases.parquet"), before)
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "coating.parquet"), pd.read_parquet(out / "coating.parquet"))


def test_compare_groups_phase_fractions_and_porosity(phase_run):
    from experiments.reporting.compare import compare_run

    out, _ = phase_run
    res = compare_run(out, out_dir=out / "compare")
    anova = pd.read_csv(out / "compare" / "anova.csv")
    assert {"phase_pore_fraction", "porosity", "thickness_mean_um"} <= set(anova["metric"])
    assert res is not None


@pytest.mark.parametrize("overrides, message", [
    (["phases.substrate=null"], "no substrate phase"),
    (["phases.objects=[pores]"], "phases.objects ['pores'] are not among phases.names"),
    (["phases.coating=layer"], "phases.coating='layer' is not one of phases.names"),
    (["data.kind=mask"], "needs raw scans"),
    (["phases.segmenter=unet"], "needs phases.weights"),
    (["phases.segmenter=magic"], "phases.segmenter must be one of"),
    (["phases.n=3"], "phases.n=3 but 4 names"),
])
def test_bad_phase_settings_are_one_line_errors(compose, overrides, message):
    cfg = compose(["+exp=phases", *overrides])
    with pytest.raises((ConfigError, ValueError)) as exc:
        validate_pipeline(pipeline_config(cfg))
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_uncalibrated_coating_fails_per_scan_with_the_px_hint(coatings, compose, tmp_path, caplog):
    import tifffile

    _, truth = coatings
    scan = tmp_path / "in" / "plain.tif"
    scan.parent.mkdir()
    tifffile.imwrite(scan, truth["lot-A/c1"].image)  # no resolution tags: uncalibrated
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        code = _run(compose, out, f"data.input={scan.parent}", "report.html=false")
    scans = pd.read_parquet(out / "scans.parquet")
    assert code != 0 or (scans["status"] == "failed").all()
    assert "allow_px=true" in scans["error"].iloc[0]
    # with the px fallback said, it is measured in px
    out2 = tmp_path / "run2"
    assert _run(compose, out2, f"data.input={scan.parent}", "report.html=false", "phases.allow_px=true") == 0
    assert (pd.read_parquet(out2 / "coating.parquet")["thickness_unit"] == "px").all()


def test_phases_off_is_not_part_of_the_per_scan_settings(compose):
    from experiments.pipeline.keys import per_scan_settings
    from omegaconf import OmegaConf

    off = per_scan_settings(OmegaConf.to_container(compose(["+exp=mlography"]), resolve=True))
    assert not any(k.startswith("phases.") for k in off)
    on = per_scan_settings(OmegaConf.to_container(compose(["+exp=phases"]), resolve=True))
    assert on["phases.names"] == ["pore", "oxide", "coating", "substrate"]


def test_region_phases_names_each_component():
    phase = np.array([[1, 1, 3, 2], [3, 3, 3, 2], [1, 3, 3, 3]], np.uint8)
    labels = np.array([[1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 0, 0]], np.int32)
    names = ("pore", "oxide", "matrix")
    assert region_phases(labels, phase, names, np.array([2, 1, 3])).tolist() == ["oxide", "pore", "pore"]
    assert region_phases(labels, phase, names, np.array([], np.int64)).size == 0
    with pytest.raises(ValueError, match="not all in the label image"):
        region_phases(labels, phase, names, np.array([4]))


def test_phase_configs_split_the_section(compose):
    pc = pipeline_config(compose(["+exp=phases", "phases.point_spacing_px=8"]))
    seg, measure = phase_configs(pc.phases)
    assert seg.names == ("pore", "oxide", "coating", "substrate") and seg.clahe_clip is None
    assert measure.point_spacing_px == 8 and measure.coating == "coating" and measure.objects == ("pore", "oxide")


def test_the_learned_phase_segmenter_runs_in_the_pipeline(coatings, compose, tmp_path):
    """phases.segmenter=unet with the shipped unet_phases (trained by +exp=train_unet_phases)."""
    from experiments.config import REPO_ROOT

    root, truth = coatings
    out = tmp_path / "run"
    weights = REPO_ROOT / "segmentation" / "weights" / "unet_phases.keras"
    assert _run(compose, out, f"data.input={root}", "report.html=false", "phases.segmenter=unet",
                f"phases.weights={weights}") == 0
    co = pd.read_parquet(out / "coating.parquet").set_index("scan_id")
    for sid, t in truth.items():
        assert abs(co.loc[sid, "thickness_mean_um"] / t.thickness_mean_um - 1) < 0.05
    assert set(pd.read_parquet(out / "regions.parquet")["phase"]) <= {"pore", "oxide"}
