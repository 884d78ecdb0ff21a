"""The re-ranker (anomaly.rerank): learns verdicts, safe files, no wild extrapolation."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pytest

from anomaly import rerank as rerank_mod
from anomaly.market import ORDER_KEYS
from anomaly.rerank import (
    CANDIDATE_FEATURES,
    RerankConfig,
    apply_reranker,
    card_path,
    load_reranker,
    train_reranker,
)


def clusters(n=60, seed=0):
    """Clusters whose expert verdict depends on elongation only (scores are misleading)."""
    rng = np.random.default_rng(seed)
    elong = rng.uniform(1, 20, n)
    df = pd.DataFrame({k: rng.lognormal(10, 2, n) for k in ORDER_KEYS})
    df["n_regions"] = rng.integers(1, 10, n)
    df["member_elongation_max"] = elong
    df["member_circle_mean"] = rng.uniform(0, 1, n)
    df["edge_distance_px"] = rng.uniform(5, 300, n)
    df["scan_id"] = [f"s{i % 4}" for i in range(n)]
    df["cluster_id"] = np.arange(n) // 4
    df["rank"] = np.arange(1, n + 1)
    df["norm_score"] = np.linspace(1, 0.01, n)
    df["truth"] = elong < 8  # long thin things are scratches: dismissed
    return df


def test_learns_the_verdicts_and_ranks_the_rest():
    df = clusters()
    train, rest = df.iloc[:20], df.iloc[20:]
    model = train_reranker(train, np.where(train["truth"], "confirmed", "dismissed"))
    assert not model.fallback
    assert set(model.features) <= set(CANDIDATE_FEATURES)
    assert "member_elongation_max" in model.features and "scan_id" not in model.features
    assert model.card["largest_weights"][0]["feature"] == "member_elongation_max"
    out = apply_reranker(rest, model)
    assert out.index.equals(rest.index) and out["learned_score"].between(0, 1).all()
    assert sorted(out["learned_rank"]) == list(range(1, len(rest) + 1))
    # precision of the top 10 of the unreviewed, over archives: far above the base rate (~0.37)
    p10 = []
    for seed in range(10):
        d = clusters(seed=seed)
        t, r = d.iloc[:20], d.iloc[20:]
        m = train_reranker(t, np.where(t["truth"], "confirmed", "dismissed"))
        p10.append(apply_reranker(r, m).sort_values("learned_rank").head(10)["truth"].mean())
    assert np.mean(p10) >= 0.65 and np.mean(p10) > d["truth"].mean() + 0.25


def test_save_load_roundtrip_json_only(tmp_path):
    df = clusters()
    model = train_reranker(
        df.iloc[:20],
        np.where(df["truth"].iloc[:20], "confirmed", "dismissed"),
        sources=["/runs/a"],
        evaluate=True,
    )
    path = model.save(tmp_path / "m" / "rerank.json")
    obj = json.loads(path.read_text())
    assert obj["format"] == "quantmet-rerank-logistic" and obj["version"] == 1
    card = json.loads(card_path(path).read_text())
    assert card["n_verdicts"] == 20 and card["sources"] == ["/runs/a"]
    assert 0 <= card["leave_one_out_accuracy"] <= 1 and card["features"] == list(model.features)
    again = load_reranker(path)
    assert again == model
    np.testing.assert_allclose(again.predict(df), model.predict(df))
    pd.testing.assert_frame_equal(apply_reranker(df, path), apply_reranker(df, model))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x80\x04\x95 pickle bytes", "not JSON"),
        (b'{"format": "something else"}', "not a quantmet re-ranker"),
        (b'{"format": "quantmet-rerank-logistic", "version": 9}', "version"),
        (
            b'{"format": "quantmet-rerank-logistic", "version": 1, "features": ["os.system"], "transforms": ["log"],'
            b' "mean": [0], "scale": [1], "coef": [1], "intercept": 0}',
            "unknown features",
        ),
        (
            b'{"format": "quantmet-rerank-logistic", "version": 1, "features": ["sum"], "transforms": ["log"],'
            b' "mean": [0], "scale": [0], "coef": [1], "intercept": 0}',
            "scales",
        ),
        (b'{"format": "quantmet-rerank-logistic", "version": 1, "features": ["sum"]}', "malformed"),
    ],
)
def test_load_rejects_anything_else(tmp_path, content, match):
    p = tmp_path / "model.json"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_reranker(p)
    with pytest.raises(FileNotFoundError):
        load_reranker(tmp_path / "missing.json")


def test_one_class_keeps_the_unsupervised_order():
    df = clusters()
    model = train_reranker(df.iloc[:10], ["confirmed"] * 10)
    assert model.fallback and "one class" in model.card["fallback"]
    out = apply_reranker(df.iloc[10:], model)
    assert out.sort_values("learned_rank")["rank"].tolist() == df["rank"].iloc[10:].tolist()


def test_unfamiliar_clusters_go_to_the_base_rate():
    df = clusters()
    train = df.iloc[:20]
    v = np.where(train["truth"], "confirmed", "dismissed")
    model = train_reranker(train, v)
    odd = df.iloc[20:22].copy()
    odd["edge_distance_px"] = 0.0  # far outside anything reviewed (5..300 px)
    odd["member_elongation_max"] = 2.0  # looks confirmed on the learned feature
    plain = train_reranker(train, v, cfg=RerankConfig(novelty_scale=None))
    assert model.novelty(odd).min() > 2
    p = model.predict(odd)
    assert np.allclose(p, model.base_rate, atol=0.05)  # neither promoted nor buried
    assert plain.z_min is None and np.isfinite(plain.predict(odd)).all()


def test_missing_features_take_the_training_mean(caplog):
    df = clusters()
    model = train_reranker(df.iloc[:20], np.where(df["truth"].iloc[:20], "confirmed", "dismissed"))
    out = apply_reranker(df.drop(columns=["member_circle_mean"]), model)
    assert np.isfinite(out["learned_score"]).all()
    assert "member_circle_mean" in caplog.text


def test_bad_training_input():
    df = clusters()
    with pytest.raises(ValueError, match="verdicts must be"):
        train_reranker(df.iloc[:4], ["confirmed", "maybe", "dismissed", None])
    with pytest.raises(ValueError, match="verdict"):
        train_reranker(df.iloc[:4])
    with pytest.raises(ValueError, match="none of the re-ranker features"):
        train_reranker(pd.DataFrame({"x": [1, 2]}), ["confirmed", "dismissed"])
    with pytest.raises(ValueError, match="no reviewed"):
        train_reranker(df.iloc[:0], [])
    with pytest.raises(ValueError, match="C must"):
        RerankConfig(C=0)
    with pytest.raises(ValueError, match="novelty_scale"):
        RerankConfig(novelty_scale=-1.0)


def test_docstring_examples():
    assert doctest.testmod(rerank_mod).failed == 0


def test_one_verdict_of_a_class_is_not_enough_to_learn():
    df = clusters()
    v = ["confirmed"] * (len(df) - 1) + ["dismissed"]
    m = train_reranker(df, v)
    assert m.fallback and "fewer than 2" in m.card["fallback"]
    learned = train_reranker(df, v, cfg=RerankConfig(min_per_class=1))
    assert not learned.fallback
    with pytest.raises(ValueError, match="min_per_class"):
        RerankConfig(min_per_class=0)
