"""Otsu + watershed baseline on synthetic discs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotations.geometry import polygon_area
from inference.baseline import otsu_watershed
from tests.fake_detector import disc_image


def grid_discs(rng, nx=9, ny=6, step=30):
    return [
        (20 + step * i + rng.uniform(-2, 2), 20 + step * j + rng.uniform(-2, 2), rng.uniform(5, 8))
        for i in range(nx)
        for j in range(ny)
    ]


def centres(instances):
    out = []
    for inst in instances:
        x, y = inst.polygon[:, 0], inst.polygon[:, 1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        a = 3 * cross.sum()
        out.append((((x + xn) * cross).sum() / a, ((y + yn) * cross).sum() / a))
    return np.array(out)


@pytest.mark.parametrize("dark", [False, True])
def test_finds_separated_discs_in_noise(dark):
    rng = np.random.default_rng(3)
    discs = grid_discs(rng)
    image = disc_image(200, 290, discs, value=200, background=60).astype(float)
    image = np.clip(image + rng.normal(0, 15, image.shape), 0, 255).astype(np.uint8)
    if dark:
        image = 255 - image
    found = otsu_watershed(image)
    assert len(found) == len(discs)
    c = centres(found)
    for cx, cy, r in discs:
        d = np.hypot(c[:, 0] - cx, c[:, 1] - cy)
        k = int(np.argmin(d))
        assert d[k] < 1.0
        assert polygon_area(found[k].polygon) == pytest.approx(math.pi * r * r, rel=0.2)
    assert all(i.label == "particle" and i.score is None for i in found)


def test_splits_touching_pairs_and_handles_blank_images():
    pairs = []
    for cx in range(30, 300, 60):
        pairs += [(float(cx), 50.0, 10.0), (cx + 19.0, 50.0, 10.0)]
    assert len(otsu_watershed(disc_image(120, 340, pairs))) == len(pairs)
    assert otsu_watershed(np.full((50, 50, 3), 7, np.uint8)) == []
