"""Scans, image I/O, input discovery, impurity masks and RegionTables.

Importing this package does not import TensorFlow or Keras.
"""

from .errors import InputNotFoundError, QuantmetError, ScanReadError
from .inputs import ScanInput, discover_inputs, scan_id_for
from .io import IMAGE_SUFFIXES, read_image, read_scan, to_gray
from .masks import POLARITIES, binarize_mask
from .registration import LabelRegistration, label_contrast, register_labels
from .regions import REGION_COLUMNS, empty_regions, label_mask, regions_from_labels, regions_from_mask, relabel_sequential
from .scan import Scan

__all__ = [
    "IMAGE_SUFFIXES",
    "POLARITIES",
    "REGION_COLUMNS",
    "InputNotFoundError",
    "LabelRegistration",
    "QuantmetError",
    "Scan",
    "ScanInput",
    "ScanReadError",
    "binarize_mask",
    "discover_inputs",
    "empty_regions",
    "label_contrast",
    "label_mask",
    "read_image",
    "read_scan",
    "register_labels",
    "regions_from_labels",
    "regions_from_mask",
    "relabel_sequential",
    "scan_id_for",
    "to_gray",
]
