"""Vectorised polygon geometry over many polygons at once (thousands of objects per image).

Polygons are packed as one (M, 2) vertex array plus offsets, so area, centroid and perimeter are single
numpy passes (np.add.reduceat) instead of a Python loop per object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pack(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (M, 2), starts (n,)) for n polygons; empty input gives empty arrays."""
    if not polygons:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    lengths = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    try:  # Instance polygons are already (N, 2) float64
        verts = np.concatenate(polygons, axis=0).astype(np.float64, copy=False).reshape(-1, 2)
    except ValueError:
        verts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    return verts, starts


def to_shapely(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """shapely Polygons for many outlines in one vectorised call (rings are closed by shapely)."""
    import shapely

    if not polygons:
        return np.empty(0, dtype=object)
    verts, starts = pack(polygons)
    index = np.repeat(np.arange(len(polygons)), np.diff(np.concatenate([starts, [len(verts)]])))
    return shapely.polygons(shapely.linearrings(verts, indices=index))


def _next_index(starts: np.ndarray, total: int) -> np.ndarray:
    """Index of the next vertex of the same polygon (wrapping to the polygon's first vertex)."""
    nxt = np.arange(1, total + 1)
    ends = np.concatenate([starts[1:], [total]]) - 1
    nxt[ends] = starts
    return nxt


def area_centroid_perimeter(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsigned shoelace areas (n,), area centroids (n, 2) and perimeters (n,) of simple polygons."""
    n = len(polygons)
    if n == 0:
        return np.zeros(0), np.zeros((0, 2)), np.zeros(0)
    verts, starts = pack(polygons)
    nxt = _next_index(starts, len(verts))
    x, y = verts[:, 0], verts[:, 1]
    x2, y2 = x[nxt], y[nxt]
    cross = x * y2 - x2 * y
    signed = 0.5 * np.add.reduceat(cross, starts)
    cx = np.add.reduceat((x + x2) * cross, starts)
    cy = np.add.reduceat((y + y2) * cross, starts)
    perimeter = np.add.reduceat(np.hypot(x2 - x, y2 - y), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.stack([cx, cy], axis=1) / (6.0 * signed[:, None])
    degenerate = ~np.isfinite(centroid).all(axis=1) | (np.abs(signed) < 1e-12)
    if degenerate.any():  # zero-area outlines: fall back to the vertex mean
        counts = np.diff(np.concatenate([starts, [len(verts)]]))
        mean = np.stack([np.add.reduceat(x, starts), np.add.reduceat(y, starts)], axis=1) / counts[:, None]
        centroid[degenerate] = mean[degenerate]
    return np.abs(signed), centroid, perimeter


def bboxes(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 of each polygon."""
    if not polygons:
        return np.zeros((0, 4))
    verts, starts = pack(polygons)
    return np.stack(
        [
            np.minimum.reduceat(verts[:, 0], starts),
            np.minimum.reduceat(verts[:, 1], starts),
            np.maximum.reduceat(verts[:, 0], starts),
            np.maximum.reduceat(verts[:, 1], starts),
        ],
        axis=1,
    )


def convex_hulls(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hull vertices of every polygon packed as (coords (M, 2), starts (n,), counts (n,)).

    One cv2.convexHull call per polygon on views of one float32 copy (measured faster than shapely's
    vectorised hull); it returns indices, so the hull keeps the exact float64 coordinates.
    """
    import cv2

    verts, starts = pack(polygons)
    ends = np.concatenate([starts[1:], [len(verts)]])
    v32 = verts.astype(np.float32)
    parts = []
    for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
        idx = cv2.convexHull(v32[s0:e0], returnPoints=False) if e0 - s0 >= 3 else None
        parts.append(np.arange(s0, e0) if idx is None or len(idx) < 2 else idx.reshape(-1) + s0)
    counts = np.fromiter((len(q) for q in parts), dtype=np.int64, count=len(parts))
    hull_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(parts) else np.zeros(0, np.int64)
    coords = verts[np.concatenate(parts)] if parts else np.zeros((0, 2))
    return coords, hull_starts, counts


def ferets(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exact (min, max) Feret diameters of each polygon (the rotating-calipers result, vectorised).

    Max Feret = largest vertex distance on the convex hull; min Feret = smallest, over hull edges, of the
    largest distance of a hull vertex from that edge's line. Hulls are padded to a common length per
    size group (repeating a vertex changes neither quantity), so the work is a few array operations.
    """
    n = len(polygons)
    fmin, fmax = np.zeros(n), np.zeros(n)
    if n == 0:
        return fmin, fmax
    coords, starts, counts = convex_hulls(polygons)
    width_of = np.maximum(4 * np.ceil(counts / 4), 4).astype(np.int64)  # pad to a multiple of 4
    for width in np.unique(width_of):
        group = np.nonzero(width_of == width)[0]
        step = max(1, 2_000_000 // int(width * width))
        for lo in range(0, len(group), step):
            chunk = group[lo : lo + step]
            col = np.minimum(np.arange(width)[None, :], counts[chunk, None] - 1)
            pts = coords[starts[chunk, None] + np.maximum(col, 0)]  # (c, w, 2)
            # relative to each hull's first vertex, float32 is exact enough and halves the memory traffic
            pts = (pts - pts[:, :1, :]).astype(np.float32)
            x, y = pts[..., 0], pts[..., 1]
            dx = x[:, :, None] - x[:, None, :]  # x_i - x_j
            dy = y[:, :, None] - y[:, None, :]
            fmax[chunk] = np.sqrt((dx * dx + dy * dy).max(axis=(1, 2)).astype(np.float64))
            ex = np.roll(x, -1, axis=1) - x  # edge i: p_i -> p_(i+1)
            ey = np.roll(y, -1, axis=1) - y
            length = np.hypot(ex, ey)
            # |cross(edge_i, p_j - p_i)| = |ey_i * (x_i - x_j) - ex_i * (y_i - y_j)|
            spread = np.abs(ey[:, :, None] * dx - ex[:, :, None] * dy).max(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                dist = np.where(length > 1e-6, spread / length, np.inf).astype(np.float64)
            best = dist.min(axis=1)
            best[~np.isfinite(best)] = 0.0
            fmin[chunk] = best
    return fmin, fmax


def circle_polygon(cx: float, cy: float, r: float, n: int | None = None) -> np.ndarray:
    """A circle as a polygon with the same area as the circle (vertices pushed out slightly)."""
    if n is None:
        n = int(np.clip(np.ceil(2 * np.pi * r / 2.0), 16, 256))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    # a regular n-gon inscribed in radius R has area n/2 R^2 sin(2pi/n); match pi r^2
    big_r = r * np.sqrt(2 * np.pi / (n * np.sin(2 * np.pi / n)))
    return np.stack([cx + big_r * np.cos(t), cy + big_r * np.sin(t)], axis=1)


def ellipse_polygon(x0: float, y0: float, x1: float, y1: float, n: int = 64) -> np.ndarray:
    """An axis-aligned ellipse inscribed in a box, as a polygon of the same area."""
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.sqrt(2 * np.pi / (n * np.sin(2 * np.pi / n)))
    return np.stack([cx + k * rx * np.cos(t), cy + k * ry * np.sin(t)], axis=1)


def mask_to_polygon(mask: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray | None:
    """Outline of the largest component of a boolean mask, with exactly the component's pixel area.

    cv2 traces the centres of boundary pixels, a staircase whose area is ~P/2 too small and whose
    perimeter is too long. The trace is smoothed (Douglas-Peucker, 0.7 px), pushed out half a pixel and
    scaled about its centroid to the filled pixel count: area (so D) is exact, circularity sensible.
    Coordinates are continuous: pixel (row i, column j) covers [j, j+1) x [i, i+1), plus `offset`.
    """
    import cv2
    import shapely

    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    contour = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    filled = np.zeros_like(m)
    cv2.drawContours(filled, [contour], -1, 1, thickness=-1)
    count = float(filled.sum())
    x, y, w, h = cv2.boundingRect(contour)
    if w <= 2 or h <= 2 or len(contour) < 3:  # a line or a dot: the box of its pixels
        poly = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    else:
        trace = cv2.approxPolyDP(contour, 0.7, True).reshape(-1, 2).astype(np.float64)
        shape = shapely.Polygon(trace).buffer(0.5, quad_segs=2)
        if shape.geom_type != "Polygon":
            shape = max(shape.geoms, key=lambda g: g.area)
        poly = np.asarray(shape.exterior.coords)[:-1] + 0.5
        area, centroid, _ = area_centroid_perimeter([poly])
        poly = centroid[0] + (poly - centroid[0]) * np.sqrt(count / area[0])
        poly = np.clip(poly, 0.0, [m.shape[1], m.shape[0]])  # never past the mask's own frame
    return poly + np.asarray(offset, dtype=np.float64)
