"""Evaluation ``eval_review``: does learning from 20 verdicts put the right clusters first?

Synthetic archives (:func:`data.synthetic.make_review_scan`): every scan has the
planted true anomalies (cluster, stringer, giant) and, in the ``false_alarms``
scenarios, planted false alarms (polishing scratch, edge chip, coalesced pores)
that the unsupervised scores flag as well.  Each archive is built with the
library calls of the pipeline stage (``data.regions_from_labels``,
``anomaly.score_regions``, ``anomaly.market_clustering``,
``anomaly.reasons.cluster_features``, ``anomaly.rank_clusters``) and the run's
``anomaly`` configuration.

A simulated expert reviews the top ``n_reviewed`` clusters of the unsupervised
order and confirms a cluster iff it holds an impurity of a planted true anomaly
(everything else, false alarms and ordinary impurities, is dismissed).  The
re-ranker (:func:`anomaly.rerank.train_reranker`) is trained on those verdicts
only and orders the clusters nobody reviewed; ``precision@k`` is the share of
true clusters among the first ``k`` *unreviewed* clusters, for the learned order
and for the unsupervised one (ranks ``n_reviewed + 1 ..``), per archive seed.

Scenarios (``eval.scenarios``): with false alarms the verdicts contradict the
unsupervised order (target: the learned order gains >= ``target_gain``); without
them the verdicts agree with it (target: it loses at most ``max_loss``).  The
re-ranker's options are fixed beforehand (``anomaly.rerank.RerankConfig``
defaults, chosen on archive seeds outside ``eval.seeds``); nothing is tuned on the
evaluated archives.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly import market_clustering, rank_clusters, score_regions
from anomaly.market import MarketConfig
from anomaly.reasons import cluster_features
from anomaly.rerank import RerankConfig, apply_reranker, train_reranker
from anomaly.scorers import ScoreContext
from anomaly.scoring import configured_scorers
from data import regions_from_labels
from data.synthetic import SyntheticConfig, make_review_scan, truth_for_labels

from experiments._markdown import markdown_table
from experiments.config import dataclass_from
from .config import EvalReviewConfig

__all__ = ["EvalReviewConfig", "build_archive", "simulate_review", "run"]

log = logging.getLogger(__name__)


def _pixel_options(options: dict | None) -> dict:
    """Options for uncalibrated scans: physical twins (``*_um``, ``*_um2``) do not apply (dropped)."""
    return {k: v for k, v in dict(options or {}).items() if not str(k).endswith(("_um", "_um2"))}


def build_archive(
    seed: int,
    *,
    n_scans: int,
    shape: tuple[int, int],
    n_impurities: int,
    false_alarms: tuple[str, ...],
    scorers: dict,
    combine_inputs: tuple[str, ...],
    combine_method: str,
    markets: dict[str, MarketConfig],
) -> dict[str, pd.DataFrame]:
    """Ranked clusters (with features and ``is_true``) of one synthetic archive, per market variant."""
    scfg = SyntheticConfig(shape=tuple(shape), n_impurities=n_impurities)
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in markets}
    for i in range(n_scans):
        scan_seed = seed * 1000 + i
        synth = make_review_scan(scfg, false_alarms=false_alarms, seed=scan_seed)
        labels = synth.impurity_labels
        table = regions_from_labels(labels)
        table = score_regions(
            table,
            scorers=scorers,
            combine_inputs=combine_inputs,
            combine_method=combine_method,
            context=ScoreContext(labels=labels),
        )
        truth = truth_for_labels(labels, synth)
        for name, mc in markets.items():
            lab, clusters = market_clustering(table, table["combined_score"].to_numpy(), mc)
            reg = table.assign(cluster_id=lab)
            feats = cluster_features(reg, clusters, pixel_size_um=None, shape=labels.shape)
            clusters = pd.concat([clusters, feats.drop(columns="cluster_id")], axis=1)
            t = truth.set_index("region_id")
            member = reg["cluster_id"].to_numpy()
            is_true = t.loc[reg["region_id"], "is_anomaly"].to_numpy()
            fa = (
                (t.loc[reg["region_id"], "false_alarm_kind"].to_numpy() != "")
                if "false_alarm_kind" in t
                else np.zeros(len(reg), bool)
            )
            inside = member >= 0
            true_c = (
                np.bincount(
                    member[inside], weights=is_true[inside].astype(float), minlength=len(clusters)
                )
                > 0
            )
            fa_c = (
                np.bincount(
                    member[inside], weights=fa[inside].astype(float), minlength=len(clusters)
                )
                > 0
            )
            clusters["is_true"] = true_c[clusters["cluster_id"].to_numpy()]
            clusters["is_false_alarm"] = (
                fa_c[clusters["cluster_id"].to_numpy()] & ~clusters["is_true"]
            )
            kind = t.loc[reg["region_id"], "anomaly_kind"].to_numpy().astype(object)
            if "false_alarm_kind" in t:
                fk = t.loc[reg["region_id"], "false_alarm_kind"].to_numpy().astype(object)
                kind = np.where(fk != "", "fa:" + fk.astype(str), kind)
            kinds = (
                pd.Series(kind[inside])
                .groupby(member[inside])
                .agg(lambda k: "+".join(sorted(set(k) - {""})))
            )
            clusters["planted"] = (
                kinds.reindex(clusters["cluster_id"].to_numpy()).fillna("").to_numpy()
            )
            parts[name].append(clusters.assign(scan_id=f"s{scan_seed}"))
    return {
        name: rank_clusters(pd.concat(p, ignore_index=True), key=markets[name].order_key)
        for name, p in parts.items()
    }


def simulate_review(ranked: pd.DataFrame, *, n_reviewed: int, k: int, rerank: RerankConfig) -> dict:
    """The expert reviews the top ``n_reviewed``; precision@k of the unreviewed, both orders."""
    ranked = ranked.sort_values("rank").reset_index(drop=True)
    reviewed = ranked.iloc[:n_reviewed]
    rest = ranked.iloc[n_reviewed:]
    verdicts = np.where(reviewed["is_true"], "confirmed", "dismissed")
    out = {
        "clusters": len(ranked),
        "true_clusters": int(ranked["is_true"].sum()),
        "false_alarm_clusters": int(ranked["is_false_alarm"].sum()),
        "confirmed_of_reviewed": int((verdicts == "confirmed").sum()),
        "unreviewed": len(rest),
    }
    if len(rest) < k:
        out.update(p_unsupervised=np.nan, p_learned=np.nan, gain=np.nan, fallback=None)
        return out
    model = train_reranker(reviewed, pd.Series(verdicts), cfg=rerank)
    learned = apply_reranker(rest, model).sort_values("learned_rank")
    p_u = float(rest["is_true"].iloc[:k].mean())
    p_l = float(learned["is_true"].iloc[:k].mean())
    out.update(p_unsupervised=p_u, p_learned=p_l, gain=p_l - p_u, fallback=bool(model.fallback))
    return out


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_review``."""
    ec = dataclass_from(
        EvalReviewConfig, OmegaConf.to_container(cfg.get("eval", {}), resolve=True), where="eval"
    )
    anomaly_cfg = OmegaConf.to_container(cfg.anomaly, resolve=True)
    scorers = {
        name: _pixel_options(opts)
        for name, opts in configured_scorers(
            {**dict(anomaly_cfg.get("scorers") or {}), **dict(ec.scorers or {})}
        ).items()
    }
    combine = dict(anomaly_cfg.get("combine") or {})
    inputs = tuple(combine.get("inputs", ["spatial", "circle"]))
    method = str(combine.get("method", "product"))
    base_market = dataclass_from(
        MarketConfig, _pixel_options(anomaly_cfg.get("area")), where="anomaly.area"
    )
    rerank = dataclass_from(RerankConfig, ec.rerank, where="eval.rerank")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    # scenarios sharing the planted objects share the scans (one archive, several markets)
    groups: dict[tuple, dict[str, MarketConfig]] = {}
    for sc in ec.scenarios:
        key = (tuple(sc.get("false_alarms") or ()), int(sc.get("n_scans") or ec.n_scans))
        groups.setdefault(key, {})[sc["name"]] = replace(
            base_market, **dict(sc.get("market") or {})
        )
    rows = []
    t0 = time.perf_counter()
    for seed in ec.seeds:
        for (fa, n_scans), markets in groups.items():
            archives = build_archive(
                seed,
                n_scans=n_scans,
                shape=tuple(ec.shape),
                n_impurities=ec.n_impurities,
                false_alarms=fa,
                scorers=scorers,
                combine_inputs=inputs,
                combine_method=method,
                markets=markets,
            )
            for name, ranked in archives.items():
                r = {
                    "scenario": name,
                    "seed": seed,
                    **simulate_review(
                        ranked, n_reviewed=ec.n_reviewed, k=ec.precision_at, rerank=rerank
                    ),
                }
                log.info("%s", r)
                rows.append(r)
    per_seed = pd.DataFrame(rows)
    kinds = {sc["name"]: sc for sc in ec.scenarios}
    summary = []
    ok_all = True
    for name, g in per_seed.groupby("scenario", sort=False):
        sc = kinds[name]
        expect = str(sc.get("expect", "gain"))
        gain = float(g["gain"].mean())
        if expect == "gain":
            target = f">= +{ec.target_gain:g}"
            ok = gain >= ec.target_gain
        else:
            target = f">= -{ec.max_loss:g} (every seed)"
            ok = bool((g["gain"] >= -ec.max_loss).all())
        ok_all &= ok
        summary.append(
            {
                "scenario": name,
                "false alarms": ", ".join(sc.get("false_alarms") or []) or "none",
                "market": json.dumps(sc.get("market") or {}, sort_keys=True)
                if sc.get("market")
                else "run config",
                "scans": int(sc.get("n_scans") or ec.n_scans),
                "seeds": len(g),
                "clusters (mean)": float(g["clusters"].mean()),
                "true / false-alarm clusters (mean)": f"{g['true_clusters'].mean():.1f} / {g['false_alarm_clusters'].mean():.1f}",
                "confirmed of the 20 reviewed (mean)": float(g["confirmed_of_reviewed"].mean()),
                f"P@{ec.precision_at} unsupervised": float(g["p_unsupervised"].mean()),
                f"P@{ec.precision_at} learned": float(g["p_learned"].mean()),
                "gain (mean)": gain,
                "gain (min)": float(g["gain"].min()),
                "target": target,
                "met": "yes" if ok else "NO",
            }
        )
    elapsed = time.perf_counter() - t0
    header = (
        f"eval_review: {len(ec.seeds)} archive seeds x {ec.n_scans} synthetic scans {tuple(ec.shape)}, "
        f"scorers {sorted(scorers)}, combined = {method}({', '.join(inputs)}); the expert reviews the top "
        f"{ec.n_reviewed} clusters, precision@{ec.precision_at} of the unreviewed ones; re-ranker "
        f"C={rerank.C}, class_weight={rerank.class_weight}; {elapsed:.0f} s"
    )
    md = (
        header
        + "\n\n"
        + markdown_table(pd.DataFrame(summary), floatfmt=".3f")
        + "\n\nPer seed:\n\n"
        + markdown_table(per_seed, floatfmt=".3f")
    )
    (output_dir / "metrics.md").write_text(md + "\n")
    (output_dir / "metrics.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "per_seed": rows,
                "config": OmegaConf.to_container(cfg.get("eval", {}), resolve=True),
            },
            indent=2,
            default=str,
        )
    )
    per_seed.to_csv(output_dir / "per_seed.csv", index=False)
    log.info("\n%s", md)
    return 0 if ok_all or not ec.fail_on_target else 1
