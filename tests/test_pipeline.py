"""Sliced inference with a fake (thresholding) TileDetector: tiling, seams, rescale, filters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotations.geometry import polygon_area
from inference.pipeline import PredictOptions, predict_image, tile_geometry
from inference.tiling import default_overlap, plan_tiles
from segmodel.types import Detections, TileDetector
from tests.fake_detector import ThresholdDetector, disc_image


def centroid(poly: np.ndarray) -> tuple[float, float]:
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    return float(((x + xn) * cross).sum() / (6 * a)), float(((y + yn) * cross).sum() / (6 * a))


def match(instances, discs, tol=1.0):
    """For each disc, the instances whose centroid is within tol px of its centre."""
    cents = np.array([centroid(i.polygon) for i in instances]).reshape(-1, 2)
    hits = []
    for cx, cy, _ in discs:
        d = np.hypot(cents[:, 0] - cx, cents[:, 1] - cy) if len(cents) else np.zeros(0)
        hits.append(np.flatnonzero(d <= tol))
    return hits


def random_discs(rng, height, width, n, rmin=4, rmax=9, gap=3):
    discs: list[tuple[float, float, float]] = []
    tries = 0
    while len(discs) < n and tries < 20000:
        tries += 1
        r = float(rng.uniform(rmin, rmax))
        cx, cy = float(rng.uniform(r + 1, width - r - 1)), float(rng.uniform(r + 1, height - r - 1))
        if all(math.hypot(cx - x, cy - y) > r + q + gap for x, y, q in discs):
            discs.append((cx, cy, r))
    return discs


def test_fake_detector_meets_protocol():
    assert isinstance(ThresholdDetector(), TileDetector)


@pytest.mark.parametrize(
    "height,width,tile,overlap", [(500, 700, 128, 32), (128, 128, 128, 32), (90, 300, 128, 40)]
)
def test_tiles_cover_image_and_cores_partition_it(height, width, tile, overlap):
    tiles = plan_tiles(height, width, tile, overlap)
    covered = np.zeros((height, width), int)
    owners = np.zeros((height, width), int)
    yy, xx = np.mgrid[:height, :width]
    for t in tiles:
        assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height
        assert t.width == min(tile, width) and t.height == min(tile, height)
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        c = t.core
        owners += (xx >= c[0]) & (xx < c[2]) & (yy >= c[1]) & (yy < c[3])
        # the core lies inside the tile
        assert max(c[0], 0) >= t.x0 and min(c[2], width) <= t.x1
    assert covered.min() >= 1
    assert (owners == 1).all()
    # neighbours overlap by at least the requested amount
    xs = sorted({t.x0 for t in tiles})
    assert all(b - a <= tile - overlap for a, b in zip(xs, xs[1:], strict=False))


def test_default_overlap_grows_with_object_size_and_is_capped():
    assert default_overlap(256, 10) < default_overlap(256, 30)
    assert default_overlap(256, 10) >= 25
    assert default_overlap(256, 1000) == 128
    assert default_overlap(256, None) == 64


def test_sliced_run_matches_untiled_run():
    rng = np.random.default_rng(1)
    discs = random_discs(rng, 420, 560, 120)
    image = disc_image(420, 560, discs)
    sliced = predict_image(image, ThresholdDetector(tile_size=96), PredictOptions())
    whole = predict_image(image, ThresholdDetector(tile_size=1024), PredictOptions())
    assert whole.tiles == 1 and sliced.tiles > 12
    assert len(whole.instances) == len(discs)
    assert len(sliced.instances) == len(discs)
    assert sliced.stats["merged_away"] > 0  # the overlaps really produced duplicates
    for hit_s, hit_w in zip(match(sliced.instances, discs), match(whole.instances, discs), strict=True):
        assert len(hit_s) == 1 and len(hit_w) == 1
        a_s = polygon_area(sliced.instances[hit_s[0]].polygon)
        a_w = polygon_area(whole.instances[hit_w[0]].polygon)
        assert a_s == pytest.approx(a_w, rel=1e-6)


def test_objects_on_seams_counted_once_and_whole():
    height, width, r = 300, 300, 9.0
    det = ThresholdDetector(tile_size=100)
    options = PredictOptions(overlap=40)
    tiles, _ = tile_geometry((height, width), det, options)
    cuts = sorted({t.core[0] for t in tiles if math.isfinite(t.core[0])})
    starts = {float(t.x0) for t in tiles if t.x0 > 0}
    edges = sorted(starts | {float(t.x1 - 1) for t in tiles if t.x1 < width})
    lines = cuts + edges
    assert len(lines) >= 4
    # discs centred exactly on every cut line and tile edge, on both axes and at crossings
    discs = []
    for i, v in enumerate(lines):
        discs.append((v, 30.0 + 50 * (i % 5), r))
    for i, v in enumerate(lines[::2]):
        discs.append((155.0 + 40 * (i % 2), v, r))
    discs.append((lines[0], lines[-1], r))
    # keep those that do not touch an earlier one
    discs = [d for k, d in enumerate(discs) if all(math.dist(d[:2], e[:2]) > 2 * r + 3 for e in discs[:k])]
    image = disc_image(height, width, discs)
    pred = predict_image(image, det, options)
    full = polygon_area(predict_image(disc_image(40, 40, [(20, 20, r)]), det).instances[0].polygon)
    assert len(pred.instances) == len(discs)
    for hit in match(pred.instances, discs, tol=0.6):
        assert len(hit) == 1
        assert polygon_area(pred.instances[hit[0]].polygon) == pytest.approx(full, rel=0.02)


def test_object_larger_than_the_overlap_is_joined_not_cut():
    # radius 40 disc with 64 px tiles: it is cut by tile edges in every tile
    image = disc_image(200, 200, [(100.0, 100.0, 40.0)])
    pred = predict_image(image, ThresholdDetector(tile_size=64), PredictOptions(overlap=16))
    assert pred.tiles >= 9
    assert len(pred.instances) == 1
    assert polygon_area(pred.instances[0].polygon) == pytest.approx(math.pi * 40**2, rel=0.03)


@pytest.mark.parametrize("rescale", [2.0, 1.5, 0.5])
def test_rescale_is_per_tile_and_maps_back_to_original_pixels(rescale):
    rng = np.random.default_rng(2)
    discs = random_discs(rng, 300, 360, 40, rmin=6, rmax=10)
    image = disc_image(300, 360, discs)
    # level halfway between background and disc: interpolation at the edge moves nothing
    det = ThresholdDetector(rescale=rescale, tile_size=int(128 * rescale), level=120)
    pred = predict_image(image, det, PredictOptions(batch_size=3))
    # the detector saw rescaled tiles of its own size, never the whole image, in batches of 3
    shapes = [s for call in det.calls for s in call]
    assert all(len(call) <= 3 for call in det.calls)
    assert len(shapes) == pred.tiles > 1
    assert all(max(s[:2]) <= round(128 * rescale) + 1 for s in shapes)
    assert len(pred.instances) == len(discs)
    for (_, _, r), hit in zip(discs, match(pred.instances, discs, tol=0.75), strict=True):
        assert len(hit) == 1
        area = polygon_area(pred.instances[hit[0]].polygon)
        # resampling the tile: at 0.5 the thresholded tile itself holds ~7% fewer pixels (pixels at
        # exactly half cover fall below `level`), and outlines now have exactly the mask's area
        assert area == pytest.approx(math.pi * r * r, rel=0.25 if rescale < 1 else 0.07)


def test_threshold_class_and_min_size_filters():
    dim = [(40.0, 40.0, 8.0)]  # value 120 -> score 0.47
    mid = [(100.0, 40.0, 8.0), (160.0, 40.0, 8.0)]  # 180 -> 0.71, class "a"
    bright = [(40.0, 120.0, 8.0)]  # 240 -> class "b"
    tiny = [(120.0, 120.0, 0.6)]  # one pixel
    image = disc_image(200, 200, mid + tiny)
    image = np.maximum(image, disc_image(200, 200, dim, value=120))
    image = np.maximum(image, disc_image(200, 200, bright, value=240))
    image[image == 220] = 180
    det = ThresholdDetector(classes=("a", "b"), tile_size=128)

    everything = predict_image(image, det, PredictOptions(threshold=0.0, min_area_px=0))
    assert len(everything.instances) == 5
    default = predict_image(image, det, PredictOptions())
    assert len(default.instances) == 3  # dim dropped by threshold, tiny by min_area_px
    assert default.stats["too_small"] == 1
    assert all(i.score >= 0.5 for i in default.instances)
    only_b = predict_image(image, det, PredictOptions(classes={"b"}))
    assert [i.label for i in only_b.instances] == ["b"]
    assert centroid(only_b.instances[0].polygon) == pytest.approx((40.0, 120.0), abs=0.5)
    with pytest.raises(ValueError, match="unknown class"):
        predict_image(image, det, PredictOptions(classes={"zebra"}))


def test_gray_image_progress_and_empty_result():
    image = disc_image(150, 260, [(50.0, 50.0, 6.0)])[:, :, 0]
    seen: list[tuple[int, int]] = []
    pred = predict_image(
        image, ThresholdDetector(tile_size=64), PredictOptions(), progress=lambda d, t: seen.append((d, t))
    )
    assert len(pred.instances) == 1 and pred.instances[0].label == "particle"
    assert seen[0] == (0, pred.tiles) and seen[-1] == (pred.tiles, pred.tiles)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    blank = predict_image(np.zeros((80, 80, 3), np.uint8), ThresholdDetector(tile_size=64))
    assert blank.instances == [] and blank.n_refined == 0


def test_detector_returning_masks_outside_boxes_and_empty_masks():
    class Sloppy:
        classes = ["x"]
        rescale = 1.0
        tile_size = 64

        def detect(self, tiles):
            out = []
            for t in tiles:
                h, w = t.shape[:2]
                masks = np.zeros((2, h, w), bool)
                masks[0, 10:20, 30:45] = True  # box below says (0, 0, 5, 5): wrong
                out.append(Detections([[0, 0, 5, 5], [1, 1, 2, 2]], [0.9, 0.9], [0, 0], masks))
            return out

    # edge_pad 0: Sloppy's masks sit at fixed tile pixels
    pred = predict_image(np.zeros((64, 64, 3), np.uint8), Sloppy(), PredictOptions(edge_pad=0))
    assert len(pred.instances) == 1
    assert polygon_area(pred.instances[0].polygon) == pytest.approx(150)


def test_detections_validate_shapes():
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2), np.zeros((2, 4, 4), bool))
    assert len(Detections.empty(8, 8)) == 0


@pytest.mark.slow
def test_thousands_of_objects():
    # 4,356 discs on a 1,320 px square image, seen through 256 px tiles
    discs = [(10.0 + 20 * i + (j % 2) * 3, 10.0 + 20 * j, 5.0) for i in range(66) for j in range(66)]
    image = disc_image(1320, 1320, discs)
    det = ThresholdDetector(tile_size=256, object_size=10)
    pred = predict_image(image, det, PredictOptions(batch_size=8))
    assert len(pred.instances) == len(discs)
    hits = match(pred.instances, discs, tol=0.5)
    assert all(len(h) == 1 for h in hits)
    assert pred.seconds < 60


def test_merge_settles_as_it_goes_and_tile_order_does_not_matter():
    from inference.merge import CandidateSet
    from inference.pipeline import iter_tile_batches

    rng = np.random.default_rng(5)
    discs = random_discs(rng, 600, 600, 150)
    image = disc_image(600, 600, discs)
    det = ThresholdDetector(tile_size=128)
    tiles, scale = tile_geometry(image.shape, det, PredictOptions())
    per_row = max(t.col for t in tiles) + 1
    results = {}
    for order in ("rows", "shuffled"):
        seq = list(tiles) if order == "rows" else [tiles[i] for i in rng.permutation(len(tiles))]
        cs = CandidateSet(tiles)
        holding = []
        for batch in iter_tile_batches(image, seq, scale, 1):
            (tile, pixels, sx, sy), = batch
            cs.add(tile, det.detect([pixels])[0], sx, sy, 0.5, None)
            holding.append(sum(m is not None for m in cs.mask))
        merged = cs.resolve()
        assert all(m is None for m in cs.mask) and all(p is None for p in cs.polygon)
        results[order] = sorted((round(float(c[0]), 3), round(float(c[1]), 3)) for c in
                                (centroid(m.polygon.astype(np.float64)) for m in merged))
        if order == "rows":
            # masks are kept only for candidates of roughly the last two rows of tiles
            per_tile = len(cs) / len(tiles)
            assert max(holding) <= 2.5 * per_row * per_tile
    assert len(results["rows"]) == len(discs)
    assert results["rows"] == results["shuffled"]


class EdgeShy(ThresholdDetector):
    """Like the trained model: finds whole blobs, misses those cut by the tile's edge."""

    def detect(self, tiles):
        out = []
        for det in super().detect(tiles):
            m = det.masks
            keep = ~(m[:, 0].any(axis=1) | m[:, -1].any(axis=1) | m[:, :, 0].any(axis=1)
                     | m[:, :, -1].any(axis=1))
            out.append(Detections(det.boxes[keep], det.scores[keep], det.labels[keep], m[keep]))
        return out


def test_particles_cut_by_the_image_border_are_found_by_mirroring_it():
    # one disc cut by the left border (centre 4 px outside the image), one whole disc near the right one
    image = disc_image(120, 160, [(-4, 60, 14), (140, 40, 12), (80, 90, 10)])
    plain = predict_image(image, EdgeShy(tile_size=256), PredictOptions(edge_pad=0))
    assert len(plain.instances) == 2  # the cut disc is missed
    mirrored = predict_image(image, EdgeShy(tile_size=256), PredictOptions(edge_pad=20))
    assert len(mirrored.instances) == 3 and mirrored.stats["edge_pad"] == 20
    cut = min(mirrored.instances, key=lambda i: i.polygon[:, 0].mean())
    assert cut.polygon[:, 0].min() >= -0.5 and cut.polygon[:, 0].max() < 12  # clipped to the image
    visible = int((image[:, :, 0] > 100)[:, :20].sum())  # the cut disc's pixels on the image
    assert polygon_area(cut.polygon) == pytest.approx(visible, rel=0.08)
    # the whole discs come back unchanged and their reflections are not reported
    key = lambda i: tuple(np.round(i.polygon.mean(axis=0)))  # noqa: E731
    whole = sorted(mirrored.instances, key=key)[1:]
    for a, b in zip(sorted(plain.instances, key=key), whole, strict=True):
        assert np.allclose(a.polygon, b.polygon)


def test_edge_pad_follows_the_object_size_and_fits_small_images():
    from inference.pipeline import edge_pad

    det = ThresholdDetector(object_size=50.0)
    assert edge_pad((500, 500), det, PredictOptions()) == 30
    assert edge_pad((500, 500), ThresholdDetector(), PredictOptions()) == 16  # size unknown
    assert edge_pad((10, 500), det, PredictOptions()) == 9  # reflection needs pad < side
    assert edge_pad((500, 500), det, PredictOptions(edge_pad=0)) == 0


class PartsToo(ThresholdDetector):
    """Each blob, and its left half as a second, less sure detection: a fragment inside the particle."""

    def detect(self, tiles):
        out = []
        for det in super().detect(tiles):
            halves = det.masks.copy()
            for m, box in zip(halves, det.boxes, strict=True):
                m[:, int((box[0] + box[2]) / 2):] = False
            out.append(Detections(boxes=np.concatenate([det.boxes, det.boxes]),
                                  scores=np.concatenate([det.scores, det.scores * 0.8]),
                                  labels=np.concatenate([det.labels, det.labels]),
                                  masks=np.concatenate([det.masks, halves])))
        return out


def test_fragments_of_one_particle_are_joined_when_asked():
    discs = [(30.0 + 35 * k, 40.0, 10.0) for k in range(5)]
    image = disc_image(100, 200, discs)
    det = PartsToo(tile_size=256)
    plain = predict_image(image, det, PredictOptions(threshold=0.3, edge_pad=0, fragments=False))
    joined = predict_image(image, det, PredictOptions(threshold=0.3, edge_pad=0))  # the default
    assert len(plain.instances) == 10 and plain.stats["fragments_joined"] == 0
    assert len(joined.instances) == 5 and joined.stats["fragments_joined"] == 5
    for inst, (cx, cy, r) in zip(sorted(joined.instances, key=lambda i: i.polygon[:, 0].mean()), discs,
                                 strict=True):
        assert centroid(inst.polygon) == pytest.approx((cx, cy), abs=1.0)
        assert polygon_area(inst.polygon) == pytest.approx(math.pi * r * r, rel=0.1)


class _WithWeakDuplicates:
    """ThresholdDetector whose every detection comes back twice, the copy at half the score (a kept
    object's weaker duplicate must not read as a doubt)."""

    def __init__(self, inner: ThresholdDetector) -> None:
        self.inner = inner
        self.classes, self.rescale, self.tile_size = inner.classes, inner.rescale, inner.tile_size
        self.object_size = inner.object_size

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        twice = np.concatenate
        return [Detections(boxes=twice([d.boxes, d.boxes]), scores=twice([d.scores, d.scores / 2]),
                           labels=twice([d.labels, d.labels]), masks=twice([d.masks, d.masks]))
                for d in self.inner.detect(tiles)]


def _centres(instances) -> np.ndarray:
    return np.array(sorted(centroid(i.polygon) for i in instances))


def test_detections_under_the_threshold_are_kept_apart_when_asked():
    """options.unsure_floor: what the model found under the threshold comes back as Prediction.unsure,
    in the image's pixels through the mirrored border and an excluded band, and the kept outlines are
    the same as without it."""
    bright = [(60.0, 70.0, 9.0), (130.0, 150.0, 9.0), (200.0, 90.0, 9.0)]  # 220 -> 0.86
    # 120 -> 0.47: one inside, one cut by the image's edge, one in the band excluded below
    dim = [(100.0, 210.0, 9.0), (3.0, 150.0, 9.0), (170.0, 20.0, 9.0)]
    image = np.maximum(disc_image(256, 256, bright), disc_image(256, 256, dim, value=120))
    det = _WithWeakDuplicates(ThresholdDetector(tile_size=96, object_size=18.0))
    plain = predict_image(image, det, PredictOptions(threshold=0.6))
    asked = predict_image(image, det, PredictOptions(threshold=0.6, unsure_floor=0.3))
    assert plain.unsure == []
    assert [centroid(i.polygon) for i in asked.instances] == [centroid(i.polygon) for i in plain.instances]
    assert _centres(plain.instances) == pytest.approx(np.array(sorted((x, y) for x, y, _ in bright)), abs=0.5)
    # the dim discs (0.47) and nothing of the bright ones' duplicates (0.43, centred in kept outlines)
    found = _centres(asked.unsure)
    assert len(found) == 3 and all(0.4 < i.score < 0.6 for i in asked.unsure)
    assert found[0] == pytest.approx((4.6, 150.0), abs=1.0)  # the part on the image, not its reflection
    assert found[1:] == pytest.approx(np.array([(100.0, 210.0), (170.0, 20.0)]), abs=0.5)
    options = PredictOptions(threshold=0.6, unsure_floor=0.3, exclude=[(0, 0, 256, 40)])
    bar = predict_image(image, det, options)
    assert _centres(bar.unsure)[1:] == pytest.approx(np.array([(100.0, 210.0)]), abs=0.5)
    assert len(bar.unsure) == 2 and len(bar.instances) == 3
