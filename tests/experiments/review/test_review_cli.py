"""``python -m experiments.review`` as a user runs it: bad input, SIGKILL, training from run dirs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pandas as pd
import pytest
import requests
from _review_helpers import REPO, ProcessServer

from anomaly.rerank import apply_reranker, card_path, load_reranker
from experiments.review.__main__ import is_loopback, main
from experiments.review.store import VerdictStore


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_input_one_line_and_exit_code_2(tmp_path, review_run, capsys):
    assert "is not a quantmet run dir" in one_line_error(capsys, [f"run_dir={tmp_path}"])
    assert "does not exist" in one_line_error(capsys, [f"run_dir={tmp_path / 'nope'}"])
    assert "run_dir" in one_line_error(capsys, ["port=1"])
    assert "unknown option" in one_line_error(capsys, [f"run_dir={review_run}", "colour=red"])
    assert "key=value" in one_line_error(capsys, [str(review_run)])
    assert "port must be" in one_line_error(capsys, [f"run_dir={review_run}", "port=99999"])
    assert "model" in one_line_error(
        capsys, [f"run_dir={review_run}", f"model={tmp_path / 'm.json'}"]
    )
    bad_model = tmp_path / "evil.json"
    bad_model.write_text('{"format": "pickle"}')
    assert "not a quantmet re-ranker" in one_line_error(
        capsys, [f"run_dir={review_run}", f"model={bad_model}"]
    )
    with socket.socket() as s:  # a port in use
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        msg = one_line_error(capsys, [f"run_dir={review_run}", f"port={port}"])
    assert f"port {port}" in msg and "in use" in msg


def test_corrupt_database_is_reported_and_kept(review_run, capsys):
    db = review_run / "review" / "feedback.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"garbage, not sqlite\n" * 100)
    msg = one_line_error(capsys, [f"run_dir={review_run}", "port=0"])
    assert "feedback database" in msg and "left untouched" in msg
    assert db.read_bytes() == b"garbage, not sqlite\n" * 100


def test_exit_code_of_the_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.review", f"run_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip().startswith("error:")
        and "Traceback" not in proc.stderr
    )


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_verdict_and_other_hosts_need_a_token(review_run):
    srv = ProcessServer(review_run)
    try:
        objs = requests.get(srv.url + "/api/clusters", timeout=10).json()
        acked = []
        for o, v in zip(objs[:3], ["confirmed", "dismissed", "confirmed"]):
            r = requests.post(
                srv.url + "/api/feedback",
                timeout=10,
                json={
                    "scan_id": o["scan_id"],
                    "cluster_id": o["cluster_id"],
                    "verdict": v,
                    "note": f"note {o['rank']}",
                },
            )
            assert r.status_code == 200
            acked.append((o["scan_id"], o["cluster_id"], v))
    finally:
        srv.kill()  # SIGKILL right after the last acknowledgement: no shutdown, no checkpoint
    assert srv.proc.returncode == -9
    # restarted on all interfaces (only ever reached through loopback here): a token is printed and needed
    again = ProcessServer(review_run, "host=0.0.0.0")
    try:
        assert "?token=" in again.url
        base, token = again.url.split("/?token=")
        base = base.replace("0.0.0.0", "127.0.0.1")
        assert requests.get(base + "/api/clusters", timeout=10).status_code == 401
        got = {
            (o["scan_id"], o["cluster_id"]): o
            for o in requests.get(
                base + "/api/clusters", headers={"X-Review-Token": token}, timeout=10
            ).json()
        }
        for sid, cid, v in acked:
            assert got[(sid, cid)]["verdict"] == v
        assert sum(o["verdict"] is not None for o in got.values()) == 3
    finally:
        again.kill()
    exported = pd.read_parquet(review_run / "review" / "feedback.parquet")  # re-exported at start
    assert sorted(exported["verdict"]) == ["confirmed", "confirmed", "dismissed"]


def test_train_command_writes_a_safe_model(review_run, tmp_path, capsys):
    clusters = pd.read_parquet(review_run / "clusters.parquet").sort_values("rank")
    store = VerdictStore(review_run / "review" / "feedback.sqlite")
    for (_, c), v in zip(clusters.iterrows(), ["confirmed", "dismissed", "confirmed", "dismissed"]):
        store.set(c["scan_id"], int(c["cluster_id"]), v)
    store.close()
    out = tmp_path / "models" / "rerank.json"
    assert main(["train", f"run_dirs=[{review_run}]", f"out={out}"]) == 0
    assert "4 verdicts (2 confirmed, 2 dismissed)" in capsys.readouterr().out
    model = json.loads(out.read_text())
    assert model["format"] == "quantmet-rerank-logistic" and len(model["coef"]) == len(
        model["features"]
    )
    card = json.loads(card_path(out).read_text())
    assert card["n_verdicts"] == 4 and card["sources"] == [str(review_run.resolve())]
    ranked = apply_reranker(clusters, load_reranker(out))
    assert sorted(ranked["learned_rank"]) == list(range(1, len(clusters) + 1))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a quantmet run dir" in one_line_error(
        capsys, ["train", f"run_dirs=[{empty}]", f"out={out}"]
    )
    assert "run_dirs" in one_line_error(capsys, ["train", f"out={out}"])


@pytest.mark.parametrize(
    "host, loop",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
    ],
)
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop
