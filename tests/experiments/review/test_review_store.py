"""The verdict store: commits, history, last write wins, damaged files left untouched."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from experiments.review.store import StoreError, VerdictStore, read_verdicts


def test_set_get_history_and_last_write_wins(tmp_path):
    db = tmp_path / "review" / "feedback.sqlite"
    store = VerdictStore(db, export_path=tmp_path / "review" / "feedback.parquet")
    a = store.set("s/1", 3, "confirmed", note="look <b>here</b>", client="tab1")
    assert a["revision"] == 1 and a["verdict"] == "confirmed" and a["note"] == "look <b>here</b>"
    b = store.set("s/1", 3, "dismissed", keep_note=True, client="tab2")  # a second tab, later
    assert (
        b["revision"] == 2 and b["note"] == "look <b>here</b>"
    )  # the verdict button keeps the note
    assert store.get("s/1", 3)["verdict"] == "dismissed"  # last write wins
    hist = store.history("s/1", 3)
    assert [h["verdict"] for h in hist] == ["confirmed", "dismissed"]
    assert [h["client"] for h in hist] == ["tab1", "tab2"]
    assert hist[0]["at"] < hist[1]["at"]
    store.set("s/1", 3, None, note="")
    assert store.get("s/1", 3)["verdict"] is None and store.change_count() == 3
    exported = pd.read_parquet(tmp_path / "review" / "feedback.parquet")
    assert exported[["scan_id", "cluster_id", "revision"]].values.tolist() == [["s/1", 3, 3]]
    store.close()
    # reopened: everything is still there; the database runs in WAL mode, synchronous FULL
    again = VerdictStore(db)
    assert again.get("s/1", 3)["revision"] == 3 and len(again.history()) == 3
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    again.close()
    assert read_verdicts(db)["revision"].tolist() == [3]


def test_bad_verdict_and_note_store_nothing(tmp_path):
    store = VerdictStore(tmp_path / "f.sqlite")
    with pytest.raises(ValueError, match="verdict"):
        store.set("a", 0, "maybe")
    with pytest.raises(ValueError, match="note"):
        store.set("a", 0, "confirmed", note="x" * 10_001)
    assert store.all() == {} and store.history() == []
    store.close()


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 50, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_damaged_database_is_an_error_and_left_untouched(tmp_path, content):
    db = tmp_path / "feedback.sqlite"
    db.write_bytes(content)
    with pytest.raises(StoreError, match="left untouched"):
        VerdictStore(db)
    assert db.read_bytes() == content
    with pytest.raises(StoreError):
        read_verdicts(db)
    assert db.read_bytes() == content


def test_foreign_sqlite_database_is_not_used(tmp_path):
    db = tmp_path / "feedback.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="not a quantmet feedback database"):
        VerdictStore(db)
    assert db.read_bytes() == before


def test_empty_file_becomes_a_new_database(tmp_path):
    db = tmp_path / "feedback.sqlite"
    db.write_bytes(b"")
    store = VerdictStore(db)
    store.set("a", 1, "confirmed")
    store.close()
    assert read_verdicts(db)["verdict"].tolist() == ["confirmed"]


def test_read_verdicts_of_missing_file(tmp_path):
    with pytest.raises(StoreError, match="no feedback database"):
        read_verdicts(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()
