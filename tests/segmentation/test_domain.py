"""Out-of-domain check (segmentation.domain)."""

from __future__ import annotations

import numpy as np
import pytest

from segmentation.domain import check_domain, scan_statistics, validated_domain


def _scans(n=3, shape=(300, 400), mean=125, sd=30):
    rng = np.random.default_rng(1)
    return [np.clip(rng.normal(mean, sd, shape), 0, 255).astype(np.uint8) for _ in range(n)]


def test_inside_and_outside_with_reasons():
    dom = validated_domain([scan_statistics(s) for s in _scans()])
    assert check_domain(_scans(1)[0], dom).in_domain
    dark = check_domain(_scans(1, mean=40, sd=10)[0], dom)
    assert not dark.in_domain and "median gray" in dark.note and "below" in dark.note
    tiny = check_domain(_scans(1, shape=(40, 60))[0], dom)
    assert not tiny.in_domain and "height" in tiny.note
    flat = check_domain(_scans(1, sd=3)[0], dom)
    assert any(r.startswith("inter-quartile") for r in flat.reasons)


def test_uint16_is_on_the_8_bit_scale_and_saturation_is_flagged():
    s = _scans(1)[0]
    a, b = scan_statistics(s), scan_statistics(s.astype(np.uint16) * 257)
    assert b["gray_median"] == pytest.approx(a["gray_median"])
    dom = validated_domain([a])
    sat = s.copy()
    sat[:150] = 255
    assert "share of pixels" in check_domain(sat, dom).note


def test_statistics_dict_and_bad_input():
    dom = validated_domain([scan_statistics(s) for s in _scans()])
    st = scan_statistics(_scans(1)[0])
    assert check_domain(st, dom).in_domain
    assert check_domain(st, {}).in_domain  # nothing recorded, nothing checked
    with pytest.raises(ValueError, match="2-D"):
        scan_statistics(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one"):
        validated_domain([])


def test_a_burned_in_data_bar_is_left_out_of_the_gray_levels():
    """A black data bar (as SEM software burns it in) moves the gray statistics; excluded, it does not."""
    dom = validated_domain([scan_statistics(s) for s in _scans()])
    scan = _scans(1)[0].copy()
    bar = np.zeros(scan.shape, bool)
    bar[-40:] = True  # 13% of the rows
    scan[bar] = 0
    assert not check_domain(scan, dom).in_domain  # the bar's zeros look like clipping
    got = check_domain(scan, dom, exclude=bar)
    assert got.in_domain, got.note
    whole = scan_statistics(_scans(1)[0])
    part = scan_statistics(scan, exclude=bar)
    assert part["rows"] == whole["rows"] and abs(part["gray_median"] - whole["gray_median"]) <= 1
    assert scan_statistics(scan, exclude=np.zeros(scan.shape, bool)) == scan_statistics(scan)
    with pytest.raises(ValueError, match="shape"):
        scan_statistics(scan, exclude=bar[:10])
