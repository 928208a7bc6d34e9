"""Centre-rule counting, COCO AP (checked against plain pycocotools), size accuracy, folder pairing."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations.geometry import circle_polygon
from annotations.model import AnnotatedImage, AnnotationError, Crop, Instance
from measures.evaluation import (
    _coco_datasets,
    _coco_eval_class,
    coco_ap,
    evaluate,
    format_evaluation,
    match_centre_rule,
    size_accuracy,
)


def sq(x, y, s, label="p", score=None):
    return Instance(label, np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], float), score)


def grid(n, step=20, size=10, label="p"):
    side = int(np.ceil(np.sqrt(n)))
    return [sq((k % side) * step, (k // side) * step, size, label) for k in range(n)]


def test_self_and_missing_every_tenth():
    gt = grid(100)
    assert match_centre_rule(gt, gt).as_dict() == {
        "tp": 100,
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    partial = [g for k, g in enumerate(gt) if k % 10 != 9]
    s = match_centre_rule(partial, gt)
    assert (s.tp, s.fp, s.fn, s.precision, s.recall) == (90, 0, 10, 1.0, 0.9)


def test_two_predictions_in_one_gt_and_one_prediction_over_three():
    gt = [sq(0, 0, 10), sq(20, 0, 10), sq(40, 0, 10)]
    s = match_centre_rule([sq(1, 1, 3), sq(5, 5, 3)], gt)
    assert (s.tp, s.fp, s.fn) == (1, 1, 2)
    big = Instance("p", np.array([[0, 0], [50, 0], [50, 10], [0, 10]], float))  # centre (25, 5): inside GT 2
    s = match_centre_rule([big], gt)
    assert (s.tp, s.fp, s.fn) == (1, 0, 2)
    between = Instance("p", np.array([[0, 0], [60, 0], [60, 10], [0, 10]], float))  # centre (30, 5): no GT
    s = match_centre_rule([between], gt)
    assert (s.tp, s.fp, s.fn) == (0, 1, 3)


def test_overlapping_gts_best_assignment():
    gt = [sq(0, 0, 10), sq(2, 2, 10)]  # a centre at (6, 6) lies in both
    s = match_centre_rule([sq(4, 4, 4, score=0.9), sq(5, 5, 2, score=0.8)], gt)
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    # the first prediction lies in both GTs, the second only in GT 0: both still count
    s = match_centre_rule([sq(5, 5, 2), sq(0.5, 0.5, 1)], gt)
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    # one GT, two candidates: one TP, one FP
    s = match_centre_rule([sq(1, 1, 2, score=0.2), sq(5, 5, 2, score=0.9)], [sq(0, 0, 10)])
    assert (s.tp, s.fp) == (1, 1)


def _box(x0, y0, x1, y1, shape=(64, 64)):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _greedy_first_hit_tp(pred: np.ndarray, gt: np.ndarray) -> int:
    """The trainer's former rule: each prediction takes the first unmatched GT under its centroid."""
    taken = np.zeros(len(gt), bool)
    for mask in pred:
        ys, xs = np.nonzero(mask)
        hits = np.flatnonzero(gt[:, round(ys.mean()), round(xs.mean())] & ~taken)
        if len(hits):
            taken[hits[0]] = True
    return int(taken.sum())


def test_trainer_holdout_scores_are_the_evaluators_figures():
    """Overlapping GTs, where a greedy first hit and the maximum matching differ: the held-out metrics
    the trainer writes into a model card are what the evaluator (`segbot eval`) reports."""
    from measures.evaluation import instances_from_masks
    from trainer.train import holdout_scores

    gt = np.stack([_box(10, 10, 50, 30), _box(10, 10, 30, 50)])  # they overlap in [10, 30)^2
    # centre (20, 20) lies in both GTs, centre (40, 20) only in GT 0; an empty mask is no object
    pred = np.stack([_box(18, 18, 23, 23), _box(38, 18, 43, 23), _box(0, 0, 0, 0)])
    assert _greedy_first_hit_tp(pred[:2], gt) == 1  # the case tells the two rules apart
    expected = match_centre_rule(instances_from_masks(pred), instances_from_masks(gt))
    assert (expected.tp, expected.fp, expected.fn) == (2, 0, 0)
    assert holdout_scores(pred, gt) == {**expected.as_dict(), "f1_low": 1.0, "f1_high": 1.0, "n_pred": 2,
                                        "n_gt": 2}  # 2 of 2 right: no other crop outcome was seen
    s = holdout_scores(pred[1:2], gt)  # one prediction: the other GT is missed
    assert (s["tp"], s["fp"], s["fn"], s["precision"], s["recall"]) == (1, 0, 1, 1.0, 0.5)


def test_empty_sets():
    assert match_centre_rule([], []).precision == 1.0
    s = match_centre_rule([], grid(3))
    assert (s.recall, s.fn) == (0.0, 3)
    s = match_centre_rule(grid(3), [])
    assert (s.precision, s.fp) == (0.0, 3)


def test_size_accuracy_table4():
    gt = [Instance("p", circle_polygon(50 * k, 0, 10, 128)) for k in range(5)]
    pred = [Instance("p", circle_polygon(50 * k, 0, 9, 128)) for k in range(5)]
    acc = size_accuracy(pred, gt, nm_per_px=0.5)
    assert acc["all"]["accuracy"] == pytest.approx(0.9, rel=1e-6)
    assert acc["p"]["mean_d_gt_nm"] == pytest.approx(10.0, rel=1e-6)


def _random_sets(seed: int, n: int):
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for k in range(n):
        x, y, r = rng.uniform(20, 280), rng.uniform(20, 180), rng.uniform(3, 12)
        label = "a" if k % 3 else "b"
        gt.append(Instance(label, circle_polygon(x, y, r, 20)))
        if rng.random() < 0.8:
            pred.append(
                Instance(
                    label if rng.random() < 0.9 else "a",
                    circle_polygon(
                        x + rng.normal(0, 1.5), y + rng.normal(0, 1.5), r * rng.uniform(0.7, 1.3), 20
                    ),
                    float(rng.random()),
                )
            )
    for _ in range(n // 5):
        pred.append(
            Instance(
                "a", circle_polygon(rng.uniform(0, 300), rng.uniform(0, 200), 5, 20), float(rng.random())
            )
        )
    return pred, gt


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_sparse_coco_eval_equals_pycocotools(iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    pairs = [(*_random_sets(seed, 60), (200, 300)) for seed in range(3)]
    gt_ds, dts = _coco_datasets(pairs)
    results = []
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_ds
        coco_gt.createIndex()
        for cls in (COCOeval, _coco_eval_class()):
            res = [
                {k: v for k, v in d.items() if not (iou_type == "bbox" and k == "segmentation")} for d in dts
            ]
            ev = cls(coco_gt, coco_gt.loadRes(res), iou_type)
            ev.params.maxDets = [1, 100, 1000]
            ev.evaluate()
            ev.accumulate()
            results.append(ev.eval)
    assert np.array_equal(results[0]["precision"], results[1]["precision"])
    assert np.array_equal(results[0]["recall"], results[1]["recall"])


def test_coco_ap_self_is_one_beyond_100_objects():
    gt = grid(600, step=12, size=8)
    out = coco_ap([(gt, gt, (400, 400))], max_dets=1000)
    assert out["segm"]["AP"] == pytest.approx(1.0) and out["bbox"]["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        coco_ap([(gt, gt, (400, 400))], max_dets=100)


def ann(name, instances, crops=()):
    return AnnotatedImage(name, np.zeros((200, 300, 3), np.uint8), list(instances), list(crops))


def test_evaluate_pairs_by_name_and_pools():
    a, b = grid(50), grid(30, label="q")
    result = evaluate(
        [ann("x.png", a[:45]), ann("y.png", b), ann("z.png", [])],
        [ann("y.png", b), ann("x.png", a), ann("w.png", a)],
        coco=False,
    )
    assert result["n_images"] == 2
    assert result["count"]["tp"] == 75 and result["count"]["fn"] == 5
    assert result["per_class"]["q"]["recall"] == 1.0 and result["per_class"]["p"]["recall"] == 0.9
    assert result["unpaired_gt"] == ["w"] and result["unpaired_pred"] == ["z"]
    text = format_evaluation(result)
    assert "precision 1.000" in text and "recall 0.938" in text and "note: no prediction for w" in text
    assert "x.png: tp 45 fp 0 fn 5 precision 1.000 recall 0.900" in text
    with pytest.raises(AnnotationError):
        evaluate([ann("a.png", a), ann("c.png", a)], [ann("b.png", a), ann("d.png", a)])


def test_evaluate_counts_only_inside_gt_crops():
    gt = ann("x.png", grid(16), crops=[Crop(0, 0, 40, 40)])  # 4 squares with centres inside
    pred = ann("x.png", grid(16)[:2] + [sq(200, 150, 5)])
    result = evaluate([pred], [gt], coco=False)
    assert result["count"] == {
        "tp": 2,
        "fp": 0,
        "fn": 2,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
    }


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.randoms())
def test_counts_do_not_depend_on_order(seed, rnd):
    pred, gt = _random_sets(seed, 40)
    base = match_centre_rule(pred, gt)
    rnd.shuffle(pred)
    rnd.shuffle(gt)
    assert match_centre_rule(pred, gt) == base


def crescent(cx, cy, r=20.0, label="p"):
    """A C: the disc minus a shifted disc; its area centroid lies in the bite, outside the outline."""
    t = np.linspace(np.pi / 4, 2 * np.pi - np.pi / 4, 60)
    outer = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    inner = np.stack([cx + 0.6 * r * np.cos(t[::-1]), cy + 0.6 * r * np.sin(t[::-1])], axis=1)
    return Instance(label, np.concatenate([outer, inner]))


def two_lobes(cx, cy, label="p"):
    """Two discs joined by a thin bar below them (a U): the area centroid lies in the gap between them."""
    import shapely

    shape = shapely.union_all([shapely.Point(cx - 15, cy).buffer(8), shapely.Point(cx + 15, cy).buffer(8),
                               shapely.box(cx - 15, cy + 6, cx + 15, cy + 8)])
    return Instance(label, np.asarray(shape.exterior.coords)[:-1])


def test_concave_and_two_lobe_outlines_match_themselves():
    import shapely

    from measures.evaluation import inside_centres

    shapes = [crescent(90 + 60 * k, 100) for k in range(4)] + [two_lobes(90 + 60 * k, 165) for k in range(4)]
    polys = [s.polygon for s in shapes]
    assert all(shapely.Polygon(p).is_valid for p in polys)
    centroid = [shapely.Point(shapely.Polygon(p).centroid) for p in polys]
    assert not any(shapely.Polygon(p).contains(c) for p, c in zip(polys, centroid, strict=True))
    inside = inside_centres(polys)
    assert all(shapely.Polygon(p).contains(shapely.Point(c)) for p, c in zip(polys, inside, strict=True))
    convex = grid(9)  # where the centroid is inside, it stays the centre
    np.testing.assert_allclose(inside_centres([g.polygon for g in convex]),
                               [g.polygon.mean(axis=0) for g in convex])
    gt = ann("x.png", shapes + grid(9))
    result = evaluate([gt], [gt], coco=True)
    c = result["count"]
    assert (c["tp"], c["fp"], c["fn"], c["precision"], c["recall"]) == (17, 0, 0, 1.0, 1.0)
    assert result["size_accuracy"]["all"]["accuracy"] == 1.0
    assert result["coco"]["segm"]["AP"] == pytest.approx(1.0)
    # With crops, an outline whose centroid lies in the crop but whose body does not is left out alike.
    cropped = ann("x.png", shapes + grid(9), crops=[Crop(60, 70, 150, 200)])
    result = evaluate([cropped], [cropped], coco=False)
    assert result["count"]["fp"] == 0 and result["count"]["fn"] == 0 and result["count"]["tp"] > 0


def test_cluster_recall_and_split_predictions():
    from measures.evaluation import cluster_score, in_cluster

    pile = [sq(0, 0, 10), sq(10, 0, 10), sq(21, 0, 10)]  # touching, and 1 px apart
    alone = [sq(100, 100, 10), sq(150, 100, 10)]
    gt = pile + alone
    assert in_cluster(gt).tolist() == [True, True, True, False, False]
    assert in_cluster(gt, gap=0.5).tolist() == [True, True, False, False, False]
    # Found: one pile particle (as two fragments, both centres inside it) and both isolated ones.
    pred = [sq(0, 0, 10, score=0.9), sq(1, 1, 4), sq(5, 5, 4), sq(100, 100, 10), sq(150, 100, 10)]
    s = cluster_score(pred, gt)
    assert (s.n_isolated, s.found_isolated, s.n_cluster, s.found_cluster, s.split) == (2, 2, 3, 1, 1)
    assert s.recall_isolated == 1.0 and s.recall_cluster == pytest.approx(1 / 3)
    total = s + cluster_score([], alone)
    assert (total.n_isolated, total.found_isolated, total.recall_cluster) == (4, 2, pytest.approx(1 / 3))
    assert cluster_score([], []).recall_cluster is None
