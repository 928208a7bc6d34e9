"""Binary mask -> one simplified outline polygon (largest component, holes dropped)."""

from __future__ import annotations

import numpy as np

DEFAULT_TOLERANCE = 0.25  # px: Douglas-Peucker tolerance, well below one pixel


def mask_to_polygon(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray | None:
    """Outline (N, 2) float64 x, y of the mask's largest component, or None for an empty mask.

    Pixel (row i, col j) has its centre at (x=j, y=i). The polygon runs along pixel edges, not
    through the centres of the boundary pixels, so its area matches the pixel count (a disc of
    radius r gives ~ pi r^2 instead of ~ pi (r - 0.5)^2). Holes are dropped; the outline is
    simplified with Douglas-Peucker at `tolerance` px.
    """
    import cv2

    if mask.size == 0:
        return None
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    contours = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[-2]
    if not contours:
        return None
    if len(contours) == 1:
        contour = contours[0]
    else:
        # largest component: pixels ~ enclosed area + half the boundary (Pick's theorem)
        contour = max(contours, key=lambda c: cv2.contourArea(c) + 0.5 * len(c))
    if tolerance > 0 and len(contour) > 4:
        contour = cv2.approxPolyDP(contour, tolerance, True)
    pts = contour.reshape(-1, 2).astype(np.float64) - 1.0  # undo the padding
    return _grow_half_pixel(pts)


def _grow_half_pixel(pts: np.ndarray) -> np.ndarray:
    """Move an outline through boundary-pixel centres out by half a pixel, onto the pixel edges."""
    area = _shoelace(pts)
    if len(pts) >= 3 and abs(area) >= 1.0:
        grown = _mitre_offset(pts, 1.0 if area > 0 else -1.0)
        if grown is not None:
            return grown
    return _grow_with_shapely(pts)


def _mitre_offset(pts: np.ndarray, sign: float, limit: float = 1.0) -> np.ndarray | None:
    """Shift each edge of an outline through boundary-pixel centres out onto the pixel edges.

    An edge with direction (ex, ey) moves by 0.5 * max(|ex|, |ey|) / |e|: half a pixel for
    axis-aligned runs, 0.35 px for 45-degree staircases. By Pick's theorem this adds half a
    pixel of area per boundary pixel, so the outline's area matches the pixel count for any
    orientation (a constant 0.5 px offset would overshoot on diagonals). Vertices are the
    intersections of neighbouring shifted edges, their shift capped at `limit` px. `sign`
    (+-1) picks outwards for the contour's orientation. None when the result is not larger
    (e.g. a self-touching outline), so the caller can use a robust fallback.
    (Plain 1-D arithmetic: this runs once per object, so numpy call overhead matters.)
    """
    x, y = pts[:, 0], pts[:, 1]
    ex = np.concatenate((x[1:], x[:1])) - x
    ey = np.concatenate((y[1:], y[:1])) - y
    length = np.sqrt(ex * ex + ey * ey)
    if length.min() < 1e-9:
        return None
    nx, ny = sign * ey / length, -sign * ex / length  # outward unit normal of edge i (p_i -> p_i+1)
    d = 0.5 * np.maximum(np.abs(ex), np.abs(ey)) / length
    # vertex i joins edge i-1 (prev) and edge i
    px, py = np.concatenate((nx[-1:], nx[:-1])), np.concatenate((ny[-1:], ny[:-1]))
    pd = np.concatenate((d[-1:], d[:-1]))
    det = px * ny - py * nx
    flat = np.abs(det) < 1e-6
    safe = np.where(flat, 1.0, det)
    vx = np.where(flat, d * nx, (pd * ny - d * py) / safe)
    vy = np.where(flat, d * ny, (px * d - nx * pd) / safe)
    norm = np.sqrt(vx * vx + vy * vy)
    cap = np.minimum(1.0, limit / np.maximum(norm, 1e-12))
    out = np.empty_like(pts)
    out[:, 0] = x + vx * cap
    out[:, 1] = y + vy * cap
    if abs(_shoelace(out)) <= abs(_shoelace(pts)):
        return None
    return out


def _grow_with_shapely(pts: np.ndarray) -> np.ndarray:
    import shapely
    from shapely.geometry import LineString, Point, Polygon

    uniq = np.unique(pts, axis=0)
    if len(uniq) == 1:
        geom = Point(uniq[0])
    elif len(uniq) == 2 or abs(_shoelace(pts)) < 1e-9:
        geom = LineString(pts)
    else:
        geom = Polygon(pts)
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
    grown = geom.buffer(0.5, join_style="mitre", mitre_limit=2.0, cap_style="square")
    if grown.geom_type != "Polygon":  # MultiPolygon after make_valid: keep the largest part
        grown = max(getattr(grown, "geoms", [grown]), key=lambda g: g.area)
    return np.asarray(grown.exterior.coords, dtype=np.float64)[:-1]


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned shoelace area of an (N, 2) polygon."""
    return abs(_shoelace(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)))


def _shoelace(pts: np.ndarray) -> float:
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0])


def polygon_to_mask(polygon: np.ndarray, height: int, width: int, offset=(0.0, 0.0)) -> np.ndarray:
    """Bool (height, width) mask of the pixels whose centre lies inside the polygon.

    Pixel centres are at integer (x, y); `offset` (x, y) is the window's top-left pixel, so a
    window of a larger image can be rasterised. (cv2.fillPoly rounds vertices and fills the
    boundary inclusively, which would grow every edge-aligned outline by a pixel.)
    """
    from matplotlib.path import Path as MplPath

    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros((height, width), bool)
    if len(pts) < 3 or height <= 0 or width <= 0:
        return mask
    ox, oy = float(offset[0]), float(offset[1])
    # only test pixels inside the polygon's bounding box
    c0 = max(0, int(np.ceil(pts[:, 0].min() - ox)))
    c1 = min(width, int(np.floor(pts[:, 0].max() - ox)) + 1)
    r0 = max(0, int(np.ceil(pts[:, 1].min() - oy)))
    r1 = min(height, int(np.floor(pts[:, 1].max() - oy)) + 1)
    if c1 <= c0 or r1 <= r0:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1]
    centres = np.column_stack([xx.ravel() + ox, yy.ravel() + oy])
    inside = MplPath(pts).contains_points(centres)
    mask[r0:r1, c0:c1] = inside.reshape(r1 - r0, c1 - c0)
    return mask
