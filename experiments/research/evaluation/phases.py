"""Phase segmentation and measurement against exact truth: ``python -m experiments.run +exp=eval_phases``.

Generated scans (:mod:`data.synthetic_phases`) with every generator parameter drawn per seed
(:func:`draw_coating`, :func:`draw_multiphase`) are segmented by
:func:`segmentation.phases.segment_phases` with ``eval.phases`` and measured by
:func:`data.standards.phases.measure_phases`.  Seeds: ``eval.seed + i`` (coating) and
``eval.seed + 500_000 + i`` (multiphase); the tuning seeds
(:data:`~experiments.research.evaluation.config.PHASES_TUNING_SEEDS`) are refused unless
``eval.tuning=true``.

Per scan: the phase area-fraction error (pp, over the sample: the mount excluded on both sides),
the porosity error (pp), the thickness mean error relative to the scan's exact mean, whether the
95 % interval of the thickness mean covers the layer's nominal (process) mean -- the quantity a
field-to-field interval estimates; the scan's own mean is known to the segmentation error, so an
interval "covering" it says nothing -- and pore object precision / recall / F1: true pores are the
connected components of the truth pore label, predicted pores the region table's pore
components; a pair matches one-to-one when IoU >= ``pore_iou``; recall counts true pores with an
equivalent diameter > ``pore_min_eq_diameter_px`` matched to a predicted pore of any size,
precision counts predicted pores above that size matched to a true pore of any size.

The real case (``eval.data_root`` set): the MLography scans with impurity labels as a two-phase
case ``[impurity, matrix]``; each setting of ``eval.real_settings`` (phases ``n``, method, CLAHE:
the darkest class is the impurity) gives a dark-phase fraction compared with the labelled impurity
fraction and, with ``real_pipeline``, the shipped U-Net's (:func:`segmentation.models.predict_impurity_mask`).
The setting with the smallest mean absolute error on the tuning scans is reported on the held-out
``real_eval_scans``.

Outputs in the run directory: ``phases_eval_scans.csv`` (one row per scan and phase),
``phases_eval_coating.csv`` (one row per coating scan), ``phases_eval_real.csv``,
``phases_eval_summary.json`` and ``phases_eval.md``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from experiments.config import dataclass_from
from .config import PHASES_TUNING_SEEDS, EvalPhasesConfig

__all__ = ["EvalPhasesConfig", "draw_coating", "draw_multiphase", "match_pores", "evaluate_coating",
           "evaluate_multiphase", "phases_config", "real_case", "run"]

log = logging.getLogger(__name__)

MULTIPHASE_OFFSET = 500_000


def _u(rng, rng_pair):
    lo, hi = (float(v) for v in rng_pair)
    return float(rng.uniform(lo, hi))


def draw_coating(seed: int, cfg: EvalPhasesConfig) -> dict:
    """Keyword arguments of :func:`data.synthetic_phases.coating_scan` drawn for ``seed``."""
    d = cfg.draws
    rng = np.random.default_rng([seed, 24])
    m = cfg.shape[0]
    amp = _u(rng, d["thickness_amp"])
    th = _u(rng, d["thickness_frac"]) * m
    th = min(th, 0.84 * m / (1 + amp))
    kw = dict(shape=cfg.shape, seed=int(seed), pixel_size_um=cfg.pixel_size_um, thickness_px=th,
              thickness_amp=amp, porosity=_u(rng, d["porosity"]),
              pore_median_px=_u(rng, d["pore_median_px"]), pore_sigma=_u(rng, d["pore_sigma"]),
              n_oxides=int(rng.integers(int(d["n_oxides"][0]), int(d["n_oxides"][1]) + 1)),
              gradient=_u(rng, d["gradient"]), noise_sd=_u(rng, d["noise_sd"]), blur_px=_u(rng, d["blur_px"]))
    jq = int(rng.integers(int(d["jpeg_quality"][0]), int(d["jpeg_quality"][1]) + 1))
    kw["jpeg_quality"] = jq if rng.uniform() < float(d["jpeg"]) else None
    return kw


def draw_multiphase(seed: int, cfg: EvalPhasesConfig) -> dict:
    """Keyword arguments of :func:`data.synthetic_phases.multiphase_scan` drawn for ``seed``."""
    d = cfg.draws
    rng = np.random.default_rng([seed, 25])
    kw = dict(shape=cfg.shape, seed=int(seed), pixel_size_um=cfg.pixel_size_um,
              n_phases=int(rng.integers(int(d["n_phases"][0]), int(d["n_phases"][1]) + 1)),
              blob_sigma_px=_u(rng, d["blob_sigma_px"]), gradient=_u(rng, d["gradient"]),
              noise_sd=_u(rng, d["noise_sd"]), blur_px=_u(rng, d["blur_px"]))
    jq = int(rng.integers(int(d["jpeg_quality"][0]), int(d["jpeg_quality"][1]) + 1))
    kw["jpeg_quality"] = jq if rng.uniform() < float(d["jpeg"]) else None
    return kw


def match_pores(pred: np.ndarray, truth: np.ndarray, *, min_eq_diameter_px: float, iou: float = 0.5) -> dict:
    """One-to-one IoU matching of predicted and true objects (int label images, 0 = none).

    Returns ``n_true, tp_true`` (true objects above the size, and those matched to a predicted object
    of any size), ``n_pred, tp_pred`` (the same for predicted objects), precision, recall, f1.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    nt, npd = int(truth.max()), int(pred.max())
    at = np.bincount(truth.ravel(), minlength=nt + 1)
    ap = np.bincount(pred.ravel(), minlength=npd + 1)
    both = (truth > 0) & (pred > 0)
    pairs, inter = np.unique(np.stack([truth[both], pred[both]]), axis=1, return_counts=True)
    matched_t = np.zeros(nt + 1, bool)
    matched_p = np.zeros(npd + 1, bool)
    if pairs.size:
        t_id, p_id = pairs
        j = inter / (at[t_id] + ap[p_id] - inter)
        for k in np.argsort(-j):
            if j[k] < iou:
                break
            if not matched_t[t_id[k]] and not matched_p[p_id[k]]:
                matched_t[t_id[k]] = matched_p[p_id[k]] = True
    min_area = np.pi / 4.0 * float(min_eq_diameter_px) ** 2
    big_t = at[1:] > min_area
    big_p = ap[1:] > min_area
    out = {"n_true": int(big_t.sum()), "tp_true": int((matched_t[1:] & big_t).sum()),
           "n_pred": int(big_p.sum()), "tp_pred": int((matched_p[1:] & big_p).sum())}
    out.update(_prf(out))
    return out


def _prf(c: dict) -> dict:
    r = c["tp_true"] / c["n_true"] if c["n_true"] else float("nan")
    p = c["tp_pred"] / c["n_pred"] if c["n_pred"] else float("nan")
    f = 2 * p * r / (p + r) if (p + r) > 0 else float("nan")
    return {"precision": p, "recall": r, "f1": f}


def phases_config(cfg: EvalPhasesConfig, kind: str, names) -> "PhasesConfig":  # noqa: F821
    """The :class:`segmentation.phases.PhasesConfig` of a ``kind`` ("coating" / "multiphase") scan."""
    from segmentation.phases import PhasesConfig

    extra = cfg.phases_coating if kind == "coating" else cfg.phases_multiphase
    return PhasesConfig(**{**dict(cfg.phases), **dict(extra), "names": tuple(names)})


def _segment_and_measure(t, cfg: EvalPhasesConfig, mcfg_extra: dict, kind: str):
    from data.standards.phases import PhaseMeasureConfig, measure_phases
    from segmentation.phases import segment_phases

    pcfg = phases_config(cfg, kind, t.names)
    mcfg = PhaseMeasureConfig(**{**dict(cfg.measure), **mcfg_extra})
    t0 = time.perf_counter()
    lab = segment_phases(t.image, pcfg, pixel_size_um=t.pixel_size_um)
    t1 = time.perf_counter()
    m = measure_phases(lab, names=t.names, pixel_size_um=t.pixel_size_um, cfg=mcfg, scan_id=str(t))
    t2 = time.perf_counter()
    return lab, m, t1 - t0, t2 - t1


def _phase_rows(kind: str, seed: int, t, m, secs) -> list[dict]:
    f = m.fractions.set_index("phase")
    rows = []
    for name in t.names:
        pred = float(f.loc[name, "area_fraction"])
        true = float(t.fractions[name])
        rows.append({"kind": kind, "seed": seed, "phase": name, "fraction_true": true, "fraction_pred": pred,
                     "error_pp": 100 * (pred - true), "ci_low": float(f.loc[name, "ci_low"]),
                     "ci_high": float(f.loc[name, "ci_high"]),
                     "point_count_fraction": float(f.loc[name, "point_count_fraction"]),
                     "seconds": secs})
    return rows


def evaluate_coating(seed: int, cfg: EvalPhasesConfig) -> tuple[list[dict], dict]:
    """Generate, segment and measure one coating scan; (phase rows, coating row)."""
    from scipy import ndimage as ndi

    from data.synthetic_phases import coating_scan

    kw = draw_coating(seed, cfg)
    t = coating_scan(**kw)
    lab, m, s_seg, s_meas = _segment_and_measure(t, cfg, {"coating": "coating", "substrate": "substrate"}, "coating")
    c = m.coating.iloc[0]
    truth_pores, _ = ndi.label(t.labels == 1)
    pores = match_pores(m.region_labels, truth_pores, min_eq_diameter_px=cfg.pore_min_eq_diameter_px,
                        iou=cfg.pore_iou)
    nominal = float(t.thickness_nominal_um)
    row = {"seed": seed, **{k: v for k, v in kw.items() if k not in ("shape", "seed", "pixel_size_um")},
           "porosity_true": t.porosity, "porosity_pred": float(c["porosity"]),
           "porosity_error_pp": 100 * (float(c["porosity"]) - t.porosity),
           "thickness_true_um": t.thickness_mean_um, "thickness_pred_um": float(c["thickness_mean_um"]),
           "thickness_rel_error": float(c["thickness_mean_um"]) / t.thickness_mean_um - 1,
           "thickness_nominal_um": nominal, "thickness_ci_low": float(c["thickness_ci_low"]),
           "thickness_ci_high": float(c["thickness_ci_high"]),
           "ci_covers_nominal": bool(c["thickness_ci_low"] <= nominal <= c["thickness_ci_high"]),
           "ci_covers_scan_mean": bool(c["thickness_ci_low"] <= t.thickness_mean_um <= c["thickness_ci_high"]),
           "mount_fraction_true": t.mount_fraction, "mount_fraction_pred": float(c["mount_fraction"]),
           **{f"pores_{k}": v for k, v in pores.items()},
           "seconds_segment": s_seg, "seconds_measure": s_meas, "seconds": s_seg + s_meas}
    return _phase_rows("coating", seed, t, m, s_seg + s_meas), row


def evaluate_multiphase(seed: int, cfg: EvalPhasesConfig) -> list[dict]:
    """Generate, segment and measure one multiphase scan; its phase rows."""
    from data.synthetic_phases import multiphase_scan

    kw = draw_multiphase(seed, cfg)
    t = multiphase_scan(**kw)
    _, m, s_seg, s_meas = _segment_and_measure(t, cfg, {"objects": ()}, "multiphase")
    rows = _phase_rows("multiphase", seed, t, m, s_seg + s_meas)
    for r in rows:
        r["n_phases"] = kw["n_phases"]
    return rows


# ------------------------------------------------------------------------------------------ real case
def _real_scans(root: Path) -> list[str]:
    ims = {p.stem for p in (root / "scans" / "images").glob("*")}
    masks = {p.stem for p in (root / "scans" / "impurity_masks").glob("*.png")}
    return sorted(ims & masks, key=lambda s: (len(s), s))


def _read_grey(path: Path) -> np.ndarray:
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if a is None:
        raise FileNotFoundError(f"cannot read {path}")
    return a


def real_case(cfg: EvalPhasesConfig) -> tuple[pd.DataFrame, dict]:
    """The MLography scans as a two-phase case: per scan and setting, the dark-phase fraction."""
    from segmentation.phases import PhasesConfig, segment_phases

    root = Path(cfg.data_root)
    scans = _real_scans(root)
    held = [s for s in cfg.real_eval_scans if s in scans]
    tune = list(cfg.real_tuning_scans) or [s for s in scans if s not in held and s not in ("10", "11")]
    rows = []
    for sid in tune + held:
        img_path = next((root / "scans" / "images").glob(f"{sid}.*"))
        img = _read_grey(img_path)
        lab_mask = _read_grey(root / "scans" / "impurity_masks" / f"{sid}.png") > 127
        base = {"scan": sid, "split": "eval" if sid in held else "tuning",
                "labelled_fraction": float(lab_mask.mean())}
        if cfg.real_pipeline:
            from segmentation.models import predict_impurity_mask

            t0 = time.perf_counter()
            base["pipeline_fraction"] = float(predict_impurity_mask(img).mean())
            base["seconds_pipeline"] = time.perf_counter() - t0
        for st in cfg.real_settings:
            st = dict(st)
            name = st.pop("name")
            n = int(st.pop("n", 2))
            names = ("impurity", "matrix") if n == 2 else tuple(["impurity"] + [f"matrix{k}" for k in range(1, n)])
            t0 = time.perf_counter()
            lab = segment_phases(img, PhasesConfig(names=names, **st))
            frac = float((lab == 1).mean())
            rows.append({**base, "setting": name, "dark_fraction": frac,
                         "error_vs_labelled_pp": 100 * (frac - base["labelled_fraction"]),
                         "error_vs_pipeline_pp": (100 * (frac - base["pipeline_fraction"])
                                                  if "pipeline_fraction" in base else float("nan")),
                         "seconds": time.perf_counter() - t0})
    df = pd.DataFrame(rows)
    if df.empty:
        return df, {}
    tune_df = df[df["split"] == "tuning"]
    by = (tune_df if len(tune_df) else df).groupby("setting")["error_vs_labelled_pp"].apply(lambda e: float(np.mean(np.abs(e))))
    best = str(by.idxmin())
    ev = df[(df["split"] == "eval") & (df["setting"] == best)]
    summ = {"tuning_scans": tune, "eval_scans": held, "tuning_mae_pp_by_setting": by.to_dict(),
            "chosen_setting": best,
            "eval_labelled_fraction_mean": float(ev["labelled_fraction"].mean()) if len(ev) else float("nan"),
            "eval_dark_fraction_mean": float(ev["dark_fraction"].mean()) if len(ev) else float("nan"),
            "eval_mae_vs_labelled_pp": float(ev["error_vs_labelled_pp"].abs().mean()) if len(ev) else float("nan"),
            "eval_mae_vs_pipeline_pp": float(ev["error_vs_pipeline_pp"].abs().mean()) if len(ev) else float("nan")}
    if "pipeline_fraction" in df:
        e = df[df["setting"] == best]
        summ["eval_pipeline_fraction_mean"] = float(e[e["split"] == "eval"]["pipeline_fraction"].mean())
    return df, summ


# ------------------------------------------------------------------------------------------ the task
def summarize(phase_rows: pd.DataFrame, coat: pd.DataFrame, cfg: EvalPhasesConfig) -> tuple[dict, list[dict]]:
    """Summary numbers and the target table."""
    t = cfg.targets
    s: dict = {"n_coating": int(len(coat)), "n_multiphase": int(phase_rows.loc[phase_rows["kind"] == "multiphase", "seed"].nunique())}
    lim = float(t["fraction_within_pp"])
    per_scan = phase_rows.groupby(["kind", "seed"])["error_pp"].apply(lambda e: float(np.max(np.abs(e))))
    s["share_scans_all_phases_within_1pp"] = float(np.mean(per_scan <= lim))
    s["share_phase_fractions_within_1pp"] = float(np.mean(np.abs(phase_rows["error_pp"]) <= lim))
    for kind in ("coating", "multiphase"):
        ps = per_scan[per_scan.index.get_level_values(0) == kind]
        if len(ps):
            s[f"share_{kind}_scans_within_1pp"] = float(np.mean(ps <= lim))
            s[f"max_abs_error_pp_{kind}"] = float(ps.max())
    s["mean_abs_error_pp_by_phase"] = {f"{k}/{p}": float(g.abs().mean()) for (k, p), g in
                                       phase_rows.groupby(["kind", "phase"])["error_pp"]}
    if len(coat):
        pe = coat["porosity_error_pp"].abs()
        s.update(porosity_mean_abs_error_pp=float(pe.mean()), porosity_max_abs_error_pp=float(pe.max()),
                 share_porosity_within_05pp=float(np.mean(pe <= t["porosity_pp"])))
        te = coat["thickness_rel_error"].abs()
        s.update(thickness_mean_abs_rel_error=float(te.mean()), thickness_max_abs_rel_error=float(te.max()),
                 share_thickness_within_2pct=float(np.mean(te <= t["thickness_rel"])),
                 thickness_ci_coverage_nominal=float(coat["ci_covers_nominal"].mean()),
                 thickness_ci_coverage_scan_mean=float(coat["ci_covers_scan_mean"].mean()),
                 thickness_ci_half_width_rel_mean=float(((coat["thickness_ci_high"] - coat["thickness_ci_low"]) / 2
                                                         / coat["thickness_nominal_um"]).mean()))
        tot = {k: int(coat[f"pores_{k}"].sum()) for k in ("n_true", "tp_true", "n_pred", "tp_pred")}
        s.update({f"pores_{k}": v for k, v in tot.items()})
        s.update({f"pores_{k}": v for k, v in _prf(tot).items()})
    s["seconds_per_scan_mean"] = float(phase_rows.groupby(["kind", "seed"])["seconds"].first().mean())
    targets = [{"measure": f"share of scans with every phase within {lim:g} pp", "value": s["share_scans_all_phases_within_1pp"],
                "target": f">= {t['fraction_share']:g}", "met": s["share_scans_all_phases_within_1pp"] >= t["fraction_share"]}]
    if len(coat):
        targets += [
            {"measure": "porosity: share within 0.5 pp", "value": s["share_porosity_within_05pp"],
             "target": ">= 0.95 (max |err| %.3g pp)" % s["porosity_max_abs_error_pp"],
             "met": s["share_porosity_within_05pp"] >= t["fraction_share"]},
            {"measure": "thickness mean: share within 2 %", "value": s["share_thickness_within_2pct"],
             "target": ">= 0.95", "met": s["share_thickness_within_2pct"] >= t["fraction_share"]},
            {"measure": "95% CI of the thickness mean covers the nominal mean", "value": s["thickness_ci_coverage_nominal"],
             "target": f"{t['coverage_low']:g}-{t['coverage_high']:g}",
             "met": t["coverage_low"] <= s["thickness_ci_coverage_nominal"] <= t["coverage_high"]},
            {"measure": f"pore object F1 (> {cfg.pore_min_eq_diameter_px:g} px eq. diameter, IoU >= {cfg.pore_iou:g})",
             "value": s["pores_f1"], "target": f">= {t['pore_f1']:g}", "met": bool(s["pores_f1"] >= t["pore_f1"])}]
    return s, targets


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_phases``."""
    from experiments._markdown import markdown_table

    ecfg = dataclass_from(EvalPhasesConfig, cfg.get("eval"), where="eval")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    phase_rows, coat_rows = [], []
    for i in range(ecfg.n_coating):
        pr, cr = evaluate_coating(ecfg.seed + i, ecfg)
        phase_rows += pr
        coat_rows.append(cr)
        log.info("coating seed %d: max |fraction err| %.2f pp, porosity %+.2f pp, thickness %+.2f %%, CI %s, pore F1 %.3f",
                 cr["seed"], max(abs(r["error_pp"]) for r in pr), cr["porosity_error_pp"],
                 100 * cr["thickness_rel_error"], "covers" if cr["ci_covers_nominal"] else "misses", cr["pores_f1"])
    for i in range(ecfg.n_multiphase):
        pr = evaluate_multiphase(ecfg.seed + MULTIPHASE_OFFSET + i, ecfg)
        phase_rows += pr
        log.info("multiphase seed %d (%d phases): max |fraction err| %.2f pp", pr[0]["seed"], pr[0]["n_phases"],
                 max(abs(r["error_pp"]) for r in pr))
    pdf, cdf = pd.DataFrame(phase_rows), pd.DataFrame(coat_rows)
    pdf.to_csv(out / "phases_eval_scans.csv", index=False)
    cdf.to_csv(out / "phases_eval_coating.csv", index=False)
    summary, targets = summarize(pdf, cdf, ecfg)
    real_df, real_summary = (real_case(ecfg) if ecfg.data_root else (pd.DataFrame(), {}))
    if len(real_df):
        real_df.to_csv(out / "phases_eval_real.csv", index=False)
    lo, hi = PHASES_TUNING_SEEDS
    seeds = (f"coating seeds {ecfg.seed}-{ecfg.seed + ecfg.n_coating - 1}, multiphase seeds "
             f"{ecfg.seed + MULTIPHASE_OFFSET}-{ecfg.seed + MULTIPHASE_OFFSET + ecfg.n_multiphase - 1}")
    result = {"config": asdict(ecfg), "tuning_seeds": [lo, hi], "tuning_run": ecfg.tuning, "seeds": seeds,
              "summary": summary, "targets": targets, "real": real_summary}
    (out / "phases_eval_summary.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    md = ["# Phases against exact truth (data.synthetic_phases)" + (" -- TUNING SEEDS" if ecfg.tuning else ""), "",
          f"{seeds} ({'tuning' if ecfg.tuning else 'never tuned on; tuning seeds'} {lo}-{hi}), "
          f"{ecfg.shape[0]}x{ecfg.shape[1]} px at {ecfg.pixel_size_um:g} µm/px; phases {dict(ecfg.phases)}, "
          f"coating scans + {dict(ecfg.phases_coating)}, multiphase + {dict(ecfg.phases_multiphase)}.", "",
          "Targets:", "", markdown_table(pd.DataFrame(targets)), "",
          "Summary:", "", markdown_table(pd.DataFrame([flat]).T.reset_index().set_axis(["measure", "value"], axis=1)), "",
          "Mean |area-fraction error| (pp) by phase:", "",
          markdown_table([{"phase": k, "mean_abs_error_pp": v} for k, v in summary["mean_abs_error_pp_by_phase"].items()]), ""]
    if real_summary:
        ev = real_df[(real_df["split"] == "eval") & (real_df["setting"] == real_summary["chosen_setting"])]
        md += ["Real MLography scans as two phases [impurity, matrix] (dark-phase fraction vs labelled impurity fraction):", "",
               markdown_table([{"setting": k, "tuning_mae_pp": v} for k, v in real_summary["tuning_mae_pp_by_setting"].items()]), "",
               f"Chosen on the tuning scans: `{real_summary['chosen_setting']}`; on the held-out scans "
               f"{real_summary['eval_scans']}:", "",
               markdown_table(ev.drop(columns=["split", "setting"])), ""]
    (out / "phases_eval.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))

    return 0
