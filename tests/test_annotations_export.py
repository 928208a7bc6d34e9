"""write_outputs: every role written and readable; overlay, CSV units, histogram bins, summary text."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from annotations.geometry import circle_polygon
from annotations.labelme import read_labelme
from annotations.model import Instance
from outputs.files import (
    bin_edges,
    format_stats,
    render_overlay,
    summary_for,
    write_outputs,
)
from outputs.overlay import nice_scale_bar


def _instances(n=12):
    rng = np.random.default_rng(0)
    return [
        Instance("particle" if k % 4 else "single_site", circle_polygon(x, y, r, 32), float(s))
        for k, (x, y, r, s) in enumerate(
            zip(
                rng.uniform(20, 180, n),
                rng.uniform(20, 130, n),
                rng.uniform(3, 9, n),
                rng.random(n),
                strict=True,
            )
        )
    ]


@pytest.mark.parametrize("nm", [None, 0.8])
def test_write_outputs_all_roles(tmp_path, nm):
    image = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    insts = _instances()
    paths = write_outputs(tmp_path, "img1", image, insts, nm_per_px=nm, title="sample")
    assert set(paths) == {"labelme", "overlay", "csv", "summary", "histogram", "text", "labels", "rois"}
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    back = read_labelme(paths["labelme"])
    assert len(back.instances) == 12 and np.array_equal(back.image, image) and back.nm_per_px == nm
    assert [round(i.score, 4) for i in back.instances] == [round(i.score, 4) for i in insts]
    overlay = cv2.imread(str(paths["overlay"]))
    assert overlay.shape == image.shape and not np.array_equal(overlay[..., ::-1], image)
    hist = cv2.imread(str(paths["histogram"]))
    assert hist is not None and hist.shape[1] > 500
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["class"] == "single_site"
    assert ("d_nm" in rows[0]) == (nm is not None)
    if nm:
        assert float(rows[0]["d_nm"]) == pytest.approx(float(rows[0]["d_px"]) * nm, rel=1e-3)
        assert float(rows[0]["area_nm2"]) == pytest.approx(float(rows[0]["area_px"]) * nm * nm, rel=1e-3)
    summary = json.loads(paths["summary"].read_text())
    for key in ("n_objects", "counts", "mean_d_px", "std_d_px", "density", "coverage"):
        assert key in summary
    assert ("mean_d_nm" in summary) == (nm is not None)
    assert summary["counts"] == {"particle": 9, "single_site": 3}
    text = paths["text"].read_text()
    assert "12 objects" in text and ("nm" in text) == (nm is not None)


def test_outputs_with_no_objects(tmp_path):
    paths = write_outputs(tmp_path, "empty", np.zeros((50, 60, 3), np.uint8), [], nm_per_px=1.0)
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_objects"] == 0 and summary["mean_d_px"] is None
    assert "0 objects" in paths["text"].read_text()


def test_bins_make_sense_for_small_counts():
    assert len(bin_edges(np.array([5.0]))) == 2
    assert len(bin_edges(np.array([3.0, 4.0, 5.0]))) - 1 == 3
    assert len(bin_edges(np.arange(1000.0))) - 1 == 20
    assert len(bin_edges(np.arange(1, 100000.0))) - 1 == 40
    edges = bin_edges(np.array([1.0, 10.0, 100.0]), log=True)
    assert np.allclose(np.diff(np.log(edges)), np.log(100) / (len(edges) - 1))
    same = bin_edges(np.array([7.0, 7.0]))
    assert same[0] < 7 < same[-1]


def test_scale_bar_lengths():
    assert nice_scale_bar(1000, 1.0) == (200, "200 nm")
    assert nice_scale_bar(1000, 10.0) == (2000, "2 µm")
    assert nice_scale_bar(512, 0.1)[1] == "10 nm"


def test_overlay_scale_bar_and_ids_drawn():
    image = np.zeros((200, 300, 3), np.uint8)
    insts = _instances(5)
    plain = render_overlay(image, insts, None, show_ids=False)
    with_bar = render_overlay(image, insts, 1.0, show_ids=False)
    with_ids = render_overlay(image, insts, None, show_ids=True)
    assert (with_bar[150:] != plain[150:]).any()  # bottom: scale bar
    assert (with_ids != plain).any()


def test_russian_summary_text():
    s = summary_for(np.zeros((100, 100, 3), np.uint8), _instances(4), 2.0, name="x")
    ru = format_stats(s, "ru")
    assert "4 объекта" in ru and "нм" in ru and "плотность" in ru


def test_outputs_always_readable_back(tmp_path):
    image = np.zeros((50, 60, 3), np.uint8)
    good = Instance("p", np.array([[1, 1], [10, 1], [10, 10]], float), 0.9)
    insts = [
        good,
        Instance("p", good.polygon.copy(), 0.8),  # exact copy
        Instance("p", np.array([[1, 1], [5, 5]], float)),  # 2 points
        Instance("p", np.array([[1, 1], [5, 5], [9, 9]], float)),  # no area
        Instance("p", np.array([[70, 70], [80, 70], [80, 80]], float)),  # wholly outside
        Instance("q", np.array([[50, 40], [70, 40], [70, 49], [50, 49]], float)),  # partly outside
    ]
    paths = write_outputs(tmp_path, "x", image, insts)
    back = read_labelme(paths["labelme"])
    assert [i.label for i in back.instances] == ["p", "q"]
    assert back.instances[1].polygon[:, 0].max() == 59.5  # the last pixel column ends at W - 0.5
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_objects"] == 2 and summary["dropped_invalid"] == 4
