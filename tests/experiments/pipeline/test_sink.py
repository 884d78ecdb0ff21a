"""The driver's Parquet writer: row groups bounded by rows and by pending frames, same content."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from experiments.pipeline.sink import TableWriter


def _frames(n, rows=3):
    rng = np.random.default_rng(0)
    return [pd.DataFrame({"scan_id": [f"s{i}"] * rows, "v": rng.random(rows), "k": np.arange(rows)}) for i in range(n)]


def test_many_small_frames_are_written_in_bounded_row_groups(tmp_path):
    frames = _frames(10)
    w = TableWriter(tmp_path / "t.parquet", row_group_rows=1000, max_frames=4)
    for f in frames:
        w.append(f)
        assert len(w._pending) < 4  # never more than max_frames frames wait in memory
    path = w.close()
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [12, 12, 6]
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.concat(frames, ignore_index=True))


def test_row_limit_still_applies(tmp_path):
    frames = _frames(6, rows=5)
    w = TableWriter(tmp_path / "t.parquet", row_group_rows=10, max_frames=100)
    for f in frames:
        w.append(f)
    meta = pq.ParquetFile(w.close()).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 10]
