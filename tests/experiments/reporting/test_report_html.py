"""The static HTML report built from a synthetic run dir, and the CLI that rebuilds it."""

from __future__ import annotations

import html
import shutil
from urllib.parse import quote, unquote
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _report_fixture import FAILED_ERROR, XSS_ID

from data.io import read_scan
from data.regions import label_mask
from experiments.report import main as report_main
from experiments.report import parse_args
from experiments.reporting import ReportConfig, write_report
from experiments.reporting._run import labels_from_mask, load_run


def _all_html(report_dir: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in report_dir.rglob("*.html")}


def test_report_structure(built_report):
    index = built_report
    report = index.parent
    assert index.name == "index.html" and index.exists()
    text = index.read_text(encoding="utf-8")
    for anchor in ("summary", "scans", "failed", "clusters", "gallery", "plots", "config"):
        assert f'id="{anchor}"' in text
    # grain size of uncalibrated scans: the Heyn mean intercept in px, per scan and in the summary
    assert "grain intercept px" in text and 'data-v="31.25"' in text
    assert "31.2 px" in text.split('id="summary"')[1].split("</section>")[0]
    clusters = pd.read_parquet(report.parent / "clusters.parquet")
    # one table row per cluster, in rank order
    table = text.split('id="clusters-table"')[1].split("</table>")[0]
    ranks = [int(r) for r in re.findall(r'<tr><td class="num" data-v="(\d+)"', table)]
    assert ranks == sorted(clusters["rank"].tolist())
    # crops for every top cluster whose source image is readable ("gone" has none), inside the report
    readable = clusters[clusters["scan_id"] != "gone"]
    crops = sorted(p.name for p in (report / "img" / "crops").glob("*.png"))
    assert len(crops) == len(readable)
    for name in crops:
        assert f'href="img/crops/{quote(name)}"' in text
    # one page per scan holding a top cluster (bounded), linked from the index
    pages = list((report / "scans").glob("*.html"))
    assert len(pages) == clusters["scan_id"].nunique()
    for p in pages:
        assert f'href="scans/{quote(p.name)}"' in text
    # plots and heatmaps exist and are linked with local paths only
    assert (report / "plots" / "size_distribution.png").exists()
    assert "log-normal fit" in text.lower()
    srcs = re.findall(r'(?:src|href)="([^"]+)"', "".join(_all_html(report).values()))
    assert srcs and not [s for s in srcs if re.match(r"^[a-z]+://", s) or s.startswith("//")]
    for page, body in _all_html(report).items():
        for s in re.findall(r'(?:src|href)="([^"#]+)', body):
            from urllib.parse import unquote

            assert (page.parent / unquote(html.unescape(s))).exists(), (page.name, s)


def test_user_text_is_escaped(built_report):
    pages = _all_html(built_report.parent)
    for page, body in pages.items():
        assert XSS_ID not in body, page
        assert "<script>alert(2)</script>" not in body, page
        assert "<b>cannot decode</b>" not in body, page
    index = pages[built_report]
    assert html.escape(XSS_ID) in index
    assert html.escape(FAILED_ERROR) in index
    assert html.escape("<script>alert(2)</script>") in index
    # the only script is the report's own, allowed by hash in the CSP
    assert index.count("<script>") == 1 and "script-src 'sha256-" in html.unescape(index)


def test_missing_source_image_leaves_a_note(built_report):
    report = built_report.parent
    index = built_report.read_text(encoding="utf-8")
    assert "gone: source image not readable" in index
    page = next(p for p in (report / "scans").glob("gone*.html"))
    assert "source image not readable" in page.read_text(encoding="utf-8")
    assert not list((report / "img" / "heatmaps").glob("gone*"))


def test_failed_scan_is_listed_with_its_error(built_report):
    index = built_report.read_text(encoding="utf-8")
    failed = index.split('id="failed"')[1].split("</section>")[0]
    assert "broken" in failed and html.escape(FAILED_ERROR) in failed
    assert "4 ok / 1 failed" in index


def test_mask_labels_are_recovered_by_box(run_dir):
    regions = pd.read_parquet(run_dir / "regions.parquet")
    scans = pd.read_parquet(run_dir / "scans.parquet").set_index("scan_id")
    reg = regions[regions["scan_id"] == "maskA"]
    px = read_scan(scans.loc["maskA", "path"]).pixels
    labels = labels_from_mask(px, reg)
    expected, _ = label_mask(px)
    np.testing.assert_array_equal(labels, expected)  # ids 1..n in raster order either way
    # a table that lost a region (filtered small object) still maps the others right
    kept = reg[reg["region_id"] != 1]
    lab2 = labels_from_mask(px, kept)
    assert not (lab2 == 1).any() and ((lab2 > 0) == (expected > 1)).all()
    assert labels_from_mask(np.zeros_like(px), reg) is None  # an unrelated mask


def test_existing_heatmaps_and_labels_are_used(run_dir, tmp_path):
    import tifffile

    from experiments.layout import RunLayout
    from experiments.reporting import write_png

    hm = run_dir / RunLayout.heatmap_rel("maskA")
    write_png(hm, np.full((10, 10, 3), 7, np.uint8))
    index = write_report(run_dir, top_n=50)
    page = (index.parent / "scans" / "maskA.html").read_text(encoding="utf-8")
    assert 'src="../img/heatmaps/maskA.png"' in page  # the run's heatmap, copied into the report
    assert (index.parent / "img" / "heatmaps" / "maskA.png").read_bytes() == hm.read_bytes()
    index = write_report(run_dir, top_n=0)
    assert not (index.parent / "img").exists()  # top_n=0: no crops, no scan pages
    # a stored label image makes a raw scan's outlines exact instead of boxes
    scans = pd.read_parquet(run_dir / "scans.parquet").set_index("scan_id")
    px = read_scan(scans.loc["lot2/rawB", "path"]).pixels
    lab, _ = label_mask(px < 100)
    (run_dir / "labels" / "lot2").mkdir(parents=True)
    tifffile.imwrite(run_dir / "labels" / "lot2" / "rawB.tif", lab.astype(np.int32))
    index = write_report(run_dir, top_n=50, out_dir=tmp_path / "r2")
    text = index.read_text(encoding="utf-8")
    assert "lot2/rawB: impurity pixels not available" not in text
    assert "gone: source image not readable" in text


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run dir"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")
    with pytest.raises(ValueError, match="heatmaps"):
        ReportConfig(heatmaps="sometimes")
    with pytest.raises(ValueError, match="unknown report option"):
        ReportConfig.from_mapping({"topn": 3})


def test_run_without_regions_or_clusters(run_dir):
    (run_dir / "regions.parquet").unlink()
    (run_dir / "clusters.parquet").unlink()
    (run_dir / ".hydra" / "config.yaml").unlink()
    run = load_run(run_dir)
    assert any("regions.parquet not found" in n for n in run.notes)
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "No clusters in this run." in text and "no .hydra/config.yaml" in text


def test_cli_rebuilds_the_report(run_dir, capsys):
    assert report_main([f"run_dir={run_dir}", "top_n=3", "report.cmap=magma"]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == run_dir / "report" / "index.html" and index.exists()
    assert len(list((index.parent / "img" / "crops").glob("*.png"))) == 2  # rank 2 is in "gone"
    _, _, cfg = parse_args([f"run_dir={run_dir}"])
    assert cfg.top_n == 50 and cfg.cmap == "viridis"  # from the run's report section
    assert report_main([f"run_dir={run_dir}", "no_such_option=1"]) == 2
    assert report_main(["top_n=3"]) == 2
    assert report_main([f"run_dir={run_dir / 'nope'}"]) == 1
    assert report_main(["--help"]) == 0


def test_report_folder_works_when_moved(built_report, tmp_path):
    """Every link of the report stays inside its folder: a moved (or zipped) copy keeps working."""
    moved = tmp_path / "elsewhere" / "report"
    shutil.copytree(built_report.parent, moved)
    for page, body in _all_html(moved).items():
        for s in re.findall(r'(?:src|href)="([^"#]+)', body):
            target = (page.parent / unquote(html.unescape(s))).resolve()
            assert target.is_relative_to(moved.resolve()) and target.exists(), (page.name, s)


def test_huge_runs_give_a_bounded_report(run_dir):
    """A clusters table that pages and stops at max_table_rows; scan pages only for the top clusters."""
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    many = pd.concat([clusters.assign(cluster_id=clusters["cluster_id"] + 100 * k) for k in range(40)],
                     ignore_index=True)
    many["rank"] = np.arange(1, len(many) + 1)
    many.to_parquet(run_dir / "clusters.parquet", index=False)
    index = write_report(run_dir, top_n=3, max_table_rows=50, page_rows=20)
    report = index.parent
    text = index.read_text(encoding="utf-8")
    first = text.split('id="clusters-table"')[1].split("</table>")[0].split("<tbody>")[1]
    assert len(re.findall("<tr>", first)) == 20
    pages = sorted(p.name for p in (report / "clusters").glob("*.html"))
    assert pages == ["page-0002.html", "page-0003.html"]  # 50 rows in pages of 20
    last = (report / "clusters" / "page-0003.html").read_text(encoding="utf-8")
    assert len(re.findall("<tr>", last.split("<tbody>")[1])) == 10
    assert f"best 50 of {len(many):,} clusters" in text
    assert len(list((report / "scans").glob("*.html"))) <= 3


def test_report_config_matches_conf_file():
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[3] / "conf" / "report" / "default.yaml"
    cfg = ReportConfig.from_mapping(OmegaConf.to_container(OmegaConf.load(conf)))
    assert cfg == ReportConfig()  # the yaml documents the dataclass defaults
    assert set(cfg.as_kwargs()) <= set(write_report.__kwdefaults__)


def test_grain_size_card_of_one_scan_is_the_scans_own_value_and_interval():
    """One scan: its G and its interval over its fields (a pooled interval over scans needs >= 3 scans)."""
    import pandas as pd

    from experiments.reporting.html import _pooled_g

    row = {"n_intercepts": 9578, "n_crossings": 9600, "heyn_mean_px": 22.7, "mean_intercept_px": 22.7,
           "heyn_mean_um": 18.46, "mean_intercept_um": 18.46,
           "grain_size_G": 8.2313, "grain_size_G_ci95_low": 8.0705, "grain_size_G_ci95_high": 8.4017}
    assert _pooled_g(pd.DataFrame([row])) == "8.23 [8.07, 8.40]"
    two = pd.DataFrame([row, {**row, "grain_size_G": 8.5}])
    text = _pooled_g(two)  # pooled over 2 scans: no interval, and the note counts scans, not fields
    assert "scan(s) with boundaries" in text and "field(s)" not in text
