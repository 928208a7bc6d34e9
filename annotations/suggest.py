"""Where labelling helps the model most: 2-3 crop rectangles around its least certain objects.

After a recognition the model's doubt is in its own output: a score near 0.5 (it could not decide),
and an outline far from the typical size (two particles merged into one, or one split in two).
Square windows of a few particle diameters are placed greedily where the summed doubt is largest,
without overlapping, each grown to hold whole the outlines whose centres it holds. Label mode
opens with them as crops, the model's outlines inside as proposals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotations.geometry import area_centroid_perimeter, bboxes
from annotations.model import Instance

WINDOW_DS = 6.0  # a window's side in median diameters
MIN_SIDE, MAX_SIDE_FRACTION = 64.0, 0.5  # px; of the image's shorter side
ODD_SIZE = 0.5  # doubt added to an outline over 2x or under 0.4x the median area


def doubt(instances: Sequence[Instance]) -> np.ndarray:
    """Per object, 0 (sure) .. 1.5: 1 - |2 score - 1| (no score: 0), plus ODD_SIZE for an odd size."""
    if not instances:
        return np.zeros(0)
    area, _, _ = area_centroid_perimeter([i.polygon for i in instances])
    scores = np.array([np.nan if i.score is None else float(i.score) for i in instances])
    out = np.where(np.isnan(scores), 0.0, 1.0 - np.abs(2.0 * np.nan_to_num(scores) - 1.0))
    median = float(np.median(area))
    odd = (area > 2.0 * median) | (area < 0.4 * median)
    return out + ODD_SIZE * odd


def suggest_crops(instances: Sequence[Instance], width: int, height: int, n: int = 3) -> list[list[float]]:
    """Up to `n` non-overlapping [x0, y0, x1, y1] squares, most summed doubt first (none where the
    model is sure of everything)."""
    if not instances:
        return []
    _, centre, _ = area_centroid_perimeter([i.polygon for i in instances])
    side = window_side(instances, width, height)
    weight = doubt(instances)
    boxes = bboxes([i.polygon for i in instances])
    chosen: list[list[float]] = []
    for _ in range(n):
        best, best_sum = None, 0.0
        for cx, cy in centre:
            x0 = float(np.clip(cx - side / 2, 0, max(0.0, width - side)))
            y0 = float(np.clip(cy - side / 2, 0, max(0.0, height - side)))
            box = [x0, y0, min(float(width), x0 + side), min(float(height), y0 + side)]
            if any(_overlap(box, c) for c in chosen):
                continue
            inside = (
                (centre[:, 0] >= box[0])
                & (centre[:, 0] < box[2])
                & (centre[:, 1] >= box[1])
                & (centre[:, 1] < box[3])
            )
            total = float(weight[inside].sum())
            if total > best_sum:
                best, best_sum = box, total
        if best is None:
            break
        chosen.append([round(v, 1) for v in _whole(best, boxes, centre, width, height)])
    return chosen


def window_side(instances: Sequence[Instance], width: int, height: int) -> float:
    """A suggested window's side before it grows: WINDOW_DS median diameters, within the limits."""
    area, _, _ = area_centroid_perimeter([i.polygon for i in instances])
    d = 2.0 * np.sqrt(np.median(area) / np.pi)
    return float(np.clip(WINDOW_DS * d, MIN_SIDE, MAX_SIDE_FRACTION * min(width, height)))


def grown(box: list[float], instances: Sequence[Instance], width: int, height: int) -> list[float]:
    """`box` grown as a suggestion is (bench_scenarios grows its random crops the same way)."""
    _, centre, _ = area_centroid_perimeter([i.polygon for i in instances])
    return _whole(box, bboxes([i.polygon for i in instances]), centre, width, height)


def _whole(box: list[float], boxes: np.ndarray, centre: np.ndarray, width: int, height: int) -> list[float]:
    """The box grown to hold whole every outline whose centre it holds: a crop must not cut one."""
    inside = (
        (centre[:, 0] >= box[0])
        & (centre[:, 0] < box[2])
        & (centre[:, 1] >= box[1])
        & (centre[:, 1] < box[3])
    )
    if not inside.any():
        return box
    held = boxes[inside]
    return [
        max(0.0, min(box[0], float(held[:, 0].min()) - 1)),
        max(0.0, min(box[1], float(held[:, 1].min()) - 1)),
        min(float(width), max(box[2], float(held[:, 2].max()) + 1)),
        min(float(height), max(box[3], float(held[:, 3].max()) + 1)),
    ]


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
