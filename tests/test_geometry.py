"""One pixel convention for every polygon <-> mask step: pixel (row i, column j) is centred at (x=j, y=i).

Shapes go polygon -> mask -> polygon along every path the data takes: LabelMe mask shapes and
instance maps (what training reads), the training rasteriser, and the inference outlines (tile
merge, the Otsu baseline). A half-pixel slip anywhere moves a centroid by 0.5 px; an inclusive
fill (cv2.fillPoly) grows D by about a pixel.
"""

from __future__ import annotations

import base64
import json
import math

import cv2
import numpy as np
import pytest

from annotations.geometry import (
    area_centroid_perimeter,
    image_frame,
    mask_to_polygon,
    polygon_area,
    polygon_to_mask,
)
from annotations.instance_maps import read_instance_map
from annotations.labelme import read_labelme
from annotations.model import AnnotatedImage, Crop, Instance
from inference.baseline import otsu_watershed
from inference.pipeline import PredictOptions, predict_image
from tests.fake_detector import ThresholdDetector

H, W = 130, 140
# (cx, cy, a, b, angle): discs and ellipses at non-integer centres, well apart
SHAPES = [
    (20.3, 30.7, 6.4, 6.4, 0.0),
    (61.55, 28.2, 9.7, 9.7, 0.0),
    (40.25, 80.6, 14.2, 14.2, 0.0),
    (95.4, 85.35, 13.1, 7.3, 0.6),
    (110.7, 30.1, 10.4, 5.6, 2.1),
    (20.6, 112.45, 8.2, 4.1, 1.1),
]
DOT = (77, 58)  # a single pixel: x = column, y = row


def ellipse(cx: float, cy: float, a: float, b: float, angle: float, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


POLYGONS = [ellipse(*s) for s in SHAPES]


def d_and_centre(polygon: np.ndarray) -> tuple[float, np.ndarray]:
    area, centre, _ = area_centroid_perimeter([polygon])
    return 2 * math.sqrt(area[0] / math.pi), centre[0]


def pixel_d_and_centre(mask: np.ndarray) -> tuple[float, np.ndarray]:
    ys, xs = np.nonzero(mask)
    return 2 * math.sqrt(len(xs) / math.pi), np.array([xs.mean(), ys.mean()])


def assert_recovered(found: list[np.ndarray], truth: list[np.ndarray], d_tol: float = 0.1) -> None:
    """Each found outline matches its shape: D to 0.1 px, centroid to 0.2 px (the digitisation of a
    skewed ellipse moves it by ~0.1), and to 0.1 px on average (a half-pixel slip shows as 0.5)."""
    shifts = []
    for poly, ref in zip(found, truth, strict=True):
        d, c = d_and_centre(poly)
        d_ref, c_ref = d_and_centre(ref)
        assert d == pytest.approx(d_ref, abs=d_tol)
        assert np.abs(c - c_ref).max() < 0.2
        shifts.append(c - c_ref)
    assert np.abs(np.mean(shifts, axis=0)).max() < 0.1


def nearest(polygons: list[np.ndarray], truth: list[np.ndarray]) -> list[np.ndarray]:
    centres = area_centroid_perimeter(polygons)[1]
    return [polygons[int(np.argmin(np.hypot(*(centres - d_and_centre(t)[1]).T)))] for t in truth]


def scene_masks() -> list[np.ndarray]:
    return [polygon_to_mask(p, H, W) for p in POLYGONS]


def bright_image(masks: list[np.ndarray]) -> np.ndarray:
    gray = np.full((H, W), 20, np.uint8)
    for m in masks:
        gray[m] = 220
    return np.repeat(gray[:, :, None], 3, axis=2)


# ------------------------------------------------------------------ the two primitives


def test_pixel_centres_decide_what_a_polygon_covers():
    # a 3 x 3 px square on the pixel edges: pixels 2..4 exactly (cv2.fillPoly gives 4 x 4)
    square = np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 4.5], [1.5, 4.5]])
    mask = polygon_to_mask(square, 8, 8)
    assert mask.sum() == 9 and mask[2:5, 2:5].all()
    # offset: the same square cut from a window whose top-left pixel is (1, 2)
    assert np.array_equal(polygon_to_mask(square, 8, 8, offset=(1, 2))[0:3, 1:4], np.ones((3, 3), bool))
    # shapes sharing an edge through pixel centres share no pixel and leave none out
    left = np.array([[0, 0], [5, 0], [5, 5], [0, 5]], float)
    right = np.array([[5, 0], [9, 0], [9, 5], [5, 5]], float)
    a, b = polygon_to_mask(left, 10, 10), polygon_to_mask(right, 10, 10)
    assert not (a & b).any() and a.sum() == 5 * 5 and (a | b).sum() == 9 * 5


def test_one_pixel_and_small_blobs_are_centred_on_their_pixels():
    mask = np.zeros((9, 11), bool)
    mask[4, 7] = True
    poly = mask_to_polygon(mask)
    assert polygon_area(poly) == pytest.approx(1.0)
    assert d_and_centre(poly)[1].tolist() == pytest.approx([7, 4], abs=1e-9)
    assert poly.min(axis=0).tolist() == pytest.approx([6.5, 3.5])
    assert poly.max(axis=0).tolist() == pytest.approx([7.5, 4.5])
    blobs = {
        "diagonal pair": [(2, 2), (3, 3)],
        "L of three": [(2, 2), (2, 3), (3, 2)],
        "plus": [(3, 2), (2, 3), (3, 3), (4, 3), (3, 4)],
        "bar": [(2, 1), (2, 2), (2, 3), (2, 4)],
    }
    for name, pixels in blobs.items():
        mask = np.zeros((7, 7), bool)
        rows, cols = zip(*pixels, strict=True)
        mask[rows, cols] = True
        poly = mask_to_polygon(mask, offset=(10, 20))
        _, centre = d_and_centre(poly)
        assert polygon_area(poly) == pytest.approx(len(pixels)), name
        assert centre.tolist() == pytest.approx([10 + np.mean(cols), 20 + np.mean(rows)], abs=1e-9), name


def test_mask_outline_has_exactly_the_pixels_area_and_centroid():
    for mask in scene_masks():
        d_pix, c_pix = pixel_d_and_centre(mask)
        d, c = d_and_centre(mask_to_polygon(mask))
        assert d == pytest.approx(d_pix, abs=1e-9) and c.tolist() == pytest.approx(c_pix.tolist(), abs=1e-9)
        # and rasterised again it covers (nearly) the same pixels
        back = polygon_to_mask(mask_to_polygon(mask), H, W)
        assert (back ^ mask).sum() <= 0.03 * mask.sum()
    # an outline along the image border stops at the border's pixel edges
    edge = np.zeros((20, 30), bool)
    edge[:, :4] = True
    x0, y0, _, y1 = image_frame(30, 20)
    poly = mask_to_polygon(edge)
    assert poly.min(axis=0).tolist() == pytest.approx([x0, y0]) and poly[:, 1].max() == pytest.approx(y1)


# ------------------------------------------------------------------ (a) what training reads


def _mask_shape(mask: np.ndarray, label: str = "particle") -> dict:
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
    crop = mask[y1 : y2 + 1, x1 : x2 + 1].astype(np.uint8) * 255
    data = base64.b64encode(cv2.imencode(".png", crop)[1].tobytes()).decode()
    return {"label": label, "points": [[int(x1), int(y1)], [int(x2), int(y2)]], "shape_type": "mask",
            "group_id": None, "flags": {}, "mask": data}


def _labelme(shapes: list[dict]) -> bytes:
    png = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))[1].tobytes()
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "a.png",
           "imageData": base64.b64encode(png).decode(), "imageHeight": H, "imageWidth": W}
    return json.dumps(doc).encode()


def test_labelme_mask_shapes_round_trip_on_pixel_centres():
    dot = np.zeros((H, W), bool)
    dot[DOT[1], DOT[0]] = True
    ann = read_labelme(_labelme([_mask_shape(m) for m in [*scene_masks(), dot]]), name="a.json")
    assert not ann.notes  # nothing clipped or repaired
    assert_recovered([i.polygon for i in ann.instances[:-1]], POLYGONS)
    assert d_and_centre(ann.instances[-1].polygon)[1].tolist() == pytest.approx(DOT, abs=1e-9)


def test_instance_maps_round_trip_on_pixel_centres(tmp_path):
    seg = np.zeros((H, W), np.uint16)
    for k, mask in enumerate(scene_masks(), start=1):
        seg[mask] = k
    seg[DOT[1], DOT[0]] = len(SHAPES) + 1
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((H, W, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "seg.png"), seg)
    ann = read_instance_map(tmp_path / "img.png", tmp_path / "seg.png")
    assert len(ann.instances) == len(SHAPES) + 1
    assert_recovered([i.polygon for i in ann.instances[:-1]], POLYGONS)
    assert d_and_centre(ann.instances[-1].polygon)[1].tolist() == pytest.approx(DOT, abs=1e-9)


@pytest.mark.parametrize("rescale", [1.0, 2.0])
def test_training_masks_are_the_pixels_a_polygon_encloses(rescale):
    from trainer.dataset import build_regions

    image = np.zeros((H, W, 3), np.uint8)
    ann = AnnotatedImage("a.png", image, [Instance("p", p) for p in POLYGONS], crops=[Crop(0, 0, W, H)])
    (region,) = build_regions([ann], ["p"], rescale=rescale)
    assert len(region.masks) == len(POLYGONS)
    # the rescaled image puts original pixel centre j at (j + 0.5) * rescale - 0.5, as cv2.resize does
    for mask, poly in zip(region.masks, POLYGONS, strict=True):
        d, c = pixel_d_and_centre(mask)
        d_ref, c_ref = d_and_centre((poly + 0.5) * rescale - 0.5)
        assert d == pytest.approx(d_ref, abs=0.1 * rescale)
        assert np.abs(c - c_ref).max() < 0.2 * rescale


# ------------------------------------------------------------------ (b) what inference outputs


@pytest.mark.parametrize("tile, rescale", [(256, 1.0), (64, 1.0), (512, 2.0)])
def test_predicted_outlines_round_trip_on_pixel_centres(tile, rescale):
    # 64: overlapping tiles, some shapes outlined from merged cross-tile masks; 2.0: from upscaled tiles
    masks = scene_masks()
    dot = np.zeros((H, W), bool)
    dot[DOT[1], DOT[0]] = True
    image = bright_image([*masks, dot])
    detector = ThresholdDetector(tile_size=tile, rescale=rescale, level=120)  # level: halfway
    # threshold 0.5: the fake scores brightness / 255, and the upscaled dot's mean is below 0.7
    pred = predict_image(image, detector, PredictOptions(threshold=0.5, min_area_px=0))
    assert (pred.tiles > 1) == (tile == 64)
    polygons = [i.polygon for i in pred.instances]
    assert len(polygons) == len(SHAPES) + 1
    assert_recovered(nearest(polygons, POLYGONS), POLYGONS)
    (dot_poly,) = [p for p in polygons if polygon_area(p) < 2 * rescale]
    assert d_and_centre(dot_poly)[1].tolist() == pytest.approx(DOT, abs=1e-6)


def test_baseline_outlines_round_trip_on_pixel_centres():
    discs = [p for p, s in zip(POLYGONS, SHAPES, strict=True) if s[2] == s[3]]  # watershed splits ellipses
    image = bright_image([polygon_to_mask(p, H, W) for p in discs])
    found = otsu_watershed(image, sigma=0.0, min_distance=5)
    assert len(found) == len(discs)
    # its 3 x 3 opening trims the one-pixel tips of a digitised disc: D up to 0.3 px smaller
    assert_recovered(nearest([i.polygon for i in found], discs), discs, d_tol=0.3)
