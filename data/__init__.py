"""Scans, image I/O, input discovery, calibration, annotations, impurity masks and RegionTables.

Importing this package does not import TensorFlow or Keras.
"""

from .annotations import AnnotationConfig, Annotations, ScaleBar, find_annotations, load_exclusion, parse_length, roi_mask
from .calibration import Calibration, calibration_key, load_calibration_csv, resolve_pixel_size, validate_pixel_size
from .errors import (
    CalibrationError,
    InputNotFoundError,
    MaskError,
    MissingReaderError,
    QuantmetError,
    ScanReadError,
)
from .inputs import InputListing, ScanInput, SkippedInput, discover, discover_inputs, scan_id_for
from .io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    SUPPORTED_SUFFIXES,
    VENDOR_SUFFIXES,
    image_shape,
    read_image,
    read_scan,
    to_gray,
)
from .masks import POLARITIES, binarize_mask
from .registration import LabelRegistration, label_contrast, register_labels
from .regions import REGION_COLUMNS, empty_regions, label_mask, regions_from_labels, regions_from_mask, relabel_sequential
from .scan import PIXEL_SIZE_SOURCES, Scan

__all__ = [
    "AnnotationConfig",
    "Annotations",
    "ScaleBar",
    "find_annotations",
    "load_exclusion",
    "parse_length",
    "roi_mask",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "PIXEL_SIZE_SOURCES",
    "POLARITIES",
    "REGION_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "VENDOR_SUFFIXES",
    "Calibration",
    "CalibrationError",
    "InputListing",
    "InputNotFoundError",
    "LabelRegistration",
    "MaskError",
    "MissingReaderError",
    "QuantmetError",
    "Scan",
    "ScanInput",
    "ScanReadError",
    "SkippedInput",
    "binarize_mask",
    "calibration_key",
    "discover",
    "discover_inputs",
    "empty_regions",
    "image_shape",
    "label_contrast",
    "label_mask",
    "load_calibration_csv",
    "read_image",
    "read_scan",
    "register_labels",
    "regions_from_labels",
    "regions_from_mask",
    "relabel_sequential",
    "resolve_pixel_size",
    "scan_id_for",
    "to_gray",
    "validate_pixel_size",
]
