"""Prediction quality against ground truth.

- Counting by the centre rule of Okunev et al. (Nanomaterials 2020, ParticlesNN): a prediction whose
  centre lies inside a ground-truth contour is a TP (the centre is a point inside the prediction: its area
  centroid, or where that falls outside a concave or two-lobed outline, shapely's representative point,
  so a file scored against itself scores 1.000), one GT is matched at most once (further
  predictions on it are FP), GTs left unmatched (also extra GTs under one big prediction) are FN.
  Centre-in-contour lookups go through an STRtree; where GTs overlap, a maximum matching decides
  (order-independent). Mask output (the trainer's held-out crop) is outlined first
  (instances_from_masks) and scored by the same rule.
- COCO AP (segm and bbox) with pycocotools, maxDets raised (default 1000). pycocotools' per-image matching
  loops over every (detection, GT) pair in Python, hopeless for thousands of objects in one image; the
  IoUs here are computed only for pairs whose boxes overlap and the matching walks only those, which
  gives exactly COCOeval's result (pairs with IoU 0 can never match).
- Size accuracy as in Okunev et al. 2020, Table 4: 1 - |mean D_pred - mean D_gt| / mean D_gt, per class.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass

import numpy as np

from annotations import geometry
from annotations.errors import NothingToEvaluate
from annotations.model import AnnotatedImage, Instance


@dataclass(frozen=True)
class CountScore:
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> CountScore:
        precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
        recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(int(tp), int(fp), int(fn), float(precision), float(recall), float(f1))

    def as_dict(self) -> dict:
        return asdict(self)


def f1_interval(tp: int, fp: int, fn: int, level: float = 0.9, draws: int = 2000) -> tuple[float, float]:
    """Where F1 would likely fall on another crop like this one: a bootstrap over the crop's match
    outcomes (each TP, FP and FN one item), the central `level` of the resampled F1s.

    A held-out crop of ~20 objects gives a wide interval (about +-0.1 around 0.85), which is the
    honest way to show a figure measured on so little (deterministic: a fixed seed).
    """
    n = tp + fp + fn
    if n == 0:
        return (1.0, 1.0)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, np.array([tp, fp, fn], np.float64) / n, size=draws)
    denom = 2 * counts[:, 0] + counts[:, 1] + counts[:, 2]
    f1 = np.where(denom > 0, 2 * counts[:, 0] / np.maximum(denom, 1), 1.0)
    lo, hi = np.quantile(f1, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _geoms(polygons: Sequence[np.ndarray]):
    import shapely

    geoms = geometry.to_shapely(polygons)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    return geoms


def match_centre_rule(pred: Sequence[Instance], gt: Sequence[Instance]) -> CountScore:
    """TP/FP/FN by the centre rule (class-agnostic; call per class for per-class scores)."""
    return _match(pred, gt)[0]


def instances_from_masks(masks: np.ndarray, label: str = "object") -> list[Instance]:
    """Boolean (n, h, w) masks as outlined instances (empty masks dropped): mask output, such as the
    trainer's held-out crop, is then scored by exactly the rules polygons are."""
    outlines = (geometry.mask_to_polygon(mask) for mask in masks)
    return [Instance(label, poly) for poly in outlines if poly is not None]


def inside_centres(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 2) centres that lie inside their own outline: the area centroid where it does, else shapely's
    representative point (inside by construction). The centroid of a crescent or of two touching lobes
    lies outside the shape; taken as the centre, the outline would "miss" even itself."""
    centres = geometry.area_centroid_perimeter(polygons)[1]
    if not len(polygons):
        return centres
    import shapely

    geoms = _geoms(polygons)
    outside = ~shapely.contains_xy(geoms, centres[:, 0], centres[:, 1])
    outside &= ~shapely.is_empty(geoms)
    if outside.any():
        rep = shapely.point_on_surface(geoms[outside])
        centres = centres.copy()
        centres[outside] = np.stack([shapely.get_x(rep), shapely.get_y(rep)], axis=1)
    return centres


def centre_pairs(
    pred: Sequence[Instance], gt: Sequence[Instance], pred_centres: np.ndarray | None = None
) -> np.ndarray:
    """(2, k) array of (prediction index, GT index) where the prediction's centre lies inside the GT."""
    if not pred or not gt:
        return np.zeros((2, 0), dtype=np.int64)
    import shapely

    centres = (
        pred_centres
        if pred_centres is not None
        else inside_centres([p.polygon for p in pred])
    )
    tree = shapely.STRtree(_geoms([g.polygon for g in gt]))
    return tree.query(shapely.points(centres), predicate="within")


def match_pairs(pairs: np.ndarray, n_pred: int, n_gt: int) -> np.ndarray:
    """Matched GT index per prediction (-1 if none), each GT used at most once.

    A maximum bipartite matching (Hopcroft-Karp): with non-overlapping GTs this is simply "one TP per GT
    holding a prediction's centre"; where GTs overlap it is the best assignment, whatever the input order.
    """
    matched = np.full(n_pred, -1, dtype=np.int64)
    if pairs.shape[1] == 0:
        return matched
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    graph = csr_matrix((np.ones(pairs.shape[1], dtype=np.int8), (pairs[0], pairs[1])), shape=(n_pred, n_gt))
    return maximum_bipartite_matching(graph, perm_type="column").astype(np.int64)


def _match(pred: Sequence[Instance], gt: Sequence[Instance]) -> tuple[CountScore, np.ndarray]:
    """(score, matched GT index per prediction or -1)."""
    matched = match_pairs(centre_pairs(pred, gt), len(pred), len(gt))
    tp = int((matched >= 0).sum())
    return CountScore.from_counts(tp, len(pred) - tp, len(gt) - tp), matched


def in_cluster(gt: Sequence[Instance], gap: float = 1.5) -> np.ndarray:
    """(n,) bool: the GT particles that touch another one (outlines within `gap` px: a mask dilated by
    1-2 px meets a neighbour). The manual masks of a pile outline each particle's visible part, so a
    particle pressed against or half hidden behind a neighbour shares a boundary with it."""
    if not len(gt):
        return np.zeros(0, dtype=bool)
    import shapely

    geoms = _geoms([g.polygon for g in gt])
    near = shapely.STRtree(geoms).query(shapely.buffer(geoms, gap), predicate="intersects")
    flags = np.zeros(len(gt), dtype=bool)
    flags[near[0][near[0] != near[1]]] = True
    return flags


@dataclass(frozen=True)
class ClusterScore:
    """Recall split into isolated GT particles and particles in clusters, and the GT particles that
    came back split into several predictions (two or more prediction centres inside one GT)."""

    n_isolated: int
    found_isolated: int
    n_cluster: int
    found_cluster: int
    split: int

    @property
    def recall_isolated(self) -> float | None:
        return self.found_isolated / self.n_isolated if self.n_isolated else None

    @property
    def recall_cluster(self) -> float | None:
        return self.found_cluster / self.n_cluster if self.n_cluster else None

    def __add__(self, other: ClusterScore) -> ClusterScore:
        return ClusterScore(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def cluster_score(pred: Sequence[Instance], gt: Sequence[Instance], gap: float = 1.5) -> ClusterScore:
    """The centre rule's matching (as in `evaluate`) read per GT particle: found or not, isolated or in
    a cluster (`in_cluster`), and how many GT particles hold the centres of two or more predictions."""
    cpairs = centre_pairs(pred, gt)
    matched = match_pairs(cpairs, len(pred), len(gt))
    found = np.zeros(len(gt), dtype=bool)
    found[matched[matched >= 0]] = True
    cluster = in_cluster(gt, gap)
    hits = np.bincount(cpairs[1], minlength=len(gt)) if cpairs.shape[1] else np.zeros(len(gt), np.int64)
    return ClusterScore(int((~cluster).sum()), int((found & ~cluster).sum()), int(cluster.sum()),
                        int((found & cluster).sum()), int((hits >= 2).sum()))


def mean_d(instances: Sequence[Instance]) -> float | None:
    if not instances:
        return None
    area = geometry.area_centroid_perimeter([i.polygon for i in instances])[0]
    return float(np.mean(2 * np.sqrt(area / np.pi)))


def size_accuracy(pred: Sequence[Instance], gt: Sequence[Instance], nm_per_px: float | None = None) -> dict:
    """Size accuracy as in Okunev et al. 2020, Table 4, per class and for all objects:
    {class: {mean_d_pred_px, mean_d_gt_px, accuracy}}."""

    def diameters(items: Sequence[Instance]) -> tuple[np.ndarray, np.ndarray]:
        area = geometry.area_centroid_perimeter([i.polygon for i in items])[0]
        return 2 * np.sqrt(area / np.pi), np.array([i.label for i in items], dtype=object)

    d_pred, l_pred = diameters(pred)
    d_gt, l_gt = diameters(gt)
    out: dict = {}
    labels = sorted(set(l_pred.tolist()) | set(l_gt.tolist()))
    for label in ["all", *labels]:
        p = d_pred if label == "all" else d_pred[l_pred == label]
        g = d_gt if label == "all" else d_gt[l_gt == label]
        dp = float(p.mean()) if len(p) else None
        dg = float(g.mean()) if len(g) else None
        acc = 1.0 - abs(dp - dg) / dg if (dp is not None and dg) else None
        entry = {"mean_d_pred_px": dp, "mean_d_gt_px": dg, "accuracy": acc, "n_pred": len(p), "n_gt": len(g)}
        if nm_per_px:
            entry["mean_d_pred_nm"] = dp * nm_per_px if dp is not None else None
            entry["mean_d_gt_nm"] = dg * nm_per_px if dg is not None else None
        out[label] = entry
    return out


# ---------------------------------------------------------------- COCO AP


def _coco_eval_class():
    """pycocotools' COCOeval with the sparse IoUs and matching (pycocotools is imported on first use)."""
    from pycocotools.cocoeval import COCOeval

    class SparseCOCOeval(COCOeval):
        """COCOeval with IoUs only for box-overlapping pairs and matching over those pairs only."""

        def computeIoU(self, imgId, catId):  # noqa: N802 - pycocotools' name
            gt, dt = _image_gts_dts(self, imgId, catId)
            if not gt or not dt:
                return []
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in order[: self.params.maxDets[-1]]]
            return _sparse_ious(gt, dt, self.params.iouType)

        def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803
            gt, dt = _image_gts_dts(self, imgId, catId)
            if not gt and not dt:
                return None
            gt, gtind, dt = _in_matching_order(gt, dt, aRng, maxDet)
            T, D = len(self.params.iouThrs), len(dt)  # noqa: N806
            gtm, dtm = np.zeros((T, len(gt))), np.zeros((T, D))
            gtIg = np.array([g["_ignore"] for g in gt])  # noqa: N806
            dtIg = np.zeros((T, D))  # noqa: N806
            sparse = self.ious[imgId, catId]
            if len(sparse) and D and gt:
                cand = _candidates(sparse, gtind, D)
                _greedy_match(cand, self.params.iouThrs, gt, dt, gtIg, gtm, dtm, dtIg)
            a = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, len(dt)))
            dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))  # noqa: N806
            return {
                "image_id": imgId,
                "category_id": catId,
                "aRng": aRng,
                "maxDet": maxDet,
                "dtIds": [d["id"] for d in dt],
                "gtIds": [g["id"] for g in gt],
                "dtMatches": dtm,
                "gtMatches": gtm,
                "dtScores": [d["score"] for d in dt],
                "gtIgnore": gtIg,
                "dtIgnore": dtIg,
            }

    return SparseCOCOeval


def _image_gts_dts(ev, img_id: int, cat_id: int) -> tuple[list[dict], list[dict]]:
    """The image's GTs and detections of the class, or of every class when the evaluator ignores classes."""
    p = ev.params
    if p.useCats:
        return ev._gts[img_id, cat_id], ev._dts[img_id, cat_id]
    gt = [g for c in p.catIds for g in ev._gts[img_id, c]]
    return gt, [d for c in p.catIds for d in ev._dts[img_id, c]]


def _sparse_ious(gt: list[dict], dt: list[dict], iou_type: str) -> dict:
    """IoUs of the (detection, GT) pairs whose boxes overlap, the pairs with IoU 0 left out:
    {"d", "g": indices into dt and gt, "iou", "nd", "ng"}."""
    import shapely

    gb = np.array([g["bbox"] for g in gt], dtype=np.float64)
    db = np.array([d["bbox"] for d in dt], dtype=np.float64)
    tree = shapely.STRtree(shapely.box(gb[:, 0], gb[:, 1], gb[:, 0] + gb[:, 2], gb[:, 1] + gb[:, 3]))
    qd, qg = tree.query(shapely.box(db[:, 0], db[:, 1], db[:, 0] + db[:, 2], db[:, 1] + db[:, 3]))
    crowd = np.array([int(g["iscrowd"]) for g in gt])
    if iou_type == "bbox":
        iou = _box_ious(db[qd], gb[qg], crowd[qg])
    else:
        iou = _mask_ious(dt, gt, qd, qg, crowd)
    keep = iou > 0
    return {"d": qd[keep], "g": qg[keep], "iou": iou[keep], "nd": len(dt), "ng": len(gt)}


def _box_ious(db: np.ndarray, gb: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of each pair of [x, y, w, h] boxes, row by row (of a crowd GT: the part of the detection)."""
    x0 = np.maximum(db[:, 0], gb[:, 0])
    y0 = np.maximum(db[:, 1], gb[:, 1])
    x1 = np.minimum(db[:, 0] + db[:, 2], gb[:, 0] + gb[:, 2])
    y1 = np.minimum(db[:, 1] + db[:, 3], gb[:, 1] + gb[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_d = db[:, 2] * db[:, 3]
    area_g = gb[:, 2] * gb[:, 3]
    union = np.where(crowd == 1, area_d, area_d + area_g - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _mask_ious(dt: list[dict], gt: list[dict], qd: np.ndarray, qg: np.ndarray, crowd: np.ndarray
               ) -> np.ndarray:
    """Mask IoU of each (dt[qd[k]], gt[qg[k]]) pair: pycocotools' RLE IoU, one detection at a time."""
    from pycocotools import mask as mask_utils

    iou = np.zeros(len(qd))
    for d_idx in np.unique(qd):
        sel = np.nonzero(qd == d_idx)[0]
        g_sel = qg[sel]
        iou[sel] = np.asarray(
            mask_utils.iou(
                [dt[d_idx]["segmentation"]],
                [gt[g]["segmentation"] for g in g_sel],
                crowd[g_sel].tolist(),
            )
        ).reshape(-1)
    return iou


def _in_matching_order(gt: list[dict], dt: list[dict], a_rng: list[float], max_det: int
                       ) -> tuple[list[dict], np.ndarray, list[dict]]:
    """As COCOeval.evaluateImg orders them: each GT flagged `_ignore` (ignored, or outside the area
    range) and the kept ones first, stably; the `max_det` best-scored detections. Also the GT order
    (indices into the given list)."""
    for g in gt:
        g["_ignore"] = 1 if (g["ignore"] or g["area"] < a_rng[0] or g["area"] > a_rng[1]) else 0
    gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
    dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
    return [gt[i] for i in gtind], gtind, [dt[i] for i in dtind[0:max_det]]


def _candidates(sparse: dict, gtind: np.ndarray, n_dt: int) -> list[list[tuple[int, float]]]:
    """Per detection (of the first `n_dt`), its overlapping GTs as (position in matching order, IoU),
    in the order COCOeval walks GTs (non-ignored first)."""
    position = np.empty(len(gtind), dtype=np.int64)
    position[gtind] = np.arange(len(gtind))
    cand: list[list[tuple[int, float]]] = [[] for _ in range(n_dt)]
    for d_i, g_i, v in zip(
        sparse["d"].tolist(), position[sparse["g"]].tolist(), sparse["iou"].tolist(), strict=True
    ):
        if d_i < n_dt:
            cand[d_i].append((g_i, v))
    for c in cand:
        c.sort()  # COCOeval walks GTs in (non-ignored first) order
    return cand


def _greedy_match(cand: list[list[tuple[int, float]]], thresholds: np.ndarray, gt: list[dict],
                  dt: list[dict], gt_ignore: np.ndarray, gtm: np.ndarray, dtm: np.ndarray,
                  dt_ignore: np.ndarray) -> None:
    """COCOeval's greedy matching at each IoU threshold, over the candidate pairs only: each detection,
    best score first, takes the unmatched GT (or a crowd) of highest IoU, a non-ignored one before an
    ignored one. Fills gtm and dtm (the matched ids) and dt_ignore in place."""
    iscrowd = [int(o["iscrowd"]) for o in gt]
    for tind, t in enumerate(thresholds):
        for dind, d in enumerate(dt):
            iou = min([t, 1 - 1e-10])
            m = -1
            for gind, value in cand[dind]:
                if gtm[tind, gind] > 0 and not iscrowd[gind]:
                    continue
                if m > -1 and gt_ignore[m] == 0 and gt_ignore[gind] == 1:
                    break
                if value < iou:
                    continue
                iou = value
                m = gind
            if m == -1:
                continue
            dt_ignore[tind, dind] = gt_ignore[m]
            dtm[tind, dind] = gt[m]["id"]
            gtm[tind, m] = d["id"]


def _coco_datasets(pairs: Sequence[tuple[Sequence[Instance], Sequence[Instance], tuple[int, int]]]):
    from pycocotools import mask as mask_utils

    labels = sorted(
        {i.label for _, gt, _ in pairs for i in gt} | {i.label for pred, _, _ in pairs for i in pred}
    )
    cat = {label: k + 1 for k, label in enumerate(labels)}
    images, gts, dts = [], [], []
    for image_id, (pred, gt, (h, w)) in enumerate(pairs, 1):
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        for kind, items, out in (("gt", gt, gts), ("dt", pred, dts)):
            if not items:
                continue
            polys = [i.polygon for i in items]
            area = geometry.area_centroid_perimeter(polys)[0]
            boxes = geometry.bboxes(polys)
            rles = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in polys], int(h), int(w))
            for k, inst in enumerate(items):
                x0, y0, x1, y1 = boxes[k]
                ann = {
                    "id": len(out) + 1,
                    "image_id": image_id,
                    "category_id": cat[inst.label],
                    "segmentation": rles[k],
                    "area": float(area[k]),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "iscrowd": 0,
                }
                if kind == "dt":
                    ann["score"] = 1.0 if inst.score is None else float(inst.score)
                out.append(ann)
    categories = [{"id": v, "name": k} for k, v in cat.items()]
    return {"images": images, "annotations": gts, "categories": categories}, dts


def coco_ap(
    pairs: Sequence[tuple[Sequence[Instance], Sequence[Instance], tuple[int, int]]],
    *,
    max_dets: int = 1000,
    iou_types: Sequence[str] = ("segm", "bbox"),
) -> dict:
    """COCO AP over (pred, gt, (height, width)) per image: {iou_type: {AP, AP50, AP75, AR}}.

    Classes are matched by label (pycocotools' useCats); AP is averaged over the GT classes.
    """
    from pycocotools.coco import COCO

    if max_dets < 500:
        raise ValueError("max_dets must be at least 500 (microscope images hold hundreds of objects)")
    gt_ds, dts = _coco_datasets(pairs)
    out: dict = {}
    if not gt_ds["annotations"]:
        return {t: {"AP": None, "AP50": None, "AP75": None, "AR": None} for t in iou_types}
    evaluator = _coco_eval_class()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        coco_gt = COCO()
        coco_gt.dataset = gt_ds
        coco_gt.createIndex()
        for iou_type in iou_types:
            if not dts:
                out[iou_type] = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0}
                continue
            if iou_type == "bbox":  # boxes as drawn (a box from the rasterised mask would be shifted)
                coco_dt = coco_gt.loadRes([{k: v for k, v in d.items() if k != "segmentation"} for d in dts])
            else:
                coco_dt = coco_gt.loadRes([dict(d) for d in dts])
            ev = evaluator(coco_gt, coco_dt, iou_type)
            ev.params.maxDets = [1, 100, max_dets]
            ev.params.catIds = sorted({a["category_id"] for a in gt_ds["annotations"]})
            ev.evaluate()
            ev.accumulate()
            # read the arrays ourselves: COCOeval.summarize() reports AP at maxDets=100 whatever is set
            precision = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K) for area 'all', largest maxDets
            recall = ev.eval["recall"][:, :, 0, -1]
            thresholds = np.asarray(ev.params.iouThrs)

            def mean_valid(x: np.ndarray) -> float | None:
                x = x[x > -1]
                return float(x.mean()) if x.size else None

            ap50 = precision[np.isclose(thresholds, 0.5)]
            ap75 = precision[np.isclose(thresholds, 0.75)]
            out[iou_type] = {
                "AP": mean_valid(precision),
                "AP50": mean_valid(ap50),
                "AP75": mean_valid(ap75),
                "AR": mean_valid(recall),
            }
    return out


# ---------------------------------------------------------------- whole sets


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _in_crops(instances: Sequence[Instance], ann: AnnotatedImage) -> list[Instance]:
    if not ann.crops or not instances:
        return list(instances)
    cents = inside_centres([i.polygon for i in instances])
    keep = np.zeros(len(instances), dtype=bool)
    for c in ann.crops:
        keep |= (cents[:, 0] >= c.x0) & (cents[:, 0] < c.x1) & (cents[:, 1] >= c.y0) & (cents[:, 1] < c.y1)
    return [inst for inst, k in zip(instances, keep, strict=True) if k]


def pair_by_name(
    pred_anns: Sequence[AnnotatedImage],
    gt_anns: Sequence[AnnotatedImage],
) -> tuple[list[tuple[AnnotatedImage, AnnotatedImage]], list[str], list[str]]:
    """(pairs, GT names without prediction, prediction names without GT), matched by image stem."""
    preds = {_stem(a.name): a for a in pred_anns}
    gts = {_stem(a.name): a for a in gt_anns}
    if len(pred_anns) == 1 and len(gt_anns) == 1:  # two files given explicitly: pair them whatever the names
        return [(pred_anns[0], gt_anns[0])], [], []
    pairs = [(preds[k], gts[k]) for k in sorted(gts) if k in preds]
    return pairs, sorted(k for k in gts if k not in preds), sorted(k for k in preds if k not in gts)


def evaluate(
    pred_anns: Sequence[AnnotatedImage],
    gt_anns: Sequence[AnnotatedImage],
    *,
    coco: bool = True,
    max_dets: int = 1000,
) -> dict:
    """Pooled counting scores (all classes and per class), size accuracy, COCO AP; and per image.

    Images are paired by name. When the GT marks crops, only objects (GT and predicted) whose centre lies
    in a crop count: the rest of the image is not labelled.
    """
    pairs, missing_pred, missing_gt = pair_by_name(pred_anns, gt_anns)
    if not pairs:
        raise NothingToEvaluate(
            "No prediction matches a ground-truth image by name; name the files alike "
            "(e.g. img1.json in both)."
        )
    images = [_count_image(pred_ann, gt_ann) for pred_ann, gt_ann in pairs]
    totals, class_totals = _pooled_counts(images)
    scales = {a.nm_per_px for _, a in pairs}
    nm = scales.pop() if len(scales) == 1 else None
    result = {
        "n_images": len(pairs),
        "count": CountScore.from_counts(*totals.tolist()).as_dict(),
        "per_class": {k: CountScore.from_counts(*v.tolist()).as_dict() for k, v in class_totals.items()},
        "size_accuracy": size_accuracy([i for im in images for i in im.pred],
                                       [i for im in images for i in im.gt], nm),
        "images": [{"name": im.name, **im.score.as_dict(), "n_pred": len(im.pred), "n_gt": len(im.gt)}
                   for im in images],
        "unpaired_gt": missing_pred,
        "unpaired_pred": missing_gt,
    }
    if coco:
        result["coco"] = coco_ap([(im.pred, im.gt, im.shape) for im in images], max_dets=max_dets)
    return result


@dataclass
class _ImageCount:
    """One image's objects (those in the GT's crops) and their counting scores."""

    name: str
    shape: tuple[int, int]  # height, width
    pred: list[Instance]
    gt: list[Instance]
    score: CountScore
    per_class: dict[str, tuple[int, int, int]]  # label -> (tp, fp, fn), labels in sorted order


def _count_image(pred_ann: AnnotatedImage, gt_ann: AnnotatedImage) -> _ImageCount:
    """The centre rule on one image pair, over all classes and per class."""
    pred = _in_crops(pred_ann.instances, gt_ann)
    gt = _in_crops(gt_ann.instances, gt_ann)
    cpairs = centre_pairs(pred, gt)
    matched = match_pairs(cpairs, len(pred), len(gt))
    tp = int((matched >= 0).sum())
    score = CountScore.from_counts(tp, len(pred) - tp, len(gt) - tp)
    return _ImageCount(gt_ann.name, (gt_ann.height, gt_ann.width), pred, gt, score,
                       _count_classes(pred, gt, cpairs))


def _count_classes(pred: list[Instance], gt: list[Instance], cpairs: np.ndarray
                   ) -> dict[str, tuple[int, int, int]]:
    """(tp, fp, fn) per class: the same centre pairs, restricted to the class on both sides."""
    pred_labels = np.array([i.label for i in pred], dtype=object)
    gt_labels = np.array([i.label for i in gt], dtype=object)
    counts = {}
    for label in sorted(set(pred_labels.tolist()) | set(gt_labels.tolist())):
        keep = (
            (pred_labels[cpairs[0]] == label) & (gt_labels[cpairs[1]] == label)
            if cpairs.shape[1]
            else np.zeros(0, dtype=bool)
        )
        m = match_pairs(cpairs[:, keep], len(pred), len(gt))
        n_p, n_g = int((pred_labels == label).sum()), int((gt_labels == label).sum())
        tp_c = int((m >= 0).sum())
        counts[label] = (tp_c, n_p - tp_c, n_g - tp_c)
    return counts


def _pooled_counts(images: Sequence[_ImageCount]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(tp, fp, fn) summed over the images: all classes, and per class (in order of first appearance)."""
    totals = np.zeros(3, dtype=np.int64)
    class_totals: dict[str, np.ndarray] = {}
    for im in images:
        totals += (im.score.tp, im.score.fp, im.score.fn)
        for label, counts in im.per_class.items():
            class_totals.setdefault(label, np.zeros(3, dtype=np.int64))
            class_totals[label] += counts
    return totals, class_totals


def format_evaluation(result: dict) -> str:
    """`precision 0.930` style lines."""
    c = result["count"]
    lines = [
        f"images {result['n_images']}",
        f"tp {c['tp']}",
        f"fp {c['fp']}",
        f"fn {c['fn']}",
        f"precision {c['precision']:.3f}",
        f"recall {c['recall']:.3f}",
        f"f1 {c['f1']:.3f}",
    ]
    if len(result["per_class"]) > 1:
        for label, s in result["per_class"].items():
            lines.append(f"{label}: precision {s['precision']:.3f} recall {s['recall']:.3f} f1 {s['f1']:.3f}")
    for label, s in result["size_accuracy"].items():
        if label != "all" and len(result["size_accuracy"]) <= 2:
            continue  # one class: its line would repeat the total
        if s["accuracy"] is not None:
            name = "size_accuracy" if label == "all" else f"{label}: size_accuracy"
            lines.append(f"{name} {s['accuracy']:.3f}")
    for iou_type, s in (result.get("coco") or {}).items():
        for key in ("AP", "AP50", "AP75"):
            if s[key] is not None:
                lines.append(f"{iou_type}_{key} {s[key]:.3f}")
    if len(result.get("images", [])) > 1:
        for row in result["images"]:
            lines.append(
                f"{row['name']}: tp {row['tp']} fp {row['fp']} fn {row['fn']} "
                f"precision {row['precision']:.3f} recall {row['recall']:.3f}"
            )
    for name in result.get("unpaired_gt", []):
        lines.append(f"note: no prediction for {name}")
    for name in result.get("unpaired_pred", []):
        lines.append(f"note: no ground truth for {name}")
    return "\n".join(lines)
