"""Test-time augmentation: a tile detector run on flipped copies of each tile, merged by mask voting.

An object the model finds in most views is kept with the mean of its scores over all views (a view
that missed it counts 0), so one-view flukes sink below the threshold while faint particles that
several views agree on rise above it; each kept outline is the pixel-wise majority of its views'
masks, which smooths a single view's ragged edge. Wraps any segmodel.types.TileDetector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segmodel.types import Detections, TileDetector

# (flip rows, flip columns) per view; flips are their own inverse, so masks come back the same way.
VIEWS: dict[str, tuple[bool, bool]] = {"none": (False, False), "h": (False, True), "v": (True, False),
                                       "hv": (True, True)}
MATCH_IOU = 0.5  # masks of two views overlapping this much are one object


def _flip(array: np.ndarray, rows: bool, cols: bool, row_axis: int) -> np.ndarray:
    axes = tuple(a for a, on in ((row_axis, rows), (row_axis + 1, cols)) if on)
    return np.flip(array, axis=axes) if axes else array


def _unflip(det: Detections, rows: bool, cols: bool) -> Detections:
    h, w = det.masks.shape[1:] if det.masks.ndim == 3 else (0, 0)
    boxes = det.boxes.copy()
    if cols:
        boxes[:, [0, 2]] = w - det.boxes[:, [2, 0]]
    if rows:
        boxes[:, [1, 3]] = h - det.boxes[:, [3, 1]]
    masks = np.ascontiguousarray(_flip(det.masks, rows, cols, 1))
    return Detections(boxes=boxes, scores=det.scores, labels=det.labels, masks=masks)


def _box_of(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _mask_iou(a: np.ndarray, b: np.ndarray, box_a: np.ndarray, box_b: np.ndarray) -> float:
    x0, y0 = int(min(box_a[0], box_b[0])), int(min(box_a[1], box_b[1]))
    x1, y1 = int(np.ceil(max(box_a[2], box_b[2]))), int(np.ceil(max(box_a[3], box_b[3])))
    wa, wb = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    union = np.count_nonzero(wa | wb)
    return np.count_nonzero(wa & wb) / union if union else 0.0


def _boxes_overlap(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    return ((others[:, 0] < box[2]) & (others[:, 2] > box[0]) & (others[:, 1] < box[3])
            & (others[:, 3] > box[1]))


def vote(views: Sequence[Detections], min_views: int) -> Detections:
    """Merge one tile's detections from several views: objects seen in >= min_views views."""
    h, w = next((v.masks.shape[1:] for v in views if v.masks.ndim == 3), (0, 0))
    boxes = np.concatenate([v.boxes for v in views]) if views else np.zeros((0, 4), np.float32)
    if not len(boxes):
        return Detections.empty(h, w)
    scores = np.concatenate([v.scores for v in views])
    labels = np.concatenate([v.labels for v in views])
    masks = np.concatenate([v.masks for v in views if len(v)])
    view_of = np.concatenate([np.full(len(v), i) for i, v in enumerate(views)])
    taken = np.zeros(len(boxes), bool)
    out_boxes, out_scores, out_labels, out_masks = [], [], [], []
    for seed in np.argsort(-scores, kind="stable"):
        if taken[seed]:
            continue
        members = {int(view_of[seed]): int(seed)}  # best detection per view, the seed's first
        taken[seed] = True
        near = np.flatnonzero(~taken & (labels == labels[seed]) & _boxes_overlap(boxes[seed], boxes))
        for j in near[np.argsort(-scores[near], kind="stable")]:
            if int(view_of[j]) in members:
                continue
            if _mask_iou(masks[seed], masks[j], boxes[seed], boxes[j]) >= MATCH_IOU:
                members[int(view_of[j])] = int(j)
                taken[j] = True
        if len(members) < min_views:
            continue
        idx = list(members.values())
        mask = masks[idx].sum(axis=0) * 2 > len(idx)  # pixel-wise majority of the views that found it
        if not mask.any():
            continue
        out_boxes.append(_box_of(mask))
        out_scores.append(float(scores[idx].sum()) / len(views))
        out_labels.append(int(labels[seed]))
        out_masks.append(mask)
    if not out_boxes:
        return Detections.empty(h, w)
    return Detections(boxes=np.stack(out_boxes), scores=np.array(out_scores, np.float32),
                      labels=np.array(out_labels, np.int64), masks=np.stack(out_masks))


class FlipTTA:
    """A TileDetector that runs `inner` on each tile in every view of `views` and votes.

    The inner detector's own score floor should sit below the user's threshold (an object scored
    0.6 in two of four views averages 0.3), so it is lowered to `floor` while this runs.
    """

    def __init__(self, inner: TileDetector, views: Sequence[str] = tuple(VIEWS), min_views: int | None = None,
                 floor: float = 0.25) -> None:
        unknown = [v for v in views if v not in VIEWS]
        if unknown or not views:
            raise ValueError(f"unknown views {unknown}; choose from {', '.join(VIEWS)}")
        self.inner = inner
        self.views = tuple(views)
        self.min_views = int(min_views or (len(self.views) + 1) // 2)
        self.floor = float(floor)
        self.classes = inner.classes
        self.rescale = inner.rescale
        self.tile_size = inner.tile_size
        self.object_size = getattr(inner, "object_size", None)
        self.meta = getattr(inner, "meta", {})  # label statistics, for inference.scale

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        per_view = []
        saved = getattr(self.inner, "score_thr", None)
        if saved is not None:
            self.inner.score_thr = min(saved, self.floor)
        try:
            for name in self.views:
                rows, cols = VIEWS[name]
                flipped = [np.ascontiguousarray(_flip(np.asarray(t), rows, cols, 0)) for t in tiles]
                per_view.append([_unflip(d, rows, cols) for d in self.inner.detect(flipped)])
        finally:
            if saved is not None:
                self.inner.score_thr = saved
        return [vote([view[i] for view in per_view], self.min_views) for i in range(len(tiles))]
