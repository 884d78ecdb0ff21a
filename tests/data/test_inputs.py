"""discover_inputs: file, folder (recursive), glob; stable scan ids; clear errors."""

import cv2
import numpy as np
import pytest

from data import InputNotFoundError, discover_inputs


@pytest.fixture
def tree(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for rel in ["a.png", "sub/b.tif", "sub/deep/c.jpg", "notes.txt", "sub/.hidden.png"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".txt":
            p.write_text("x")
        else:
            cv2.imwrite(str(p), img)
    return tmp_path


def test_folder_recursive_sorted_ids(tree):
    items = discover_inputs(tree)
    assert [i.scan_id for i in items] == ["a", "sub/b", "sub/deep/c"]
    assert all(i.path.is_file() for i in items)


def test_single_file(tree):
    (item,) = discover_inputs(tree / "sub" / "b.tif")
    assert item.scan_id == "b"


def test_glob(tree):
    items = discover_inputs(str(tree / "sub" / "**" / "*.*"))
    assert [i.scan_id for i in items] == ["b", "deep/c"]


def test_relative_to_base_dir(tree):
    assert [i.scan_id for i in discover_inputs("sub", base_dir=tree)] == ["b", "deep/c"]


def test_errors(tree, tmp_path):
    with pytest.raises(InputNotFoundError, match="not found"):
        discover_inputs(tmp_path / "missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputNotFoundError, match="no image files"):
        discover_inputs(empty)
    with pytest.raises(InputNotFoundError, match="glob"):
        discover_inputs(str(tmp_path / "*.bmp"))
    cv2.imwrite(str(tree / "a.bmp"), np.zeros((2, 2), np.uint8))
    with pytest.raises(InputNotFoundError, match="same scan_id"):
        discover_inputs(tree)


def test_ome_tiff_scan_ids_drop_the_whole_double_extension(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for rel in ["lot1/s1.ome.tif", "lot1/s2.OME.TIFF", "s3.tif"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), img)
    assert [i.scan_id for i in discover_inputs(tmp_path)] == ["lot1/s1", "lot1/s2", "s3"]
    assert discover_inputs(tmp_path / "lot1" / "s1.ome.tif")[0].scan_id == "s1"
    cv2.imwrite(str(tmp_path / "lot1" / "s1.tif"), img)  # s1.tif and s1.ome.tif would share an id
    with pytest.raises(InputNotFoundError, match="same scan_id"):
        discover_inputs(tmp_path)
