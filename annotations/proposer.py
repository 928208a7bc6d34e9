"""An outline proposed around a tap: image + point -> polygon, no model and no network.

The Mini App's label mode calls this when the user taps a particle. Its size is not known in
advance, so the search runs over growing windows centred on the tap: in each, a smoothed Otsu
threshold (the tap's side of it is the particle's phase, so bright and dark particles both work),
the connected region under the tap with holes filled, touching particles split at their necks
(each particle's core is a seed, every pixel goes to the nearest core), the tap's part kept. A
window counts when it holds that region whole (not touching the window's edge, the image's edge
apart) and its region differs from the ring around it by at least MIN_CONTRAST of the image's
range. Of those, the smallest whose contrast is within KEEP_SMALLEST of the best wins: a small
window inside a large textured particle has a weak edge (texture), a large one around a cluster or
half the image a strong one, and the particle's own window lies between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotations.geometry import mask_to_polygon

FIRST_HALF = 24  # px: the smallest window is 49 x 49
GROWTH = 2.0
MIN_AREA_PX = 9.0
TAP_SNAP_PX = 3  # a tap just beside the particle's phase still finds it
MIN_CONTRAST = 0.1  # x the image's p1-p99 range: less is noise, not a particle
KEEP_SMALLEST = 0.3  # the smallest window within this fraction of the best contrast wins
CORE = 0.6  # x the tap particle's inscribed radius: its seed for the split at necks
SIGMA = 1.0  # px, the smoothing before the threshold


@dataclass(frozen=True)
class Proposal:
    """The outline (N, 2 float x, y, image pixels) and what the page shows beside it."""

    polygon: np.ndarray
    area_px: float
    window_half: int


def to_gray(image: np.ndarray) -> np.ndarray:
    """float32 grey levels of an H x W or H x W x C image (alpha ignored)."""
    gray = image if image.ndim == 2 else image[:, :, :3].mean(axis=2)
    return np.asarray(gray, dtype=np.float32)


def propose_outline(gray: np.ndarray, x: float, y: float, *, max_half: int | None = None) -> Proposal | None:
    """The outline of the particle under (x, y) in `gray` (H x W), or None when nothing stands out.

    max_half caps the window's half size (default: the whole image).
    """
    h, w = gray.shape
    cx, cy = int(round(x)), int(round(y))
    if not (0 <= cx < w and 0 <= cy < h):
        return None
    limit = max(h, w) if max_half is None else max_half
    lo, hi = np.percentile(gray, [1, 99])
    spread = max(float(hi - lo), 1e-3)
    half = FIRST_HALF
    whole: list[tuple[float, np.ndarray, tuple[int, int], int]] = []  # (contrast, mask, origin, half)
    while True:
        found = _in_window(gray, cx, cy, half)
        if found is not None and found.whole and found.contrast / spread >= MIN_CONTRAST:
            whole.append((found.contrast / spread, found.mask, found.origin, half))
        if half >= limit or (half >= w and half >= h):
            break
        half = int(half * GROWTH)
    # the smallest window whose region stands out nearly as well as the best one's: a larger
    # window may hold a whole cluster, or a brighter half of the image, at a higher contrast
    top = max((c for c, *_ in whole), default=0.0)
    best = next((item for item in whole if item[0] >= KEEP_SMALLEST * top), None)
    if best is None:
        return None
    _, mask, (x0, y0), used = best
    poly = mask_to_polygon(mask, offset=(x0, y0))
    if poly is None:
        return None
    return Proposal(poly, float(mask.sum()), used)


@dataclass(frozen=True)
class _Found:
    mask: np.ndarray  # the tap's region in the window
    origin: tuple[int, int]  # the window's top-left pixel (x0, y0)
    whole: bool  # the region does not touch the window's edge (the image's edge apart)
    contrast: float  # grey levels between the region and the ring around it


def _in_window(gray: np.ndarray, cx: int, cy: int, half: int) -> _Found | None:
    """The tap's region in the window of half size `half` around (cx, cy)."""
    import cv2
    from scipy import ndimage

    h, w = gray.shape
    x0, x1 = max(0, cx - half), min(w, cx + half + 1)
    y0, y1 = max(0, cy - half), min(h, cy + half + 1)
    win = gray[y0:y1, x0:x1]
    smooth = cv2.GaussianBlur(win, (0, 0), SIGMA)
    lo, hi = float(smooth.min()), float(smooth.max())
    if hi - lo < 1e-3:
        return None
    g8 = ((smooth - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    t, _ = cv2.threshold(g8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ty, tx = cy - y0, cx - x0
    r = 1
    tap_level = float(np.median(g8[max(0, ty - r):ty + r + 1, max(0, tx - r):tx + r + 1]))
    fg = g8 > t if tap_level > t else g8 <= t
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    comps, _ = ndimage.label(fg)
    k = _label_near(comps, tx, ty)
    if k == 0:
        return None
    region = ndimage.binary_fill_holes(comps == k)
    region = _split_at_tap(region, tx, ty)
    if region is None or region.sum() < MIN_AREA_PX:
        return None
    touches = ((region[0].any() and y0 > 0) or (region[-1].any() and y1 < h)
               or (region[:, 0].any() and x0 > 0) or (region[:, -1].any() and x1 < w))
    return _Found(region, (x0, y0), not touches, _edge_contrast(smooth, region))


def _label_near(comps: np.ndarray, tx: int, ty: int) -> int:
    """The component under the tap, or the nearest within TAP_SNAP_PX; 0 for none."""
    if comps[ty, tx]:
        return int(comps[ty, tx])
    r = TAP_SNAP_PX
    patch = comps[max(0, ty - r):ty + r + 1, max(0, tx - r):tx + r + 1]
    ids, counts = np.unique(patch[patch > 0], return_counts=True)
    return int(ids[np.argmax(counts)]) if len(ids) else 0


def _split_at_tap(region: np.ndarray, tx: int, ty: int) -> np.ndarray | None:
    """The tap's particle of a region that may hold several touching ones. Each particle's core
    (inscribed distance >= CORE x the tap's radius) is a seed, necks between touching particles
    are thinner than that; the rest of the region goes to the nearest core."""
    import cv2
    from scipy import ndimage

    dist = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    if not region[ty, tx]:
        ys, xs = np.nonzero(region)
        i = int(np.argmin((xs - tx) ** 2 + (ys - ty) ** 2))
        tx, ty = int(xs[i]), int(ys[i])
    # the particle's radius: the largest inscribed distance near the tap
    r = max(2, int(dist[ty, tx]))
    radius = float(dist[max(0, ty - r):ty + r + 1, max(0, tx - r):tx + r + 1].max())
    cores, n = ndimage.label(dist >= CORE * radius)
    if n <= 1:
        return region
    # every pixel of the region to its nearest core: the split runs through the necks
    _, (iy, ix) = ndimage.distance_transform_edt(cores == 0, return_indices=True)
    owner = cores[iy, ix]
    k = int(owner[ty, tx])
    mine = region & (owner == k)
    comps, _ = ndimage.label(mine)
    return ndimage.binary_fill_holes(comps == comps[ty, tx])


def _edge_contrast(smooth: np.ndarray, region: np.ndarray) -> float:
    """|mean inside - mean of a ring just outside|: how well the region stands out from what
    surrounds it."""
    import cv2

    ring_w = max(2, int(round(0.15 * np.sqrt(region.sum()))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_w + 1, 2 * ring_w + 1))
    ring = cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & ~region
    if not ring.any():
        return 0.0
    return abs(float(smooth[region].mean()) - float(smooth[ring].mean()))


def spots(gray: np.ndarray, max_spots: int = 5000) -> np.ndarray:
    """(n, 3) x, y, D of the particle-like spots of a whole image: the minority phase of a smoothed
    Otsu threshold, opened, one spot per connected region of at least MIN_AREA_PX (touching particles
    are one spot). Label mode warns of a crop holding a spot no outline covers."""
    import cv2

    smooth = cv2.GaussianBlur(np.asarray(gray, np.float32), (0, 0), SIGMA)
    lo, hi = float(smooth.min()), float(smooth.max())
    if hi - lo < 1e-3:
        return np.zeros((0, 3))
    g8 = ((smooth - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    _, fg = cv2.threshold(g8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if fg.mean() > 0.5:
        fg = 1 - fg
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, _, stats, centres = cv2.connectedComponentsWithStats(fg, connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    keep = area >= MIN_AREA_PX
    found = np.column_stack([centres[1:][keep], 2 * np.sqrt(area[keep] / np.pi)])
    return found[np.argsort(-found[:, 2])][:max_spots]
