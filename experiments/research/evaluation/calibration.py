"""Evaluation ``eval_calibration``: pixel size from files and scale bars, annotations excluded.

``python -m experiments.run +exp=eval_calibration`` writes ``calibration_eval.json`` and
``calibration_eval.md`` into the run's output dir.  Everything is generated here, seeded
(:mod:`data.labfiles`), with seeds the detector was not tuned on (it was tuned on seeds
1000-1029, 2000-2079 and 3000-3199; see ``EvalCalibrationConfig.seed``):

- **Scale bars**: ``n_files`` micrographs (synthetic scans, or real dev scans when ``data_root`` is
  set - never the validation scans) with a burned-in scale bar of random length, label
  (``100 µm``, ``50 um``, ``0.1 mm``, ``500 nm``), font (13: 8 the label reader's glyphs come from,
  5 it never saw), text height 12-30 px, thickness, polarity, position (data bar, the four corners),
  backing box, end ticks, and a data bar on half of them; a third saved as JPEG.  Per file: the pixel
  size from :func:`data.annotations.find_annotations` against the truth (error of
  ``label length / bar length in px``); the share within ``tolerance`` (target: >= 95 %).
- **Metadata**: ``metadata_files`` files per format (ImageJ, OME, FEI, Zeiss SEM, resolution tags;
  CZI when the ``vendor`` extra is installed) with random pixel sizes: exact means a relative error
  <= 1e-9.
- **Annotation recall / precision**: object level - the truth objects are the scale bar and the
  data bar; a found object matches when its box overlaps the true one with IoU >= 0.5 (the scale
  bar's box is the bar with its end ticks).  Pixel level - recall = share of the true annotation
  pixels (bar, ticks, label box, backing box, data bar) inside the exclusion mask; precision = share
  of the mask within ``precision_margin_px`` of the true annotation boxes.
- **False regions on the annotation**: each file is segmented (``classical``; ``unet`` on the first
  ``unet_max_files``); the impurity components that overlap the true annotation are counted before
  exclusion, and after it (labels zeroed in the mask, components touching it dropped).  The real
  impurities lost to the exclusion (components away from the annotation that touch the mask) are
  counted too.
- **Real scans**: :func:`find_annotations` on every real dev scan (no annotation on them: every
  detection is false); the validation scans are reported on their own line.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy import ndimage

from data import labfiles as L
from data import read_scan
from data._glyphs import HELD_OUT_FONTS
from data.annotations import find_annotations

from experiments._markdown import markdown_table
from experiments.config import dataclass_from
from ..datasets.splits import VAL_SCANS
from .config import EvalCalibrationConfig

__all__ = ["EvalCalibrationConfig", "run", "scale_bar_rows", "metadata_rows"]

log = logging.getLogger(__name__)


def _iou(a, b) -> float:
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _real_bases(root: str) -> list[Path]:
    if not root:
        return []
    d = Path(root) / "scans" / "images"
    if not d.is_dir():
        raise FileNotFoundError(f"eval.data_root has no scans/images folder: {d}")
    return [p for p in sorted(d.iterdir()) if p.suffix.lower() in (".jpg", ".png") and p.stem not in VAL_SCANS]


def _truth_region(truth: L.AnnotationTruth, shape) -> np.ndarray:
    """The true annotation as filled boxes: data bar, bar, label box and the mask (backing box)."""
    m = truth.mask.copy()
    r0 = min(truth.bar_box[0], truth.label_box[0])
    c0 = min(truth.bar_box[1], truth.label_box[1])
    r1 = max(truth.bar_box[2], truth.label_box[2])
    c1 = max(truth.bar_box[3], truth.label_box[3])
    m[r0:r1 + 1, c0:c1 + 1] = True
    return m


def _false_regions(labels: np.ndarray, truth_mask: np.ndarray, exclude: np.ndarray) -> dict:
    """Components on the annotation before / after exclusion, and real ones the exclusion removed."""
    n = int(labels.max())
    if n == 0:
        return {"before": 0, "after": 0, "lost": 0, "total": 0}
    idx = np.arange(1, n + 1)
    on_truth = ndimage.maximum(truth_mask, labels, idx).astype(bool)
    near = ndimage.binary_dilation(exclude, iterations=1)
    touches = ndimage.maximum(near, labels, idx).astype(bool)
    after_labels = np.where(exclude, 0, labels)
    present_after = ndimage.maximum(after_labels > 0, labels, idx).astype(bool) & ~touches
    on_truth_after = ndimage.maximum(truth_mask & (after_labels > 0), labels, idx).astype(bool) & present_after
    return {"before": int(on_truth.sum()), "after": int(on_truth_after.sum()),
            "lost": int((touches & ~on_truth).sum()), "total": n}


def scale_bar_rows(ec: EvalCalibrationConfig, segmenters: dict) -> list[dict]:
    """One row per generated file: truth, what was found, errors, false-region counts."""
    bases = _real_bases(ec.data_root)
    rng = np.random.default_rng(ec.seed)
    rows = []
    for i in range(ec.n_files):
        seed = ec.seed + i
        base, base_name = None, "synthetic"
        if bases and rng.random() < ec.real_fraction:
            p = bases[int(rng.integers(len(bases)))]
            base, base_name = read_scan(p).pixels, p.name
        jpeg = bool(rng.random() < ec.jpeg_fraction)
        lm = L.make_lab_micrograph(seed, base=base, base_name=base_name, shape=ec.shape)
        px = lm.pixels
        if jpeg:
            ok, buf = cv2.imencode(".jpg", px if px.dtype == np.uint8 else (px >> 8).astype(np.uint8),
                                   [cv2.IMWRITE_JPEG_QUALITY, ec.jpeg_quality])
            px = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        t0 = time.perf_counter()
        ann = find_annotations(px)
        dt = time.perf_counter() - t0
        tr, st = lm.truth, lm.style
        bar_hit = [b for b in ann.scale_bars if _iou(b.box, tr.bar_box) >= 0.5]
        false_bars = len(ann.scale_bars) - len(bar_hit)
        db_hit = tr.data_bar is not None and ann.data_bar is not None and _iou(ann.data_bar, tr.data_bar) >= 0.5
        region = _truth_region(tr, px.shape)
        near_truth = ndimage.binary_dilation(region, iterations=ec.precision_margin_px)
        m = ann.mask
        err = None if ann.pixel_size_um is None else ann.pixel_size_um / tr.pixel_size_um - 1.0
        row = {
            "seed": seed, "base": base_name, "jpeg": jpeg, "font": st.font,
            "font_seen": st.font not in HELD_OUT_FONTS, "label": st.label, "text_height_px": st.text_height_px,
            "thickness_px": st.thickness_px, "polarity": st.polarity, "position": st.position,
            "backing_box": st.backing_box, "end_ticks": st.end_ticks, "data_bar": st.databar_height_px > 0,
            "true_pixel_size_um": tr.pixel_size_um, "true_length_px": tr.bar_length_px,
            "found_pixel_size_um": ann.pixel_size_um,
            "read_label": bar_hit[0].label if bar_hit else None,
            "found_length_px": bar_hit[0].length_px if bar_hit else None,
            "rel_error": err, "within_tol": err is not None and abs(err) <= ec.tolerance,
            "bar_found": bool(bar_hit), "false_bars": false_bars,
            "data_bar_found": bool(db_hit), "false_data_bar": ann.data_bar is not None and tr.data_bar is None,
            "pixel_recall": float((m & tr.mask).sum() / max(tr.mask.sum(), 1)),
            "pixel_precision": float((m & near_truth).sum() / m.sum()) if m.any() else float("nan"),
            "seconds": dt, "notes": "; ".join(ann.notes),
        }
        for name, seg in segmenters.items():
            if name == "unet" and i >= ec.unet_max_files:
                continue
            fr = _false_regions(seg(px), tr.mask, m)
            row.update({f"{name}_{k}": v for k, v in fr.items()})
        rows.append(row)
        log.info("file %d/%d %s %r -> %r err=%s", i + 1, ec.n_files, st.font, st.label, row["read_label"], err)
    return rows


def metadata_rows(ec: EvalCalibrationConfig) -> list[dict]:
    """Per format: files written as the software writes them, pixel size read back."""
    rng = np.random.default_rng(ec.seed + 10_000_000)
    img = (np.arange(64 * 96) % 251).astype(np.uint8).reshape(64, 96)
    writers = {
        "ImageJ (Fiji, unit=micron)": lambda p, v: L.write_imagej_tiff(p, img, pixel_size_um=v),
        "ImageJ (unit=nm)": lambda p, v: L.write_imagej_tiff(p, img, pixel_size_um=v, unit="nm"),
        "OME-TIFF (µm)": lambda p, v: L.write_ome_tiff(p, img, pixel_size_um=v),
        "OME-TIFF (nm)": lambda p, v: L.write_ome_tiff(p, img, pixel_size_um=v, unit="nm"),
        "FEI/Thermo (tag 34682)": lambda p, v: L.write_fei_tiff(p, img, pixel_size_um=v),
        "FEI (tag 34680)": lambda p, v: L.write_fei_tiff(p, img, pixel_size_um=v, tag=34680),
        "Zeiss SEM (nm)": lambda p, v: L.write_zeiss_sem_tiff(p, img, pixel_size_um=v),
        "Zeiss SEM (µm)": lambda p, v: L.write_zeiss_sem_tiff(p, img, pixel_size_um=v, unit="µm"),
        "TIFF resolution (cm)": lambda p, v: L.write_resolution_tiff(p, img, pixel_size_um=v),
        "TIFF resolution (inch)": lambda p, v: L.write_resolution_tiff(p, img, pixel_size_um=v, unit="INCH"),
    }
    try:
        import pylibCZIrw  # noqa: F401

        writers["CZI (vendor extra)"] = lambda p, v: L.write_czi(p, img, pixel_size_um=v)
        suffix_czi = True
    except ImportError:
        suffix_czi = False
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, write in writers.items():
            errs, read = [], 0
            for k in range(ec.metadata_files):
                # 4 significant digits, as instruments write them: "exact" = the file's value read back
                v = float(f"{np.exp(rng.uniform(math.log(0.002), math.log(20.0))):.4g}")
                p = Path(d) / f"f{k}{'.czi' if name.startswith('CZI') else '.tif'}"
                write(p, v)
                s = read_scan(p)
                if s.pixel_size_um is not None and s.pixel_size_source == "metadata":
                    read += 1
                    errs.append(abs(s.pixel_size_um / v - 1))
            max_err = max(errs) if errs else float("nan")
            rows.append({"format": name, "files": ec.metadata_files, "read": read, "max_rel_error": max_err,
                         "exact": read == ec.metadata_files and max_err <= 1e-9})
    if not suffix_czi:
        rows.append({"format": "CZI (vendor extra)", "files": 0, "read": 0, "max_rel_error": float("nan"),
                     "exact": None, "note": 'not installed here: pip install "quantmet[vendor]"'})
    return rows


def real_scan_rows(ec: EvalCalibrationConfig) -> list[dict]:
    if not ec.data_root:
        return []
    d = Path(ec.data_root) / "scans" / "images"
    out = []
    for split, keep in (("dev", lambda s: s not in VAL_SCANS), ("validation", lambda s: s in VAL_SCANS)):
        files = [p for p in sorted(d.iterdir()) if p.suffix.lower() in (".jpg", ".png") and keep(p.stem)]
        det = px = 0
        for p in files:
            ann = find_annotations(read_scan(p).pixels)
            det += len(ann.scale_bars) + (ann.data_bar is not None)
            px += int(ann.mask.sum())
        out.append({"scans": split, "files": len(files), "false_annotations": det, "masked_pixels": px})
    return out


def _summary(df: pd.DataFrame, ec: EvalCalibrationConfig, segmenters) -> dict:
    def share(x):
        return float(np.mean(x)) if len(x) else float("nan")

    s = {
        "files": len(df),
        "within_tolerance": share(df.within_tol),
        "target_met": bool(share(df.within_tol) >= ec.target_fraction),
        "bar_recall": share(df.bar_found),
        "label_read": share(df.found_pixel_size_um.notna()),
        "wrong_pixel_size": share(df.found_pixel_size_um.notna() & ~df.within_tol),
        "false_bars_per_file": float(df.false_bars.mean()),
        "data_bar_recall": share(df.data_bar_found[df.data_bar]),
        "false_data_bars": int(df.false_data_bar.sum()),
        "pixel_recall_mean": float(df.pixel_recall.mean()),
        "pixel_recall_min": float(df.pixel_recall.min()),
        "pixel_precision_mean": float(df.pixel_precision.mean()),
        "median_abs_rel_error_when_read": float(df.rel_error.dropna().abs().median()) if df.rel_error.notna().any() else float("nan"),
        "seconds_per_file_mean": float(df.seconds.mean()),
    }
    n_true = len(df) + int(df.data_bar.sum())
    n_hit = int(df.bar_found.sum() + df.data_bar_found.sum())
    n_found = n_hit + int(df.false_bars.sum() + df.false_data_bar.sum())
    s["object_recall"] = n_hit / n_true
    s["object_precision"] = n_hit / n_found if n_found else float("nan")
    for name in segmenters:
        col = f"{name}_before"
        if col in df:
            sub = df[df[col].notna()]
            s[f"{name}_files"] = len(sub)
            s[f"{name}_false_regions_before"] = int(sub[col].sum())
            s[f"{name}_false_regions_after"] = int(sub[f"{name}_after"].sum())
            s[f"{name}_real_regions_lost"] = int(sub[f"{name}_lost"].sum())
            s[f"{name}_regions_total"] = int(sub[f"{name}_total"].sum())
    return s


def _groups(df: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for col in ("font_seen", "font", "position", "polarity", "jpeg", "backing_box", "end_ticks"):
        g = df.groupby(col).agg(files=("seed", "size"), within_tol=("within_tol", "mean"),
                                bar_found=("bar_found", "mean"))
        g = g.reset_index().rename(columns={col: "value"})
        g.insert(0, "by", col)
        g["value"] = g["value"].astype(str)
        parts.append(g)
    return pd.concat(parts, ignore_index=True)


def pipeline_rows(ec: EvalCalibrationConfig, cfg: DictConfig, work: Path) -> list[dict]:
    """Whole pipeline runs on generated lab files, annotations excluded vs not (``data.annotations.enabled``).

    Per scan and run: the impurity regions that lie on the true annotation (their pixels in the label
    image meet it) and how many of the scan's top 3 clusters (``scan_rank`` <= 3) hold such a region.
    """
    import tifffile

    from experiments.config import pipeline_config
    from experiments.layout import RunLayout
    from experiments.pipeline.job import run_pipeline

    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    truths = {}
    bases = _real_bases(ec.data_root)
    rng = np.random.default_rng(ec.pipeline_seed)
    for i in range(ec.pipeline_files):
        base, base_name = None, "synthetic"
        if bases and rng.random() < ec.real_fraction:
            p = bases[int(rng.integers(len(bases)))]
            base, base_name = read_scan(p).pixels, p.name
        lm = L.make_lab_micrograph(ec.pipeline_seed + i, base=base, base_name=base_name, shape=ec.shape)
        sid = f"lab-{i:03d}"
        cv2.imwrite(str(inputs / f"{sid}.png"), lm.pixels)
        truths[sid] = (lm.truth.mask, base_name, lm.style.label)
    rows = []
    base_cfg = OmegaConf.to_container(cfg, resolve=True)
    for enabled in (True, False):
        c = OmegaConf.create(base_cfg)
        c.task = "pipeline"
        c.data.input = str(inputs)
        c.data.kind = "scan"
        c.data.annotations = {"enabled": enabled}
        c.report.html = False
        for key in ("eval", "paths"):
            c.pop(key, None)
        out = work / ("excluded" if enabled else "not-excluded")
        code = run_pipeline(pipeline_config(c), out)
        if code != 0:
            raise RuntimeError(f"pipeline run on the generated lab files failed ({code})")
        L_ = RunLayout(out)
        regions = pd.read_parquet(L_.regions, columns=["scan_id", "region_id", "cluster_id"])
        clusters = pd.read_parquet(L_.clusters, columns=["scan_id", "cluster_id", "scan_rank"])
        for sid, (truth, base_name, label) in truths.items():
            lab = tifffile.imread(L_.labels(sid))
            on = np.unique(lab[truth & (lab > 0)])
            reg = regions[regions["scan_id"] == sid]
            hit_clusters = set(reg[reg["region_id"].isin(on) & (reg["cluster_id"] >= 0)]["cluster_id"])
            top = clusters[(clusters["scan_id"] == sid) & (clusters["scan_rank"] <= 3)]
            rows.append({"annotations_excluded": enabled, "scan": sid, "base": base_name, "label": label,
                         "regions": len(reg), "regions_on_annotation": int(len(on)),
                         "top3_clusters_on_annotation": int(top["cluster_id"].isin(hit_clusters).sum())})
    return rows


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_calibration``."""
    ec = dataclass_from(EvalCalibrationConfig, OmegaConf.to_container(cfg.get("eval", {}), resolve=True), where="eval")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from segmentation import make_segmenter

    segmenters = {name: make_segmenter(name, {}) for name in ec.segmenters}
    t0 = time.perf_counter()
    rows = scale_bar_rows(ec, segmenters)
    df = pd.DataFrame(rows)
    summary = _summary(df, ec, segmenters)
    meta = metadata_rows(ec)
    real = real_scan_rows(ec) if ec.real_scans_check else []
    groups = _groups(df)
    pipe = pipeline_rows(ec, cfg, output_dir / "pipeline") if ec.pipeline_files else []
    pipe_summary = []
    if pipe:
        pdf = pd.DataFrame(pipe)
        for enabled, g in pdf.groupby("annotations_excluded", sort=False):
            pipe_summary.append({"annotations_excluded": bool(enabled), "scans": len(g),
                                 "scans_with_regions_on_annotation": int((g.regions_on_annotation > 0).sum()),
                                 "regions_on_annotation": int(g.regions_on_annotation.sum()),
                                 "scans_with_a_top3_cluster_on_annotation": int((g.top3_clusters_on_annotation > 0).sum()),
                                 "top3_clusters_on_annotation": int(g.top3_clusters_on_annotation.sum())})
    result = {"config": asdict(ec), "summary": summary, "metadata": meta, "real_scans": real,
              "pipeline": pipe_summary, "pipeline_scans": pipe,
              "by_group": groups.to_dict(orient="records"), "files": rows,
              "seconds": time.perf_counter() - t0}
    (output_dir / "calibration_eval.json").write_text(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    misses = df[~df.within_tol][["seed", "font", "label", "text_height_px", "position", "polarity", "jpeg",
                                 "read_label", "rel_error", "notes"]]
    md = [
        f"# eval_calibration: {ec.n_files} generated files (seeds {ec.seed}..{ec.seed + ec.n_files - 1}), "
        f"{len(_real_bases(ec.data_root))} real dev bases",
        "",
        "## Pixel size from the scale bar and annotation detection",
        "",
        markdown_table([{k: v for k, v in summary.items()}], floatfmt=".3f"),
        "",
        "## By group (within_tol = share of files whose pixel size is within "
        f"{100 * ec.tolerance:g} %)",
        "",
        markdown_table(groups, floatfmt=".3f"),
        "",
        "## Metadata exactness per format",
        "",
        markdown_table(meta, floatfmt=".2e"),
        "",
        "## Real scans (no annotation on them: every detection is false)",
        "",
        markdown_table(real) if real else "(eval.data_root not set)",
        "",
        "## Whole runs: regions and top-3 clusters on the annotation",
        "",
        markdown_table(pipe_summary) if pipe_summary else "(eval.pipeline_files=0)",
        "",
        "## Files not within tolerance",
        "",
        markdown_table(misses, floatfmt=".4f") if len(misses) else "(none)",
        "",
    ]
    (output_dir / "calibration_eval.md").write_text("\n".join(md))
    log.info("eval_calibration: %s", summary)
    return 0
