"""Typed options of the ``compare`` task (``+exp=compare``; Hydra group ``compare``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CompareConfig"]


@dataclass(frozen=True)
class CompareConfig:
    """Options of :func:`experiments.reporting.compare.compare_run`.

    Parameters
    ----------
    run_dir : str
        A finished run dir (``scans.parquet``, optionally ``ratings.parquet``); required.
    groups : str or None
        ``"folder"`` (first folder level of the scan id) or a CSV ``path,group``; ``None`` = the
        run's own ``data.groups`` (from ``.hydra/config.yaml``) when it has one, else ``"folder"``.
    metrics : tuple of str or None
        Per-scan columns to compare; ``None`` = area fraction, number density, grain size, the
        E1245 means and every worst-field severity the run has.
    out_dir : str
        Where to write; ``""`` = the task's output dir (the Hydra run dir of the compare run).
    title : str
        Title of the PDF and HTML summary.
    pdf : bool
        Write ``compare.pdf`` (certificate-style summary, matplotlib's PDF backend).
    include_failed : bool
        Keep scans whose ``status`` is not ``ok`` (their values are NaN anyway).
    """

    run_dir: str = ""
    groups: str | None = None
    metrics: tuple[str, ...] | None = None
    out_dir: str = ""
    title: str = "Inclusion rating and sample comparison"
    pdf: bool = True
    include_failed: bool = False

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics))
