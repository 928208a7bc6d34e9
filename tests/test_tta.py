"""Test-time augmentation: flipped views come back in place, flukes are voted out, agreement kept."""

from __future__ import annotations

import numpy as np
import pytest

from inference.pipeline import PredictOptions, predict_image
from inference.tta import FlipTTA, vote
from segmodel.types import Detections
from tests.fake_detector import ThresholdDetector, disc_image


class OneViewFluke(ThresholdDetector):
    """Finds the blobs like ThresholdDetector and, in the unflipped view only, one extra 'object'
    in the top-left corner (something a single view gets wrong)."""

    def detect(self, tiles):
        out = super().detect(tiles)
        fixed = []
        for tile, det in zip(tiles, out, strict=True):
            h, w = tile.shape[:2]
            if tile[2, 2, 0] != 7:  # the marker pixel is only top-left in the unflipped view
                fixed.append(det)
                continue
            fluke = np.zeros((1, h, w), bool)
            fluke[0, 0:6, 0:6] = True
            fixed.append(Detections(boxes=np.vstack([det.boxes, [[0, 0, 6, 6]]]),
                                    scores=np.append(det.scores, 0.95), labels=np.append(det.labels, 0),
                                    masks=np.concatenate([det.masks, fluke])))
        return fixed


def test_an_equivariant_detector_gives_the_same_objects_with_and_without_tta():
    image = disc_image(200, 260, [(40, 50, 9), (150, 60, 12), (90, 150, 7), (220, 170, 10)])
    plain = predict_image(image, ThresholdDetector(tile_size=256), PredictOptions(threshold=0.5))
    tta = predict_image(image, FlipTTA(ThresholdDetector(tile_size=256)), PredictOptions(threshold=0.5))
    assert len(plain.instances) == len(tta.instances) == 4

    def key(inst):
        return tuple(np.round(inst.polygon.mean(axis=0), 1))

    for a, b in zip(sorted(plain.instances, key=key), sorted(tta.instances, key=key), strict=True):
        assert np.allclose(a.polygon.mean(axis=0), b.polygon.mean(axis=0), atol=0.01)
        assert a.score == pytest.approx(b.score, abs=1e-6)


def test_masks_and_boxes_of_flipped_views_are_put_back_where_the_object_is():
    image = disc_image(64, 96, [(20, 12, 5)])  # far from every axis of symmetry
    tta = FlipTTA(ThresholdDetector(tile_size=96), views=("hv",), min_views=1)
    [det] = tta.detect([image])
    [ref] = ThresholdDetector(tile_size=96).detect([image])
    assert np.array_equal(det.masks, ref.masks)
    rows, cols = np.nonzero(det.masks[0])
    assert det.boxes[0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_an_object_one_view_alone_reports_is_voted_out():
    image = disc_image(80, 80, [(50, 50, 8)])
    image[2, 2] = 7  # marks the unflipped view for the fluke detector
    [single] = OneViewFluke(tile_size=80).detect([image])
    assert len(single) == 2
    [voted] = FlipTTA(OneViewFluke(tile_size=80)).detect([image])
    assert len(voted) == 1
    assert voted.masks[0, 50, 50] and not voted.masks[0, 3, 3]


def test_scores_average_over_all_views_and_masks_take_the_majority():
    h = w = 20
    full = np.zeros((h, w), bool)
    full[5:15, 5:15] = True
    wider = full.copy()
    wider[5:15, 15] = True  # one view's ragged edge

    def det(mask, score):
        return Detections(boxes=[[5, 5, 16, 15]], scores=[score], labels=[0], masks=mask[None])

    merged = vote([det(full, 0.9), det(full, 0.7), det(wider, 0.8), Detections.empty(h, w)], min_views=2)
    assert len(merged) == 1
    assert merged.scores[0] == pytest.approx((0.9 + 0.7 + 0.8) / 4)
    assert np.array_equal(merged.masks[0], full)  # the column only one view drew is not kept
    assert len(vote([det(full, 0.9)] + [Detections.empty(h, w)] * 3, min_views=2)) == 0


def test_unknown_views_are_refused():
    with pytest.raises(ValueError, match="unknown views"):
        FlipTTA(ThresholdDetector(), views=("rot45",))
