"""Scans, image I/O, input discovery, calibration, annotations, impurity masks and RegionTables.

Importing this package does not import TensorFlow or Keras, nor (until a name is used) OpenCV,
pandas or SciPy: the names below are imported from their submodule on first access (PEP 562), so
``from data.errors import QuantmetError`` or ``import data`` costs milliseconds, and a command that
fails early (a config error, ``--help``) does not pay for the image and table stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

from .errors import (
    CalibrationError,
    InputNotFoundError,
    MaskError,
    MissingReaderError,
    QuantmetError,
    ScanReadError,
)

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from .annotations import AnnotationConfig, Annotations, ScaleBar, find_annotations, load_exclusion, parse_length, roi_mask
    from .calibration import Calibration, calibration_key, load_calibration_csv, resolve_pixel_size, validate_pixel_size
    from .inputs import InputListing, ScanInput, SkippedInput, discover, discover_inputs, scan_id_for
    from .io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, VENDOR_SUFFIXES, image_shape, read_image, read_scan, to_gray
    from .masks import POLARITIES, binarize_mask
    from .registration import LabelRegistration, label_contrast, register_labels
    from .regions import REGION_COLUMNS, empty_regions, label_mask, regions_from_labels, regions_from_mask, relabel_sequential
    from .scan import PIXEL_SIZE_SOURCES, Scan

# public name -> submodule that defines it (imported on first access)
_WHERE = {
    **dict.fromkeys(["AnnotationConfig", "Annotations", "ScaleBar", "find_annotations", "load_exclusion",
                     "parse_length", "roi_mask"], "annotations"),
    **dict.fromkeys(["Calibration", "calibration_key", "load_calibration_csv", "resolve_pixel_size",
                     "validate_pixel_size"], "calibration"),
    **dict.fromkeys(["InputListing", "ScanInput", "SkippedInput", "discover", "discover_inputs", "scan_id_for"],
                    "inputs"),
    **dict.fromkeys(["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "SUPPORTED_SUFFIXES", "VENDOR_SUFFIXES", "image_shape",
                     "read_image", "read_scan", "to_gray"], "io"),
    **dict.fromkeys(["POLARITIES", "binarize_mask"], "masks"),
    **dict.fromkeys(["LabelRegistration", "label_contrast", "register_labels"], "registration"),
    **dict.fromkeys(["REGION_COLUMNS", "empty_regions", "label_mask", "regions_from_labels", "regions_from_mask",
                     "relabel_sequential"], "regions"),
    **dict.fromkeys(["PIXEL_SIZE_SOURCES", "Scan"], "scan"),
}

__all__ = sorted([*_WHERE, "CalibrationError", "InputNotFoundError", "MaskError", "MissingReaderError",
                  "QuantmetError", "ScanReadError"])


__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
