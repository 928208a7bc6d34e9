"""Which of the model's outlines answers a tap in label mode: the page's rule, in Python.

web/static/app.js (label mode, `objectAt` and `nearest`) mirrors this rule: change both together.
The page runs it; bench/bench_label.py uses this copy to score taps the way the page answers them.
A tap inside outlines takes the smallest of them; else the outline whose centre (the mean of its
vertices, as app.js's `centroid`) lies within NEAR_D of its equivalent-circle diameter D from the
tap, the nearest relative to D (a finger lands beside a small particle); else none (the page then
asks annotations.proposer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotations.geometry import polygon_area

NEAR_D = 0.5  # x D: how far from a tap an outline's centre may lie and still answer it


def _inside(points: np.ndarray, x: float, y: float) -> bool:
    """Even-odd crossing test, app.js's `inside` (a point on an edge may go either way)."""
    hit = False
    xj, yj = points[-1]
    for xi, yi in points:
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
        xj, yj = xi, yi
    return hit


def outline_holding(outlines: Sequence[np.ndarray], x: float, y: float) -> int | None:
    """Index of the smallest outline (N x 2, image px) holding (x, y); the first on a tie."""
    best, best_area = None, 0.0
    for k, points in enumerate(outlines):
        pts = np.asarray(points, dtype=np.float64)
        if not (pts[:, 0].min() <= x <= pts[:, 0].max() and pts[:, 1].min() <= y <= pts[:, 1].max()):
            continue
        if not _inside(pts, x, y):
            continue
        area = polygon_area(pts)
        if best is None or area < best_area:
            best, best_area = k, area
    return best


def outline_at(outlines: Sequence[np.ndarray], x: float, y: float) -> int | None:
    """Index of the outline that answers a tap at (x, y), or None (the proposer answers)."""
    hit = outline_holding(outlines, x, y)
    if hit is not None:
        return hit
    best, best_rel = None, NEAR_D
    for k, points in enumerate(outlines):
        pts = np.asarray(points, dtype=np.float64)
        d = 2 * np.sqrt(polygon_area(pts) / np.pi)
        if d <= 0:
            continue
        cx, cy = pts.mean(axis=0)
        rel = float(np.hypot(cx - x, cy - y)) / d
        if rel <= best_rel:  # app.js keeps the later one on a tie
            best, best_rel = k, rel
    return best
