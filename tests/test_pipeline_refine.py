"""Gaussian contour refinement (Okunev et al., Nanomaterials 2020, eq. 2 + half-height rule) on
synthetic blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotations.geometry import mask_to_polygon, polygon_area
from annotations.model import Instance
from inference.pipeline import PredictOptions, predict_image
from inference.refine import fit_instance, refine_instances
from tests.fake_detector import ThresholdDetector


def blobs(h, w, specs, noise=4.0, seed=0, base=30.0, amp=180.0, dark=False):
    """Gaussian height map (eq. 2 with sx = sy) whose half height lies at radius R, as uint8 RGB."""
    yy, xx = np.mgrid[:h, :w].astype(float)
    height = np.full((h, w), base)
    for cx, cy, r in specs:
        s = r / math.sqrt(math.log(2))
        height += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / s**2)
    height += np.random.default_rng(seed).normal(0, noise, height.shape)
    if dark:
        height = 255 - height
    gray = np.clip(height, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def circle(cx, cy, r, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def radius(poly):
    return math.sqrt(polygon_area(poly) / math.pi)


@pytest.mark.parametrize("r", [4.0, 7.0, 12.0])
@pytest.mark.parametrize("guess", [0.85, 1.0, 1.3])
@pytest.mark.parametrize("dark", [False, True])
def test_fit_recovers_half_height_radius_from_a_rough_contour(r, guess, dark):
    image = blobs(100, 100, [(50.3, 49.6, r)], dark=dark, seed=int(r * 10 + guess * 3))
    out = fit_instance(image, circle(50.0, 50.0, r * guess), [])
    assert out.reason == "ok"
    assert radius(out.polygon) == pytest.approx(r, rel=0.12)
    centre = out.polygon.mean(axis=0)
    assert centre == pytest.approx((50.3, 49.6), abs=0.5)


def test_fit_falls_back_on_a_clumped_pair_and_flat_noise():
    image = blobs(100, 100, [(40.0, 50.0, 8.0), (60.0, 50.0, 8.0)])
    pair = mask_to_polygon(image[:, :, 0] > 100)  # one contour around both
    out = fit_instance(image, pair, [])
    assert out.polygon is None and "clumped" in out.reason
    noise = blobs(100, 100, [], noise=20)
    assert fit_instance(noise, circle(50, 50, 8), []).polygon is None
    assert fit_instance(noise, circle(50, 50, 1.5), []).reason == "too small"


def test_refine_instances_counts_and_keeps_failures_unchanged():
    specs = [(30.0, 30.0, 6.0), (80.0, 30.0, 9.0), (30.0, 80.0, 5.0)]
    image = blobs(120, 120, specs + [(70.0, 85.0, 8.0), (90.0, 85.0, 8.0)])
    pair = mask_to_polygon(image[60:, 50:, 0] > 100)
    pair = pair + np.array([50.0, 60.0])
    instances = [Instance("p", circle(cx, cy, r * 1.2), 0.9) for cx, cy, r in specs]
    instances.append(Instance("p", pair, 0.8))
    refined, n = refine_instances(image, instances)
    assert n == 3
    for (_, _, r), inst in zip(specs, refined, strict=False):
        assert radius(inst.polygon) == pytest.approx(r, rel=0.12)
        assert inst.label == "p" and inst.score == 0.9
    assert refined[3] is instances[3]  # the clumped pair keeps its predicted contour


def test_close_neighbours_are_left_out_of_the_fit():
    # two blobs close together: each fit must ignore the other's pixels
    specs = [(45.0, 50.0, 7.0), (63.0, 50.0, 7.0)]
    image = blobs(100, 100, specs)
    instances = [Instance("p", circle(cx, cy, r), None) for cx, cy, r in specs]
    refined, n = refine_instances(image, instances)
    assert n == 2
    for (cx, _, r), inst in zip(specs, refined, strict=True):
        assert radius(inst.polygon) == pytest.approx(r, rel=0.08)
        assert inst.polygon[:, 0].mean() == pytest.approx(cx, abs=0.7)
    # fitting the same blob without knowing its neighbour is pulled towards it
    alone = fit_instance(image, instances[0].polygon, [])
    assert abs(alone.polygon[:, 0].mean() - 45.0) > 2 * abs(refined[0].polygon[:, 0].mean() - 45.0)


def test_pipeline_reports_refined_count():
    specs = [(40.0, 40.0, 7.0), (100.0, 50.0, 9.0), (60.0, 110.0, 6.0)]
    image = blobs(160, 160, specs)
    det = ThresholdDetector(tile_size=96, level=135)  # outlines ~15% too small on purpose
    # threshold 0.5: the fake scores brightness / 255, and these blobs' mean is below the default 0.7
    plain = predict_image(image, det, PredictOptions(threshold=0.5))
    refined = predict_image(image, det, PredictOptions(threshold=0.5, refine=True))
    assert plain.n_refined == 0 and refined.n_refined == 3
    assert refined.stats["refine_failed"] == 0
    for a, b in zip(plain.instances, refined.instances, strict=True):
        assert radius(b.polygon) > radius(a.polygon)
    got = sorted(radius(i.polygon) for i in refined.instances)
    assert got == pytest.approx(sorted(r for _, _, r in specs), rel=0.15)
