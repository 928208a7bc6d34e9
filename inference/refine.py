"""Contour refinement by a 2D Gaussian fit (Okunev et al., Nanomaterials 2020, section 2.5, eqs. 2-5).

For each predicted outline: d_eff = diameter of the circle of equal area; the image is smoothed
with a Gaussian kernel of size d_eff / 4; the outline is doubled in linear size about its centre
of mass; pixels of other objects inside that region are left out (close particles); the
intensity there is fitted with

    H(x, y) = H0 + Hm * exp(-(x-x0)^2/sx^2 - (y-y0)^2/sy^2 - (x-x0)(y-y0)/sxy^2)      (2)

(sxy^2 may be negative: a tilted ellipse either way). Then Hmin = max(H0, Hmin_pred),
Hmax = min(Hmax_fit, Hmax_pred), Hhalf = (Hmin + Hmax) / 2 (eqs. 3-5), and the refined border
is the fitted surface's cross-section at Hhalf: an ellipse.

The image is treated as a height map; dark particles on a bright background are fitted on the
inverted image (polarity picked per object unless forced). When the fit fails - too few pixels,
no convergence, a poor fit, two peaks (a clumped pair, the main failure in the paper), an
implausible ellipse - the predicted contour is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotations.geometry import polygon_area, polygon_to_mask
from annotations.model import Instance

MIN_PIXELS = 12  # fewer mask pixels than this: 7 parameters cannot be fitted meaningfully
MIN_R2 = 0.8  # share of the intensity variance the Gaussian must explain
MAX_ELONGATION = 3.0  # ellipse axis ratio above this is a distorted fit (Okunev et al. 2020, section 3)
AREA_RANGE = (0.3, 3.0)  # refined / predicted area outside this range: implausible
ELLIPSE_POINTS = 48


@dataclass
class FitOutcome:
    polygon: np.ndarray | None  # refined outline (image px) or None when the fit failed
    reason: str  # "ok" or why it failed
    params: tuple[float, ...] = ()  # H0, Hm, x0, y0, a, b, c (exponent -(a dx^2 + b dy^2 + c dx dy))


def refine_instances(
    image: np.ndarray, instances: list[Instance], polarity: str = "auto"
) -> tuple[list[Instance], int]:
    """Instances with refined outlines where the fit succeeds (others unchanged) and the count."""
    if not instances:
        return [], 0
    boxes = np.array([_bbox(inst.polygon) for inst in instances])
    out, n_refined = [], 0
    for i, inst in enumerate(instances):
        others = _neighbours(boxes, i)
        result = fit_instance(image, inst.polygon, [instances[j].polygon for j in others], polarity)
        if result.polygon is not None:
            out.append(Instance(inst.label, result.polygon, inst.score))
            n_refined += 1
        else:
            out.append(inst)
    return out, n_refined


def fit_instance(
    image: np.ndarray, polygon: np.ndarray, others: list[np.ndarray], polarity: str = "auto"
) -> FitOutcome:
    """Fit eq. 2 around one predicted outline; see the module docstring."""
    polygon = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    area = polygon_area(polygon)
    if area < MIN_PIXELS:
        return FitOutcome(None, "too small")
    window = _fit_window(image, polygon, area)
    if window is None:
        return FitOutcome(None, "outside the image")
    own, region = _fit_masks(window, polygon, others)
    if own.sum() < MIN_PIXELS or region.sum() < 2 * MIN_PIXELS:
        return FitOutcome(None, "too few pixels")
    smooth = _as_peak(window.smooth, own, region, polarity)
    if _n_peaks(smooth, own, window.d_eff) > 1:
        return FitOutcome(None, "two or more peaks (clumped)")

    ys, xs = np.nonzero(region)
    values = smooth[ys, xs].astype(np.float64)
    params, r2 = _fit_gaussian(xs.astype(np.float64), ys.astype(np.float64), values, own, window.d_eff)
    if params is None:
        return FitOutcome(None, "no convergence")
    rejected = _rejected_peak(params, r2, own)
    if rejected is not None:
        return FitOutcome(None, rejected, tuple(params))
    return _half_height_outline(params, values, area, window)


@dataclass
class _FitWindow:
    """The part of the image one fit looks at: the doubled outline and a margin, smoothed."""

    x0: int  # the window's top-left corner in the image
    y0: int
    smooth: np.ndarray  # float32 gray, blurred by a Gaussian of kernel size ~ d_eff / 4
    d_eff: float  # diameter of the circle of the outline's area
    extended: np.ndarray  # the outline doubled in linear size about its centre of mass (image px)


def _fit_window(image: np.ndarray, polygon: np.ndarray, area: float) -> _FitWindow | None:
    """The window around the doubled outline, padded by the smoothing kernel; None when less than
    3 px of it lie in the image."""
    import cv2

    d_eff = 2.0 * np.sqrt(area / np.pi)
    centre = _centroid(polygon)
    extended = centre + 2.0 * (polygon - centre)
    ksize = max(3, int(round(d_eff / 4)) | 1)
    pad = ksize
    h, w = image.shape[:2]
    x0 = max(0, int(np.floor(extended[:, 0].min())) - pad)
    y0 = max(0, int(np.floor(extended[:, 1].min())) - pad)
    x1 = min(w, int(np.ceil(extended[:, 0].max())) + pad + 1)
    y1 = min(h, int(np.ceil(extended[:, 1].max())) + pad + 1)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    window = image[y0:y1, x0:x1]
    gray = window.astype(np.float32) if window.ndim == 2 else window[:, :, :3].astype(np.float32).mean(axis=2)
    return _FitWindow(x0, y0, cv2.GaussianBlur(gray, (ksize, ksize), 0), d_eff, extended)


def _fit_masks(window: _FitWindow, polygon: np.ndarray, others: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """(own, region) in the window: the outline's pixels, and those of the doubled outline less
    where other objects' doubled outlines reach (close particles)."""
    shape = window.smooth.shape
    offset = (window.x0, window.y0)
    own = polygon_to_mask(polygon, *shape, offset=offset)
    region = polygon_to_mask(window.extended, *shape, offset=offset)
    for other in others:  # close particles: leave out where their doubled outlines reach
        other = np.asarray(other, dtype=np.float64).reshape(-1, 2)
        oc = _centroid(other)
        region &= ~(polygon_to_mask(oc + 2.0 * (other - oc), *shape, offset=offset) & ~own)
    return own, region


def _as_peak(smooth: np.ndarray, own: np.ndarray, region: np.ndarray, polarity: str) -> np.ndarray:
    """The window with the particle as a peak: inverted for a dark one ('dark', or 'auto' when the
    outline is darker than the ring around it)."""
    ring = region & ~own
    if polarity == "dark" or (polarity == "auto" and ring.any() and smooth[own].mean() < smooth[ring].mean()):
        return -smooth
    return smooth


def _rejected_peak(params: np.ndarray, r2: float, own: np.ndarray) -> str | None:
    """Why the fitted surface is no particle's peak (a poor fit, not a peak, its top outside the
    predicted contour), or None."""
    h0, hm, cx, cy, a, b, c = params
    if r2 < MIN_R2:
        return f"poor fit (R2 {r2:.2f})"
    if hm <= 0 or a <= 0 or b <= 0 or 4 * a * b - c * c <= 0:
        return "not a peak"
    ix, iy = int(round(cx)), int(round(cy))
    if not (0 <= iy < own.shape[0] and 0 <= ix < own.shape[1] and own[iy, ix]):
        return "peak outside the predicted contour"
    return None


def _half_height_outline(params: np.ndarray, values: np.ndarray, area: float, window: _FitWindow
                         ) -> FitOutcome:
    """The fitted surface's cross-section at half height (eqs. 3-5) as the refined outline, in image
    px, unless it is missing, degenerate, elongated or of an implausible size."""
    h0, hm, cx, cy, a, b, c = params
    # eqs. 3-5: half height between the fitted/observed floor and the fitted/observed top
    h_min = max(h0, values.min())
    h_max = min(h0 + hm, values.max())
    h_half = 0.5 * (h_min + h_max)
    level = (h_half - h0) / hm
    if not 0 < level < 1:
        return FitOutcome(None, "no half-height crossing", tuple(params))
    ellipse = _ellipse(cx, cy, a, b, c, -np.log(level))
    if ellipse is None:
        return FitOutcome(None, "degenerate ellipse", tuple(params))
    axes, points = ellipse
    if axes[1] / axes[0] > MAX_ELONGATION:
        return FitOutcome(None, "elongated fit", tuple(params))
    ratio = np.pi * axes[0] * axes[1] / area
    if not AREA_RANGE[0] <= ratio <= AREA_RANGE[1]:
        return FitOutcome(None, f"implausible size ({ratio:.2f}x)", tuple(params))
    points[:, 0] += window.x0
    points[:, 1] += window.y0
    return FitOutcome(points, "ok", (h0, hm, cx + window.x0, cy + window.y0, a, b, c))


def _fit_gaussian(xs, ys, values, own, d_eff) -> tuple[np.ndarray | None, float]:
    """Least-squares fit of eq. 2 (analytic Jacobian); returns (params, R^2)."""
    from scipy.optimize import least_squares

    oy, ox = np.nonzero(own)
    h0 = float(np.percentile(values, 5))
    hm = float(values.max() - h0)
    if hm <= 0:
        return None, 0.0
    s0 = (d_eff / 2) / np.sqrt(np.log(2.0))  # half height at the equal-area radius
    a0 = 1.0 / (s0 * s0)
    p0 = np.array([h0, hm, ox.mean(), oy.mean(), a0, a0, 0.0])

    def model(p):
        dx, dy = xs - p[2], ys - p[3]
        e = np.exp(-(p[4] * dx * dx + p[5] * dy * dy + p[6] * dx * dy))
        return dx, dy, e

    def residual(p):
        _, _, e = model(p)
        return p[0] + p[1] * e - values

    def jacobian(p):
        dx, dy, e = model(p)
        he = p[1] * e
        return np.column_stack(
            [
                np.ones_like(e),
                e,
                he * (2 * p[4] * dx + p[6] * dy),
                he * (2 * p[5] * dy + p[6] * dx),
                -he * dx * dx,
                -he * dy * dy,
                -he * dx * dy,
            ]
        )

    try:
        # Levenberg-Marquardt (MINPACK): unbounded and fast; the caller checks the parameters
        fit = least_squares(residual, p0, jac=jacobian, method="lm", max_nfev=400, x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None, 0.0
    if not fit.success or not np.all(np.isfinite(fit.x)):
        return None, 0.0
    total = float(((values - values.mean()) ** 2).sum())
    r2 = 1.0 - float((fit.fun**2).sum()) / total if total > 0 else 0.0
    return fit.x, r2


def _n_peaks(height: np.ndarray, own: np.ndarray, d_eff: float) -> int:
    """Distinct local maxima inside the object above its half height, further apart than d_eff/3."""
    from scipy import ndimage

    size = max(3, int(round(d_eff / 3)) | 1)
    values = height[own]
    half = 0.5 * (values.min() + values.max())
    peaks = (ndimage.maximum_filter(height, size=size) == height) & own & (height > half)
    labels, n = ndimage.label(peaks, structure=np.ones((3, 3)))
    if n <= 1:
        return n
    centres = np.array(ndimage.center_of_mass(peaks, labels, range(1, n + 1)))
    keep: list[np.ndarray] = []
    for c in centres:
        if all(np.hypot(*(c - k)) > d_eff / 3 for k in keep):
            keep.append(c)
    return len(keep)


def _ellipse(cx, cy, a, b, c, k) -> tuple[tuple[float, float], np.ndarray] | None:
    """Points of a dx^2 + b dy^2 + c dx dy = k; returns ((minor, major) semi-axes, (N, 2) points)."""
    if not np.isfinite(k) or k <= 0:
        return None
    evals, evecs = np.linalg.eigh(np.array([[a, c / 2], [c / 2, b]]))
    if evals.min() <= 0:
        return None
    semi = np.sqrt(k / evals)  # along each eigenvector
    t = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    local = np.stack([semi[0] * np.cos(t), semi[1] * np.sin(t)], axis=1)
    pts = local @ evecs.T + np.array([cx, cy])
    return (float(semi.min()), float(semi.max())), pts


def _centroid(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    if abs(a) < 1e-12:
        return poly.mean(axis=0)
    return np.array([((x + xn) * cross).sum() / (6 * a), ((y + yn) * cross).sum() / (6 * a)])


def _bbox(poly: np.ndarray) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _neighbours(boxes: np.ndarray, i: int) -> np.ndarray:
    """Objects whose boxes meet object i's box doubled about its centre (the fit region)."""
    x0, y0, x1, y1 = boxes[i]
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0), (y1 - y0)
    hit = (boxes[:, 0] <= cx + hw + 1) & (boxes[:, 2] >= cx - hw - 1)
    hit &= (boxes[:, 1] <= cy + hh + 1) & (boxes[:, 3] >= cy - hh - 1)
    hit[i] = False
    return np.flatnonzero(hit)
