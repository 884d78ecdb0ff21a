"""On Ray, every worker loads each U-Net (and compiles its backend) once, not once per scan."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

pytest.importorskip("keras")
pytest.importorskip("ray")

from experiments.config import pipeline_config
from experiments.pipeline.runners import StageFactory, run_ray

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class _CountingFactory:
    """The real stage; each result row also says how many model loads / backend compiles its worker made."""

    inner: StageFactory

    def __call__(self):
        stage = self.inner()

        def run(task):
            from segmentation import backends, models

            result = stage(task)
            result.row["_pid"] = os.getpid()
            result.row["_loads"] = models._load.cache_info().misses
            result.row["_compiles"] = (backends._openvino_fn.cache_info().misses
                                       + backends._onnxruntime_fn.cache_info().misses)
            result.row["_backends"] = ",".join(sorted(backends.last_backends().values()))
            return result

        return run


def test_each_ray_worker_loads_each_model_once(compose, tmp_path):
    import ray

    scan = cv2.imread(str(REPO / "data" / "samples" / "scans" / "10.jpg"), cv2.IMREAD_GRAYSCALE)
    archive = tmp_path / "scans"
    archive.mkdir()
    for i in range(6):
        r, c = 40 * i, 60 * i
        cv2.imwrite(str(archive / f"s{i}.png"), scan[r : r + 192, c : c + 256])
    pc = pipeline_config(compose(["+exp=archive", f"data.input={archive}", "runtime.num_workers=2",
                                  "segmentation.grains.enabled=true", "report.html=false"]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        from data import discover_inputs

        results = []
        run_ray(discover_inputs(archive), _CountingFactory(StageFactory(pc)), results.append, pc.runtime)
    finally:
        ray.shutdown()
    assert len(results) == 6 and all(r.ok for r in results), [r.row.get("error") for r in results]
    by_pid: dict[int, list[dict]] = {}
    for r in results:
        by_pid.setdefault(r.row["_pid"], []).append(r.row)
    for rows in by_pid.values():
        assert {row["_loads"] for row in rows} == {2}  # impurities + grains, loaded before the first scan
        assert len({row["_compiles"] for row in rows}) == 1 and rows[0]["_compiles"] <= 2
        assert rows[0]["_backends"]
