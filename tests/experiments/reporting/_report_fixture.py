"""A tiny synthetic run dir (tables + scan images) for the reporting tests (imported by conftest)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from data.regions import regions_from_mask

XSS_ID = "<img src=x onerror=alert(1)>"
FAILED_ERROR = "<b>cannot decode</b> & truncated file"
CONFIG_YAML = """\
task: pipeline
data:
  root: <script>alert(2)</script>
anomaly:
  scorers:
    spatial:
      k: 5
    circle:
      min_area_px: 4
  combine:
    method: product
    inputs: [spatial, circle]
report:
  top_n: 50
  cmap: viridis
"""


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())


def _mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Binary mask (0/255) with a few disks and bars of different sizes."""
    m = np.zeros(shape, np.uint8)
    rng = np.random.default_rng(seed)
    h, w = shape
    for k in range(7):
        r = int(rng.integers(8, h - 8))
        c = int(rng.integers(8, w - 8))
        cv2.circle(m, (c, r), int(2 + k), 255, -1)
    m[h - 12 : h - 8, 10:40] = 255  # an elongated bar
    m[5, w - 6] = 255  # a single pixel
    return m


def _scores(reg: pd.DataFrame) -> pd.DataFrame:
    area = reg["area_px"].to_numpy(dtype=float)
    reg["spatial_score"] = area / area.max()
    reg["circle_score"] = 1.0 - reg["solidity"].to_numpy(dtype=float) * 0.5
    comb = reg["spatial_score"] * reg["circle_score"]
    reg["combined_score"] = comb / comb.max()
    return reg


def _clusters(scan_id: str, reg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    reg = reg.copy()
    reg["cluster_id"] = -1
    order = np.argsort(-reg["area_px"].to_numpy(), kind="stable")
    rows = []
    for cid, members in enumerate([order[:2], order[2:4]]):
        if len(members) < 2:
            continue
        idx = reg.index[members]
        reg.loc[idx, "cluster_id"] = cid
        m = reg.loc[idx]
        rows.append(
            {
                "scan_id": scan_id,
                "cluster_id": cid,
                "score": float(m["area_px"].sum()),
                "n_regions": len(m),
                "bbox_rmin": int(m["bbox_rmin"].min()),
                "bbox_cmin": int(m["bbox_cmin"].min()),
                "bbox_rmax": int(m["bbox_rmax"].max()),
                "bbox_cmax": int(m["bbox_cmax"].max()),
                "core_region_ids": str(int(m["region_id"].iloc[0])),
            }
        )
    return reg, pd.DataFrame(rows)


def make_run_dir(root: Path) -> Path:
    """Write a run dir with 5 scans: two masks (one calibrated, one with an XSS name),
    one raw gray scan, one whose source image is gone, one failed scan."""
    run = root / "run"
    src = root / "src"
    run.mkdir(parents=True)
    src.mkdir()
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(CONFIG_YAML)
    (run / ".hydra" / "overrides.yaml").write_text("- +exp=demo\n")

    specs = [
        # scan_id, file name, kind, pixel size, seed
        ("maskA", "maskA.png", "mask", 0.5, 1),
        (XSS_ID, f"{XSS_ID}.png", "mask", None, 2),
        ("lot2/rawB", "rawB.png", "scan", None, 3),
        ("gone", "gone.png", "mask", None, 4),
    ]
    scans, regions, clusters = [], [], []
    for scan_id, fname, kind, ps, seed in specs:
        mask = _mask((96, 128), seed)
        if kind == "scan":
            rng = np.random.default_rng(seed)
            img = (175 + rng.normal(0, 6, mask.shape)).clip(0, 255).astype(np.uint8)
            img[mask > 0] = 50
            _write_png(src / fname, img)
            reg = regions_from_mask(img < 100, pixel_size_um=ps)
        else:
            _write_png(src / fname, mask)
            reg = regions_from_mask(mask, pixel_size_um=ps)
        reg = _scores(reg)
        reg, cl = _clusters(scan_id, reg)
        reg.insert(0, "scan_id", scan_id)
        regions.append(reg)
        clusters.append(cl)
        area_fraction = float((mask > 0).mean())
        scans.append(
            {
                "scan_id": scan_id,
                "path": str(src / fname),
                "kind": kind,
                "status": "ok",
                "error": None,
                "n_regions": len(reg),
                "height": mask.shape[0],
                "width": mask.shape[1],
                "pixel_size_um": np.nan if ps is None else ps,
                "area_fraction": area_fraction,
                "number_density_per_mpx": len(reg) / (mask.size / 1e6),
                "number_density_per_mm2": np.nan
                if ps is None
                else len(reg) / (mask.size * ps * ps / 1e6),
                "grain_size_G": 7.5 if ps else np.nan,
                "heyn_mean_px": 31.25,
                "t_read_s": 0.01,
                "t_segment_s": 0.02,
                "t_regions_s": 0.01,
                "t_score_s": 0.01,
                "t_total_s": 0.05,
            }
        )
    (src / "gone.png").unlink()  # the source image of "gone" has disappeared
    scans.append(
        {
            "scan_id": "broken",
            "path": str(src / "broken.png"),
            "kind": "scan",
            "status": "failed",
            "error": FAILED_ERROR,
            "n_regions": 0,
            "height": np.nan,
            "width": np.nan,
            "pixel_size_um": np.nan,
            "area_fraction": np.nan,
            "number_density_per_mpx": np.nan,
            "number_density_per_mm2": np.nan,
            "grain_size_G": np.nan,
            "t_read_s": 0.0,
            "t_segment_s": np.nan,
            "t_regions_s": np.nan,
            "t_score_s": np.nan,
            "t_total_s": 0.0,
        }
    )
    reg_all = pd.concat(regions, ignore_index=True)
    cl_all = pd.concat(clusters, ignore_index=True)
    order = np.argsort(-cl_all["score"].to_numpy(), kind="stable")
    cl_all = cl_all.iloc[order].reset_index(drop=True)
    cl_all["rank"] = np.arange(1, len(cl_all) + 1)
    cl_all["norm_score"] = cl_all["score"] / cl_all["score"].max()
    dec = np.minimum(9, np.floor(cl_all["norm_score"] * 10).astype(int))
    cl_all["percentile"] = [f"{10 * d}%-{10 * d + 10}%" for d in dec]
    reg_all.to_parquet(run / "regions.parquet")
    cl_all.to_parquet(run / "clusters.parquet")
    pd.DataFrame(scans).to_parquet(run / "scans.parquet")
    return run
