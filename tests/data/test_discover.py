"""discover: every file is an item or listed as skipped with its reason; symlink policy (#14.1, #19.4)."""

import os

import cv2
import numpy as np
import pytest

from data import InputNotFoundError, discover, discover_inputs


def _img(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), np.zeros((4, 4), np.uint8))
    return p


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    for rel in ("a.png", "sub/b.tif", "sub/deep/c.jpg"):
        _img(root / rel)
    (root / "notes.txt").write_text("x")
    _img(root / ".hidden.png")
    _img(root / ".cache" / "d.png")
    (root / "scan.czi").write_bytes(b"ZISRAWFILE" + bytes(32))  # vendor file: an item even without the extra
    return root


def _reasons(listing):
    return {s.path.name: s.reason for s in listing.skipped}


def test_everything_is_listed(tree):
    L = discover(tree)
    assert [i.scan_id for i in L.items] == ["a", "scan", "sub/b", "sub/deep/c"]
    r = _reasons(L)
    assert r[".hidden.png"] == "hidden file" and r[".cache"] == "hidden folder"
    assert r["notes.txt"].startswith("not an image (suffix '.txt'")
    assert discover_inputs(tree) == L.items


def test_directory_loop_is_cut(tree):
    os.symlink(tree, tree / "sub" / "loop")  # sub/loop -> root
    for spec in (tree, str(tree / "**" / "*.*")):
        L = discover(spec)
        assert [i.scan_id for i in L.items] == ["a", "scan", "sub/b", "sub/deep/c"], spec
        assert "directory loop" in _reasons(L)["loop"]


def test_symlinked_file_and_folder_are_followed_once(tree, tmp_path):
    other = tmp_path / "other"
    _img(other / "e.png")
    os.symlink(other, tree / "linked")  # a folder outside the root
    os.symlink(tree / "a.png", tree / "sub" / "a_again.png")  # a second path to a.png
    os.symlink(other / "e.png", tree / "e_link.png")  # a file outside the root, reached twice
    L = discover(tree)
    # e.png is reached as linked/e.png and as e_link.png: one scan (no link-free path: the first id)
    assert [i.scan_id for i in L.items] == ["a", "e_link", "scan", "sub/b", "sub/deep/c"]
    assert "same file as" in _reasons(L)["e.png"]
    assert sum(i.path.resolve() == (other / "e.png").resolve() for i in L.items) == 1
    assert len({i.path.resolve() for i in L.items}) == len(L.items)
    assert "same file as" in _reasons(L)["a_again.png"]


def test_root_may_be_a_symlink(tree, tmp_path):
    link = tmp_path / "root_link"
    os.symlink(tree, link)
    assert [i.scan_id for i in discover(link).items] == ["a", "scan", "sub/b", "sub/deep/c"]


def test_glob_with_dotdot_gives_one_id_per_file(tree):
    _img(tree / "x" / "k.png")
    _img(tree / "y" / "k.png")
    L = discover(str(tree / "*" / ".." / "a.png"))  # root/sub/../a.png, root/x/../a.png, ...
    assert [i.scan_id for i in L.items] == ["a"]
    assert L.items[0].path == tree / "a.png"


def test_broken_link_and_special_file(tree):
    os.symlink(tree / "nothing.png", tree / "broken.png")
    os.mkfifo(tree / "pipe.png")
    r = _reasons(discover(tree))
    assert r["broken.png"] == "broken symlink" and r["pipe.png"] == "not a regular file"


def test_non_recursive_glob_does_not_walk_everything(tree):
    os.symlink(tree, tree / "sub" / "loop")
    L = discover(str(tree / "sub" / "*.tif"))
    assert [i.scan_id for i in L.items] == ["b"] and L.skipped == []


def test_glob_character_classes(tree):
    _img(tree / "s1.png")
    _img(tree / "s2.png")
    _img(tree / "sx.png")
    assert [i.scan_id for i in discover(str(tree / "s[0-9].png")).items] == ["s1", "s2"]
    assert [i.scan_id for i in discover(str(tree / "s[!0-9].png")).items] == ["sx"]
    assert [i.scan_id for i in discover(str(tree / "s?.png")).items] == ["s1", "s2", "sx"]


def test_single_file_errors(tree):
    with pytest.raises(InputNotFoundError, match="not a scan: not an image"):
        discover(tree / "notes.txt")
    os.symlink(tree / "gone.png", tree / "dangling.png")
    with pytest.raises(InputNotFoundError, match="broken symlink"):
        discover(tree / "dangling.png")
    assert [i.scan_id for i in discover(tree / ".hidden.png").items] == [".hidden"]  # named: taken


def test_empty_folder_lists_what_was_skipped(tmp_path):
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(InputNotFoundError, match=r"1 skipped, e.g. only.txt: not an image"):
        discover(tmp_path)
