"""Fragments of one particle joined (inference/fragments.py), whole neighbours left apart."""

from __future__ import annotations

import numpy as np
import shapely

from annotations.geometry import circle_polygon
from annotations.model import Instance
from inference.fragments import FragmentRules, merge_fragments


def disc(cx, cy, r=10.0, score=0.9, label="p"):
    return Instance(label, circle_polygon(cx, cy, r, 48), score)


def half(cx, cy, r=10.0, side=1, score=0.8):
    """The left (side -1) or right (side 1) half of a disc, 0.5 px off the cut."""
    disc_ = shapely.Polygon(circle_polygon(cx, cy, r, 48))
    cut = shapely.box(cx + 0.5, cy - r - 1, cx + r + 1, cy + r + 1) if side > 0 else \
        shapely.box(cx - r - 1, cy - r - 1, cx - 0.5, cy + r + 1)
    return Instance("p", np.asarray(disc_.intersection(cut).exterior.coords)[:-1], score)


def test_halves_and_nested_parts_join_whole_neighbours_do_not():
    others = [disc(40 * k, 200) for k in range(1, 8)]  # the image's typical particle size
    pieces = [half(50, 50, side=-1), half(50, 50, side=1, score=0.95),
              disc(120, 50), disc(123, 52, r=4, score=0.5)]
    touching = [disc(200, 50), disc(220, 50)]  # two whole particles side by side
    assert merge_fragments(others + pieces + touching)[1] == 1  # by default only the nested part
    kept, merged = merge_fragments(others + pieces + touching, FragmentRules(halves=True))
    assert merged == 2 and len(kept) == len(others) + 2 + 2
    joined = [k for k in kept if abs(k.polygon[:, 1].mean() - 50) < 3 and k.polygon[:, 0].mean() < 80]
    assert len(joined) == 1 and joined[0].score == 0.95
    assert abs(shapely.Polygon(joined[0].polygon).area - np.pi * 100) < 0.08 * np.pi * 100
    near = [k for k in kept if np.hypot(*(k.polygon.mean(axis=0) - (121, 51))) < 5]
    assert len(near) == 1 and near[0].score == 0.9  # the inner part dropped, the particle kept
    # Classes are kept apart; one outline is left as it is.
    two_classes = [half(50, 50, side=-1), Instance("q", half(50, 50, side=1).polygon)]
    assert merge_fragments(two_classes + others, FragmentRules(halves=True))[1] == 0
    kept, merged = merge_fragments([disc(5, 5)])
    assert merged == 0 and len(kept) == 1


def test_rules_are_the_thresholds():
    others = [disc(40 * k, 200) for k in range(1, 8)]
    pieces = [half(50, 50, side=-1), half(50, 50, side=1)]
    on = dict(halves=True)
    assert merge_fragments(others + pieces, FragmentRules(**on))[1] == 1
    assert merge_fragments(others + pieces, FragmentRules(solidity=0.999, **on))[1] == 0
    assert merge_fragments(others + pieces, FragmentRules(max_size=0.5, **on))[1] == 0
    assert merge_fragments(others + pieces, FragmentRules(gap=0.1, **on))[1] == 0  # 1 px apart: not touching


def test_a_blob_over_several_particles_goes_its_particles_stay():
    others = [disc(40 * k, 200) for k in range(1, 8)]
    pair = shapely.convex_hull(shapely.MultiPoint([(90, 60), (110, 60)]).buffer(10.5))
    blob = Instance("p", np.asarray(pair.exterior.coords)[:-1], 0.75)  # one outline around two particles
    inside = [disc(90, 60, 10), disc(110, 60, 10)]
    kept, merged = merge_fragments(others + [blob] + inside)
    assert merged == 1 and len(kept) == len(others) + 2
    assert not any(abs(shapely.Polygon(k.polygon).area - pair.area) < 50 for k in kept)
    kept, merged = merge_fragments(others + [blob] + inside, FragmentRules(blob_cover=2.0))
    assert merged == 2 and any(abs(shapely.Polygon(k.polygon).area - pair.area) < 50 for k in kept)
