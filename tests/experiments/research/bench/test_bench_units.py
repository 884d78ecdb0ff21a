"""Fast pieces of the segmentation and archive benchmarks (no subprocess runs)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from experiments.research.bench.archive import _real_masks
from experiments.research.bench.config import ArchiveBenchConfig, SegmentationBenchConfig
from experiments.research.bench.segmentation import prior_art_tiles, sgemm_peaks


def test_repeated_inputs_are_distinct_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(src / f"s{i}.jpg"), (rng.random((20, 30)) * 255).astype(np.uint8))
    dest, origin = _real_masks(str(src), 7, tmp_path / "dest", pattern="*.jpg", fallback="scans")
    files = sorted(dest.glob("*.jpg"))
    assert len(files) == 7 and origin == str(src)
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 7  # none read twice by a run
    assert cv2.imread(str(files[0])).shape == cv2.imread(str(src / "s0.jpg")).shape


def test_sgemm_peaks_small():
    p = sgemm_peaks(n=64, repeats=1)
    assert p["n"] == 64 and p["numpy_fp32"] > 0
    with pytest.raises(ValueError):
        sgemm_peaks(n=8)


def test_prior_art_tiles():
    assert prior_art_tiles((128 + 16 * 3, 128), tile=128, stride=16) == 4


@pytest.mark.parametrize("kwargs", [{"paths": ("keras-bf16",)}, {"paths": ("tensorrt-fp32",)},
                                    {"tilings": ((250, 32),)}, {"tilings": ((256, 256),)},
                                    {"seam_border": -1}, {"gemm_n": 4}])
def test_segmentation_bench_config_rejects(kwargs):
    with pytest.raises(ValueError):
        SegmentationBenchConfig(**kwargs)


def test_archive_bench_config_rejects():
    with pytest.raises(ValueError):
        ArchiveBenchConfig(n_raw=-1)
    assert ArchiveBenchConfig().n_raw == 48
