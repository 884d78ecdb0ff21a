"""Options of the inclusion ratings (ASTM E45 Method A / ISO 4967 Method A) and ASTM E1245 stereology.

Conventions
-----------
Rolling (deformation) direction: an angle in degrees measured from the image's **col axis**
(a horizontal line of the displayed image, left to right), **counter-clockwise as the image is
displayed** (the row axis points down).  0 = along the rows (horizontal), 90 = along the columns
(vertical, bottom to top).  As a unit vector in (row, col) components: ``(-sin a, cos a)``.
Directions are axial: ``a`` and ``a + 180`` are the same.

Rating limits (minimum values per severity 0.5, 1, ..., 3; ASTM E45 Table 1 / ISO 4967 Table 1):
a field gets the highest severity whose minimum its measurement reaches; there is no interpolation
between limits (a value between two limits gets the lower one); values above the limit of 3 are
rated 3.  The A, B, C and D limits are reproduced (within 0.5 %) by the relations the image-analysis
procedures use, ``log10 i = 0.5605 log10 L - 1.179`` (A), ``0.4626 log10 L - 0.871`` (B),
``0.4807 log10 L - 0.904`` (C) and ``i = sqrt(n) / 2`` (D); ``tests/data/standards`` checks this
internal consistency.  Width limits (thin / heavy series) are those of ISO 4967 Table 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from data.errors import QuantmetError

__all__ = [
    "INCLUSION_TYPES",
    "SERIES",
    "SEVERITY_LEVELS",
    "RatingConfig",
    "RatingError",
]

#: Severity levels of the charts (plate I-r / ISO 4967 diagrams).
SEVERITY_LEVELS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)

#: Inclusion types a region can get (``""`` = not rated: too small/narrow, or no calibration).
#: ``"A/C"``: an elongated inclusion whose gray level cannot tell sulfide (A) from silicate (C).
INCLUSION_TYPES: tuple[str, ...] = ("A", "C", "A/C", "B", "D", "DS")

#: Width series; DS has a single series.
SERIES: tuple[str, ...] = ("thin", "heavy", "single")


def _default_limits() -> dict[str, tuple[float, ...]]:
    return {
        # total length per field, µm
        "A": (37.0, 127.0, 261.0, 436.0, 649.0, 898.0),
        "B": (17.0, 77.0, 184.0, 343.0, 555.0, 822.0),
        "C": (18.0, 76.0, 176.0, 320.0, 510.0, 746.0),
        # number of particles per field
        "D": (1.0, 4.0, 9.0, 16.0, 25.0, 36.0),
        # diameter of the particle, µm
        "DS": (13.0, 19.0, 27.0, 38.0, 53.0, 76.0),
    }


def _default_widths() -> dict[str, tuple[float, float, float]]:
    # (thin minimum, thin maximum = heavy lower bound (exclusive), heavy maximum), µm
    return {
        "A": (2.0, 4.0, 12.0),
        "B": (2.0, 9.0, 15.0),
        "C": (2.0, 5.0, 12.0),
        "D": (3.0, 8.0, 13.0),
    }


class RatingError(QuantmetError, ValueError):
    """Bad input to the inclusion ratings (table columns, shapes, options)."""


def _direction(value: Any) -> str | float:
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "auto":
            return "auto"
        try:
            value = float(v)
        except ValueError:
            raise ValueError(f"rolling_direction must be 'auto' or an angle in degrees, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"rolling_direction must be 'auto' or a finite angle in degrees, got {value!r}")
    return float(value) % 180.0


def _limits(value: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
    out = _default_limits()
    for k, v in dict(value).items():
        if k not in out:
            raise ValueError(f"severity_limits: unknown type {k!r}; known: {sorted(out)}")
        t = tuple(float(x) for x in v)
        if len(t) != len(SEVERITY_LEVELS) or any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0:
            raise ValueError(f"severity_limits[{k}] must be 6 increasing positive values, got {list(v)}")
        out[k] = t
    return out


def _widths(value: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    out = _default_widths()
    for k, v in dict(value).items():
        if k not in out:
            raise ValueError(f"width_limits_um: unknown type {k!r}; known: {sorted(out)}")
        t = tuple(float(x) for x in v)
        if len(t) != 3 or not (0 <= t[0] < t[1] < t[2]):
            raise ValueError(f"width_limits_um[{k}] must be [thin_min, thin_max, heavy_max] increasing, got {list(v)}")
        out[k] = t
    return out


@dataclass(frozen=True)
class RatingConfig:
    """Options of :func:`data.standards.rate_scan` (``conf/ratings/default.yaml``).

    Parameters
    ----------
    enabled : bool
        Whether the pipeline rates scans (the functions ignore it).
    field_side_um : float
        Side of the square fields, µm (710 µm = 0.50 mm², the standards' field at 100x).
    field_origin : {"centre", "corner"}
        Where the grid of whole fields starts: centred on the scan (equal unrated margins, the
        same fields for a scan rotated by 90 degrees) or at its top-left corner.
    rolling_direction : "auto" or float
        Deformation direction in degrees from the col axis, counter-clockwise as displayed
        (module docstring).  ``"auto"``: the length-weighted axial mean orientation of the
        elongated inclusions, when there are at least ``auto_min_elongated`` of them and their
        orientation coherence (mean resultant length of the doubled angles, 0..1) is at least
        ``auto_min_coherence``; else ``auto_fallback_deg`` with a note.
    elongated_aspect : float
        Feret max / Feret min at or above which an inclusion is elongated (type A or C); below it,
        globular (B stringer particle, D or DS).  ISO 4967 describes A/C as high aspect ratio and
        B/D as "generally < 3".
    align_tolerance_deg : float
        An elongated inclusion joins an A/C stringer only when its axis is within this angle of
        the rolling direction.
    stringer_gap_um, stringer_offset_um : float
        Two globular particles belong to the same B stringer when the gap between them along the
        rolling direction is at most ``stringer_gap_um`` and their centres are at most
        ``stringer_offset_um`` apart across it (chained: a stringer is a connected group).
    ac_gap_um, ac_offset_um : float
        The same rule for joining elongated inclusions in line into one A/C stringer.
    min_stringer_particles : int
        A group of at least this many globular particles is a B stringer; smaller groups are
        single particles (D, or DS when large).
    stringer_length : {"span", "sum"}
        Length of a stringer: end to end along the rolling direction, gaps included (``span``),
        or the sum of its particles' lengths (``sum``).
    severity_limits : mapping
        Minimum value per severity 0.5..3 for each type (module docstring).
    width_limits_um : mapping
        ``[thin_min, thin_max, heavy_max]`` per type, µm.  Width of an elongated inclusion: its
        Feret min; of a stringer: the widest particle; of a D particle: its Feret max (diameter).
        Narrower than ``thin_min``: not rated.  Wider than ``heavy_max``: rated in the heavy
        series and counted as oversize.
    ds_min_diameter_um : float
        A single globular particle at least this large (Feret max) is type DS.
    ac_split : {"auto", "none"}
        ``auto``: on raw scans (``pixels`` and ``labels`` given) split the elongated inclusions
        into A (lighter: sulfides) and C (darker: silicates) by their mean gray level relative to
        the matrix, when the split is clear; otherwise (and on masks) they are rated as ``A/C``.
    ac_min_particles : int
        Fewest elongated inclusions for a gray-level split.
    ac_min_contrast_gap, ac_min_class_size, ac_min_darkness : float, int, float
        The two-class split of the inclusions' darkness ``(matrix - mean gray) / matrix`` (best
        between-class variance) is accepted only when no inclusion lies within
        ``ac_min_contrast_gap`` between the classes, each class has at least ``ac_min_class_size``
        inclusions, and the lighter class's mean darkness is at least ``ac_min_darkness`` (sulfides
        are gray, darker than the matrix).  A continuum of gray levels is not split.
    ac_unresolved_limits : {"A", "C"}
        Limits and widths used to rate ``A/C`` inclusions.
    """

    enabled: bool = True
    field_side_um: float = 710.0
    field_origin: str = "centre"
    rolling_direction: Any = "auto"
    auto_min_elongated: int = 5
    auto_min_coherence: float = 0.5
    auto_fallback_deg: float = 0.0
    elongated_aspect: float = 3.0
    align_tolerance_deg: float = 20.0
    stringer_gap_um: float = 40.0
    stringer_offset_um: float = 10.0
    ac_gap_um: float = 40.0
    ac_offset_um: float = 10.0
    min_stringer_particles: int = 3
    stringer_length: str = "span"
    severity_limits: Any = field(default_factory=dict)
    width_limits_um: Any = field(default_factory=dict)
    ds_min_diameter_um: float = 13.0
    ac_split: str = "auto"
    ac_min_particles: int = 6
    ac_min_contrast_gap: float = 0.15
    ac_min_class_size: int = 3
    ac_min_darkness: float = 0.05
    ac_unresolved_limits: str = "A"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("rolling_direction", _direction(self.rolling_direction))
        set_("severity_limits", _limits(self.severity_limits or {}))
        set_("width_limits_um", _widths(self.width_limits_um or {}))
        positive = ("field_side_um", "elongated_aspect", "stringer_gap_um", "ac_gap_um", "ds_min_diameter_um")
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("stringer_offset_um", "ac_offset_um", "ac_min_contrast_gap"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.align_tolerance_deg <= 90:
            raise ValueError(f"align_tolerance_deg must be in [0, 90], got {self.align_tolerance_deg}")
        if not 0 <= self.auto_min_coherence <= 1:
            raise ValueError(f"auto_min_coherence must be in [0, 1], got {self.auto_min_coherence}")
        if int(self.min_stringer_particles) < 2:
            raise ValueError(f"min_stringer_particles must be >= 2, got {self.min_stringer_particles}")
        if self.field_origin not in ("centre", "corner"):
            raise ValueError(f"field_origin must be 'centre' or 'corner', got {self.field_origin!r}")
        if self.stringer_length not in ("span", "sum"):
            raise ValueError(f"stringer_length must be 'span' or 'sum', got {self.stringer_length!r}")
        if self.ac_split not in ("auto", "none"):
            raise ValueError(f"ac_split must be 'auto' or 'none', got {self.ac_split!r}")
        if self.ac_unresolved_limits not in ("A", "C"):
            raise ValueError(f"ac_unresolved_limits must be 'A' or 'C', got {self.ac_unresolved_limits!r}")
        set_("auto_fallback_deg", float(self.auto_fallback_deg) % 180.0)
        set_("min_stringer_particles", int(self.min_stringer_particles))

    def limits_for(self, rated_type: str) -> tuple[float, ...]:
        """Severity limits of a rated type (``A/C`` uses ``ac_unresolved_limits``)."""
        key = self.ac_unresolved_limits if rated_type == "A/C" else rated_type
        return self.severity_limits[key]

    def widths_for(self, rated_type: str) -> tuple[float, float, float]:
        """Width limits of a rated type (``A/C`` uses ``ac_unresolved_limits``)."""
        key = self.ac_unresolved_limits if rated_type == "A/C" else rated_type
        return self.width_limits_um[key]
