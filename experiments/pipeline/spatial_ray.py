"""Spatial score of one huge scan fanned out to Ray tasks (row chunks).

The library computes the score in process (``anomaly.scorers.spatial``); this module
only supplies a ``map_rows`` for it.  The chunk function (a picklable
:class:`anomaly.scorers.spatial.RowScorer` holding the boxes, areas and search index)
is put in the object store once; each task scores one chunk of query rows
against all impurities; at most ``max_in_flight`` tasks run at a time
(``ray.wait``); the results are fetched with one ``ray.get`` at the end.

Use::

    from functools import partial
    from experiments.pipeline.spatial_ray import ray_map_rows
    scores = spatial_score(table, cfg, map_rows=ray_map_rows)   # Ray only if >= cfg.ray_min_regions
    raw = weighted_kth_nn_scores(boxes, areas, k=50, normalize="none", map_rows=ray_map_rows)

Measured on the 2-core development machine (``bench_anomaly``, Ray already
started, warm workers): break-even at about 2k impurities when the machine is
idle (about 5k under load), 1.2-1.7x faster at 10k, 1.5-1.9x at 20k-30k and
1.7-1.8x at 100k (3.3 s -> 1.9 s).  The first call on fresh workers pays their start-up (about
0.5 s), and ``ray.init`` itself takes 2-5 s, so this only pays where Ray is
already up; hence ``SpatialConfig.ray_min_regions = 10_000``.

Inside an archive run the scans already keep every core busy: fanning out
within a scan helps only when there are fewer scans in flight than cores (one
huge scan).  Chunk tasks need a free CPU each; stage actors that reserve all
CPUs (``num_cpus=1`` each) leave none, so the chunks would wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

__all__ = ["ray_map_rows"]

log = logging.getLogger(__name__)

def _score_chunk(
    score_rows: Callable[[np.ndarray], np.ndarray], start: int, stop: int
) -> np.ndarray:
    return score_rows(np.arange(start, stop))


def ray_map_rows(
    score_rows: Callable[[np.ndarray], np.ndarray],
    n_rows: int,
    *,
    chunk_size: int = 4096,
    max_in_flight: int | None = None,
) -> np.ndarray:
    """``map_rows`` for :func:`anomaly.scorers.spatial.weighted_kth_nn_scores` on Ray.

    Parameters
    ----------
    score_rows : callable
        Picklable ``score_rows(rows) -> (len(rows),)`` (a ``RowScorer``).
    n_rows : int
        Rows ``0..n_rows-1`` are scored.
    chunk_size : int
        Rows per task.
    max_in_flight : int, optional
        Tasks submitted but not finished at most (default: twice the CPUs of
        the Ray cluster).

    Returns
    -------
    ndarray, shape (n_rows,)

    Ray must be initialised by the caller (``experiments.pipeline.runners.ray_session``);
    if it is not, a local Ray is started on this machine's cores.
    """
    import ray  # lazy: Ray

    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n_rows == 0:
        return np.zeros(0)
    if not ray.is_initialized():
        log.info("starting a local Ray for the spatial score")
        ray.init(include_dashboard=False, log_to_driver=True)
    if max_in_flight is None:
        max_in_flight = max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1)(_score_chunk)
    scorer_ref = ray.put(score_rows)  # boxes, areas and the index: shipped once
    refs = []
    for start in range(0, n_rows, chunk_size):
        if len(refs) >= max_in_flight:  # backpressure: wait until a slot is free
            ray.wait(refs, num_returns=len(refs) - max_in_flight + 1, fetch_local=False)
        refs.append(remote.remote(scorer_ref, start, min(n_rows, start + chunk_size)))
    parts = ray.get(refs)  # one get for all chunks, in submission order
    return np.concatenate(parts)
