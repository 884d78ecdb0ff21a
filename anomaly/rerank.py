r"""Re-ranking clusters from expert verdicts (issue #15).

The unsupervised order (:mod:`anomaly.rank`) flags what is *unusual*; an expert
confirms what is *relevant* and dismisses the rest (preparation artefacts, pores,
edge chips...).  A small supervised model learns that difference from the
verdicts of one or more runs and re-orders the clusters nobody has reviewed yet.

Model
-----
Logistic regression (scikit-learn, L2, ``class_weight="balanced"``) on
standardised features: the 15 ordering keys of :func:`anomaly.market.cluster_measures`,
``n_regions`` and the pixel-unit columns of :func:`anomaly.reasons.cluster_features`
(:data:`CANDIDATE_FEATURES`; the ``*_um`` twins are left out so that runs with and
without a pixel size train one model).  Positive heavy-tailed features (the keys,
areas, lengths, elongations) enter as ``log(x)``, the edge distance as
``log(1 + x)``, scores and fractions as they are.  A feature that is not finite in
every training row (``member_shape_*`` without the autoencoder) is left out; the
model card lists the features used.  At apply time a missing or non-finite
feature takes the training mean (its standardised value 0) and is logged.

No extrapolation: a few verdicts cover a small part of the feature space, and a
linear model extrapolated far outside it says more about chance correlations than
about the expert.  So each standardised feature is clipped to the range seen in
training before the logistic model, and a cluster *unlike* every reviewed one is
pulled towards the base rate of confirmations ``b`` (share of confirmed verdicts):

.. math:: p = w \, \sigma(\beta \cdot \mathrm{clip}(z)) + (1 - w) \, b, \qquad
          w = \exp(-(d / \tau)^2)

with ``d`` the Euclidean norm of how far ``z`` lies outside the training range
(0 inside it) and ``tau`` = :attr:`RerankConfig.novelty_scale` (``None`` = plain
logistic regression, no clipping).  A kind of false alarm that the expert has not
seen yet is then neither promoted nor buried on the strength of one unrelated
coefficient; it stays at the base rate until verdicts on it arrive.

With verdicts of one class only (all confirmed, or all dismissed), or fewer than
:attr:`RerankConfig.min_per_class` (2) of either class, nothing is learned: the model
keeps the unsupervised order (``learned_score`` is then the cluster's ``norm_score``;
the card says so).

Files
-----
A model is one JSON file (feature names, transforms, means, scales,
coefficients, intercept: plain numbers, safe to load; never pickle) and a model
card beside it (``<name>.card.json``: training runs, verdict counts, options,
leave-one-out accuracy, library versions, date).  :func:`load_reranker` reads
only JSON and validates every field.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .market import ORDER_KEYS
from .reasons import FEATURE_COLUMNS

__all__ = [
    "CANDIDATE_FEATURES",
    "VERDICTS",
    "RerankConfig",
    "RerankModel",
    "apply_reranker",
    "card_path",
    "load_reranker",
    "train_reranker",
]

log = logging.getLogger(__name__)

#: Values of a verdict (None = not reviewed).
VERDICTS: tuple[str, ...] = ("confirmed", "dismissed")
#: Features the model may use, in order.
CANDIDATE_FEATURES: tuple[str, ...] = (
    *ORDER_KEYS,
    "n_regions",
    *(c for c in FEATURE_COLUMNS if not (c.endswith("_um") or c.endswith("_um2"))),
)
_FORMAT = "quantmet-rerank-logistic"
_VERSION = 1
_TRANSFORMS = ("identity", "log", "log1p")


def _transform_of(name: str) -> str:
    if name == "edge_distance_px":
        return "log1p"
    if (
        name in ("median", "mean")
        or name.startswith("member_")
        and name.split("_")[1] in ("spatial", "circle", "shape", "combined", "solidity")
    ):
        return "identity"
    if name == "box_fill":
        return "identity"
    return "log"


def _apply_transform(x: np.ndarray, how: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if how == "log":
            return np.log(np.where(x > 0, x, np.nan))
        if how == "log1p":
            return np.log1p(np.where(x >= 0, x, np.nan))
    return x


def card_path(model_path: str | Path) -> Path:
    """The model card beside a model file: ``rerank.json`` -> ``rerank.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


@dataclass(frozen=True)
class RerankConfig:
    """Options of :func:`train_reranker`.

    C : float
        Inverse L2 regularisation strength of the logistic regression (small = smoother;
        few verdicts want a strong prior).
    class_weight : {'balanced', None}
        ``'balanced'`` weighs confirmed and dismissed clusters equally whatever their counts.
    novelty_scale : float or None
        ``tau`` of the pull towards the base rate for clusters outside the training range
        (module docstring); ``None`` = plain logistic regression (no clipping, no pull).
    min_per_class : int
        Verdicts of each class (confirmed, dismissed) needed before anything is learned; with
        fewer the unsupervised order is kept. One dismissed cluster among 19 confirmed ones does
        not say what the expert dismisses, but with balanced class weights it alone would weigh
        as much as all the confirmations.
    """

    C: float = 1.0
    class_weight: str | None = "balanced"
    novelty_scale: float | None = 1.0
    min_per_class: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.C, (int, float)) and math.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a positive finite number, got {self.C!r}")
        t = self.novelty_scale
        if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(f"novelty_scale must be a positive finite number or None, got {t!r}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if not (isinstance(self.min_per_class, int) and not isinstance(self.min_per_class, bool)
                and self.min_per_class >= 1):
            raise ValueError(f"min_per_class must be an integer >= 1, got {self.min_per_class!r}")


@dataclass(frozen=True)
class RerankModel:
    """A trained re-ranker: a logistic model on transformed, standardised features."""

    features: tuple[str, ...]
    transforms: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    fallback: bool = False  # True: one verdict class only, the unsupervised order is kept
    z_min: tuple[float, ...] | None = None  # training range of the standardised features
    z_max: tuple[float, ...] | None = None
    novelty_scale: float | None = None
    base_rate: float = 0.5
    card: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.features)
        for name in ("transforms", "mean", "scale", "coef"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"model field {name!r} has {len(getattr(self, name))} values for {n} features"
                )
        bad = [t for t in self.transforms if t not in _TRANSFORMS]
        if bad:
            raise ValueError(f"unknown feature transforms {bad}; known: {_TRANSFORMS}")
        nums = [*self.mean, *self.scale, *self.coef, self.intercept]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums):
            raise ValueError("model numbers must be finite")
        if any(s <= 0 for s in self.scale):
            raise ValueError("model scales must be positive")
        for name in ("z_min", "z_max"):
            v = getattr(self, name)
            if v is not None and (
                len(v) != n or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            ):
                raise ValueError(f"model field {name!r} must hold {n} finite numbers")
        if (self.z_min is None) != (self.z_max is None):
            raise ValueError("z_min and z_max go together")
        t = self.novelty_scale
        if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError("novelty_scale must be positive")
        if not (isinstance(self.base_rate, (int, float)) and 0.0 <= self.base_rate <= 1.0):
            raise ValueError("base_rate must be in [0, 1]")

    # ------------------------------------------------------------------ use
    def design(self, clusters: pd.DataFrame) -> np.ndarray:
        """Standardised feature matrix ``(n, n_features)``; missing values -> 0 (the training mean)."""
        n = len(clusters)
        z = np.zeros((n, len(self.features)))
        filled = []
        for j, (name, how) in enumerate(zip(self.features, self.transforms)):
            if name not in clusters.columns:
                filled.append(name)
                continue
            x = _apply_transform(
                pd.to_numeric(clusters[name], errors="coerce").to_numpy(np.float64), how
            )
            col = (x - self.mean[j]) / self.scale[j]
            bad = ~np.isfinite(col)
            if bad.any():
                filled.append(name)
                col[bad] = 0.0
            z[:, j] = col
        if filled:
            log.warning(
                "re-ranker: feature(s) %s missing or not finite in some clusters; "
                "they take the training mean",
                sorted(set(filled)),
            )
        return z

    def predict(self, clusters: pd.DataFrame) -> np.ndarray:
        """Probability that the expert confirms each cluster, shape ``(n,)``."""
        if self.fallback:
            if "norm_score" in clusters.columns:
                return (
                    pd.to_numeric(clusters["norm_score"], errors="coerce")
                    .fillna(0.0)
                    .to_numpy(np.float64)
                )
            return np.zeros(len(clusters))
        z = self.design(clusters)
        if self.z_min is None:
            t = z @ np.asarray(self.coef) + self.intercept
            return 1.0 / (1.0 + np.exp(-np.clip(t, -500, 500)))
        lo, hi = np.asarray(self.z_min), np.asarray(self.z_max)
        zc = np.clip(z, lo, hi)
        t = zc @ np.asarray(self.coef) + self.intercept
        p = 1.0 / (1.0 + np.exp(-np.clip(t, -500, 500)))
        if self.novelty_scale is None:
            return p
        d = np.linalg.norm(z - zc, axis=1)
        w = np.exp(-((d / self.novelty_scale) ** 2))
        return w * p + (1.0 - w) * self.base_rate

    def novelty(self, clusters: pd.DataFrame) -> np.ndarray:
        """How far each cluster lies outside the training range (0 = inside), shape ``(n,)``."""
        if self.z_min is None:
            return np.zeros(len(clusters))
        z = self.design(clusters)
        return np.linalg.norm(
            z - np.clip(z, np.asarray(self.z_min), np.asarray(self.z_max)), axis=1
        )

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "fallback": bool(self.fallback),
            "features": list(self.features),
            "transforms": list(self.transforms),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "z_min": None if self.z_min is None else [float(v) for v in self.z_min],
            "z_max": None if self.z_max is None else [float(v) for v in self.z_max],
            "novelty_scale": None if self.novelty_scale is None else float(self.novelty_scale),
            "base_rate": float(self.base_rate),
        }

    def save(self, path: str | Path) -> Path:
        """Write the model JSON and its card (:func:`card_path`); returns the model path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        for target, obj in ((p, self.to_json()), (card_path(p), self.card)):
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            tmp.replace(target)
        return p


def load_reranker(path: str | Path) -> RerankModel:
    """Read a model written by :meth:`RerankModel.save` (JSON only; every field validated).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a quantmet re-ranker JSON file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"re-ranker model not found: {p}")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not a re-ranker model (not JSON: {exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(
            f"{p} is not a quantmet re-ranker model (format {obj.get('format') if isinstance(obj, dict) else None!r})"
        )
    if obj.get("version") != _VERSION:
        raise ValueError(
            f"{p}: unsupported re-ranker version {obj.get('version')!r} (expected {_VERSION})"
        )
    try:
        feats = tuple(str(f) for f in obj["features"])
        unknown = [f for f in feats if f not in CANDIDATE_FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}")
        card = {}
        cp = card_path(p)
        if cp.is_file():
            try:
                card = json.loads(cp.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("model card %s is not JSON; ignored", cp)
        return RerankModel(
            features=feats,
            transforms=tuple(str(t) for t in obj["transforms"]),
            mean=tuple(float(v) for v in obj["mean"]),
            scale=tuple(float(v) for v in obj["scale"]),
            coef=tuple(float(v) for v in obj["coef"]),
            intercept=float(obj["intercept"]),
            fallback=bool(obj.get("fallback", False)),
            z_min=None if obj.get("z_min") is None else tuple(float(v) for v in obj["z_min"]),
            z_max=None if obj.get("z_max") is None else tuple(float(v) for v in obj["z_max"]),
            novelty_scale=None if obj.get("novelty_scale") is None else float(obj["novelty_scale"]),
            base_rate=float(obj.get("base_rate", 0.5)),
            card=card if isinstance(card, dict) else {},
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{p}: malformed re-ranker model ({exc!r})") from None


def _verdict_labels(verdicts: pd.Series) -> np.ndarray:
    v = verdicts.astype(object)
    bad = sorted({str(x) for x in v if x not in VERDICTS})
    if bad:
        raise ValueError(f"verdicts must be one of {VERDICTS} for training, got {bad}")
    return (v == "confirmed").to_numpy(dtype=np.int64)


def train_reranker(
    clusters: pd.DataFrame,
    verdicts: pd.Series | None = None,
    *,
    cfg: RerankConfig | None = None,
    sources: list[str] | None = None,
    evaluate: bool = False,
) -> RerankModel:
    """Fit the re-ranker on reviewed clusters.

    Parameters
    ----------
    clusters : DataFrame, shape (n, ...)
        Reviewed clusters with the :data:`CANDIDATE_FEATURES` they have (at least one).
    verdicts : Series of {'confirmed', 'dismissed'}, optional
        One verdict per row (aligned by position); default: the ``verdict`` column.
    cfg : RerankConfig, optional
    sources : list of str, optional
        Where the verdicts come from (run dirs), for the model card.
    evaluate : bool
        Also measure the leave-one-out accuracy for the card (one more fit per verdict).

    Returns
    -------
    RerankModel
        ``fallback=True`` when the verdicts have one class only.

    Examples
    --------
    >>> c = pd.DataFrame({"n_regions": [1, 2, 8, 9], "member_circle_mean": [0.1, 0.2, 0.8, 0.9],
    ...                   "verdict": ["dismissed", "dismissed", "confirmed", "confirmed"]})
    >>> m = train_reranker(c)
    >>> m.features
    ('n_regions', 'member_circle_mean')
    >>> bool(m.predict(c)[3] > 0.5 > m.predict(c)[0])
    True
    """
    import sklearn  # lazy: scikit-learn only to train
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn only to train

    cfg = cfg or RerankConfig()
    if not isinstance(clusters, pd.DataFrame):
        raise ValueError(f"clusters must be a pandas DataFrame, got {type(clusters).__name__}")
    if verdicts is None:
        if "verdict" not in clusters.columns:
            raise ValueError("clusters lacks a 'verdict' column (or pass verdicts)")
        verdicts = clusters["verdict"]
    verdicts = pd.Series(np.asarray(verdicts, dtype=object))
    if len(verdicts) != len(clusters):
        raise ValueError(f"{len(verdicts)} verdicts for {len(clusters)} clusters")
    if len(clusters) == 0:
        raise ValueError("no reviewed clusters to train on")
    y = _verdict_labels(verdicts)
    feats, trans, cols = [], [], []
    for name in CANDIDATE_FEATURES:
        if name not in clusters.columns:
            continue
        how = _transform_of(name)
        x = _apply_transform(
            pd.to_numeric(clusters[name], errors="coerce").to_numpy(np.float64), how
        )
        if np.all(np.isfinite(x)):
            feats.append(name)
            trans.append(how)
            cols.append(x)
    if not feats:
        raise ValueError(
            f"clusters have none of the re-ranker features {CANDIDATE_FEATURES} (finite in every row)"
        )
    x = np.column_stack(cols)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    card = {
        "model": "logistic regression on standardised features (anomaly.rerank)",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": list(sources or []),
        "n_verdicts": int(len(y)),
        "n_confirmed": n_pos,
        "n_dismissed": n_neg,
        "options": {
            "C": cfg.C,
            "class_weight": cfg.class_weight,
            "novelty_scale": cfg.novelty_scale,
            "min_per_class": cfg.min_per_class,
        },
        "features": feats,
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "safe_format": "JSON numbers only; load with anomaly.rerank.load_reranker",
    }
    if min(n_pos, n_neg) < cfg.min_per_class:
        card["fallback"] = (
            "verdicts of one class only: nothing to learn, the unsupervised order "
            "(norm_score) is kept" if min(n_pos, n_neg) == 0 else
            f"{n_pos} confirmed and {n_neg} dismissed: fewer than {cfg.min_per_class} of a "
            "class, the unsupervised order (norm_score) is kept"
        )
        return RerankModel(
            tuple(feats),
            tuple(trans),
            tuple(mean),
            tuple(scale),
            tuple(0.0 for _ in feats),
            0.0,
            fallback=True,
            card=card,
        )

    def fit(zz, yy):
        return LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=2000).fit(zz, yy)

    clf = fit(z, y)
    # leave-one-out accuracy for the card (how well the verdicts explain each other)
    if evaluate and len(y) <= 2000:
        hits = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            if len(set(y[keep].tolist())) < 2:
                continue
            hits.append(int(fit(z[keep], y[keep]).predict(z[i : i + 1])[0] == y[i]))
        card["leave_one_out_accuracy"] = float(np.mean(hits)) if hits else None
    weights = sorted(zip(feats, clf.coef_[0].tolist()), key=lambda t: -abs(t[1]))
    card["largest_weights"] = [{"feature": f, "weight": round(w, 4)} for f, w in weights[:8]]
    card["base_rate"] = n_pos / len(y)
    bounded = cfg.novelty_scale is not None
    return RerankModel(
        tuple(feats),
        tuple(trans),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in clf.coef_[0]),
        float(clf.intercept_[0]),
        z_min=tuple(float(v) for v in z.min(axis=0)) if bounded else None,
        z_max=tuple(float(v) for v in z.max(axis=0)) if bounded else None,
        novelty_scale=cfg.novelty_scale,
        base_rate=n_pos / len(y),
        card=card,
    )


def apply_reranker(clusters: pd.DataFrame, model_path: str | Path | RerankModel) -> pd.DataFrame:
    """Add ``learned_score`` and ``learned_rank`` to a clusters table.

    Parameters
    ----------
    clusters : DataFrame
        A run's clusters (after :func:`anomaly.rank.rank_clusters`) with the model's features.
    model_path : path or RerankModel
        A model file written by :meth:`RerankModel.save` (or a loaded model).

    Returns
    -------
    DataFrame
        A copy with ``learned_score`` (float64 in [0, 1]: the probability that the expert
        confirms the cluster) and ``learned_rank`` (int64, 1 = highest ``learned_score``; ties
        by ``rank`` when present, then ``scan_id`` and ``cluster_id``), in the input's row order.
    """
    model = model_path if isinstance(model_path, RerankModel) else load_reranker(model_path)
    if not isinstance(clusters, pd.DataFrame):
        raise ValueError(f"clusters must be a pandas DataFrame, got {type(clusters).__name__}")
    out = clusters.copy()
    p = model.predict(out) if len(out) else np.zeros(0)
    out["learned_score"] = np.asarray(p, dtype=np.float64)
    keys = [-out["learned_score"].to_numpy()]
    for c in ("rank", "scan_id", "cluster_id"):
        if c in out.columns:
            v = out[c].to_numpy()
            keys.append(
                np.unique(v.astype(str), return_inverse=True)[1] if v.dtype == object else v
            )
    order = np.lexsort(tuple(reversed(keys))) if len(out) else np.zeros(0, np.int64)
    lr = np.empty(len(out), np.int64)
    lr[order] = np.arange(1, len(out) + 1)
    out["learned_rank"] = lr
    return out
