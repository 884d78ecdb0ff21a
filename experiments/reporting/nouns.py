"""What a run's regions are called (impurities, or objects in a phase run); no heavy imports.

The report, the gallery and the review app take their wording from here, so the review app can
name them without importing the report's imaging stack.
"""

from __future__ import annotations

__all__ = ["is_phase_run", "object_noun"]


def is_phase_run(layout) -> bool:
    """Whether a run dir (its :class:`~experiments.layout.RunLayout`) is a phase run (``+exp=phases``):
    told by its ``phases.parquet``; its regions are then pores, oxides... rather than impurities."""
    return layout.table("phases").is_file()


def object_noun(phase_run: bool, *, singular: bool = False) -> str:
    """What a run's regions are called: ``'impurities'``, or in a phase run (``+exp=phases``: the
    regions are pores, oxides...) ``'objects'``; ``singular=True`` gives ``'impurity'`` / ``'object'``.

    The one wording of the report (tables, cards, gallery) and the review app.
    """
    if phase_run:
        return "object" if singular else "objects"
    return "impurity" if singular else "impurities"
