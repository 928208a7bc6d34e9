"""Images at another magnification than the training image: run the detector at a chosen scale.

A model learns particles at the size they had in its labels (after the training rescale). A new
image taken at another magnification shows them 2-4x larger or smaller, and the model then misses
most of them: on EMPS images of other materials, whose particles are 0.3-9x the labelled size,
recall fell to ~0.5. `ScaledDetector` makes the pipeline enlarge (or shrink) every tile by an extra
factor, so the new image's objects reach the detector at the trained size.

The factor comes from the user (`PredictOptions.scale`: the new image's nm/px over the training
image's, or a magnification ratio) or from `choose_scale`: a probe that runs the detector on one
window of the image at factors 1/8 .. 1 and keeps the one at which the model is sure (score >= 0.9)
of the most objects of the size it was trained on, per area of the original image (so a factor that
merely shows more of the image gains nothing), if that beats 1x by 30 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segmodel.types import Detections, TileDetector

# Shrinking only: particles larger than the labelled ones are what other images mostly hold (17 of 20
# EMPS test images), while at 1.4-2x the model grows sure of texture (precision 0.47 -> 0.43).
FACTORS = (0.125, 0.18, 0.25, 0.35, 0.5, 0.71, 1.0)
PROBE_SIDE = 512  # detector px: each probe is at most about one tile
SIZE_TOLERANCE = math.log(2.0)  # a detection half or twice the trained size counts e^-0.5
MIN_GAIN = 1.3  # another factor must beat 1x by this much (1x is what the model was made for)
SURE_SCORE = 0.9  # only detections the model is sure of say which size it knows


class ScaledDetector:
    """`inner` with every tile enlarged by `factor` more than its own rescale (any TileDetector)."""

    def __init__(self, inner: TileDetector, factor: float) -> None:
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"scale factor must be positive, got {factor}")
        self.inner = inner
        self.factor = float(factor)
        self.classes = inner.classes
        self.tile_size = inner.tile_size
        self.rescale = float(inner.rescale or 1.0) * self.factor
        size = getattr(inner, "object_size", None)
        # object_size is in original px: the new image's objects are 1/factor the training ones
        self.object_size = size / self.factor if isinstance(size, (int, float)) and size > 0 else None
        self.meta = getattr(inner, "meta", {})

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        return self.inner.detect(tiles)


@dataclass
class ScaleChoice:
    factor: float
    probes: dict[float, float] = field(default_factory=dict)  # factor -> plausible detections per MP


def trained_size(detector: TileDetector) -> float | None:
    """Median object diameter the detector was trained on, in its input px (after rescale)."""
    stats = (getattr(detector, "meta", None) or {}).get("label_stats") or {}
    median = stats.get("median_d_px")
    if not isinstance(median, (int, float)) or not median > 0:
        return None
    return float(median) * float(detector.rescale or 1.0)


def plausible_count(det: Detections, size: float, min_score: float = SURE_SCORE) -> float:
    """Sure detections clear of the tile's border, weighted by how close their diameter is to
    `size` (a log-normal window). Objects the border cuts are left out: their size says nothing."""
    if not len(det):
        return 0.0
    h, w = det.masks.shape[1:]
    x0, y0, x1, y1 = det.boxes.T
    keep = (det.scores >= min_score) & (x0 > 1) & (y0 > 1) & (x1 < w - 2) & (y1 < h - 2)
    if not keep.any():
        return 0.0
    areas = det.masks[keep].reshape(int(keep.sum()), -1).sum(axis=1).astype(np.float64)
    diameters = 2.0 * np.sqrt(np.maximum(areas, 1.0) / math.pi)
    weights = np.exp(-0.5 * (np.log(diameters / size) / SIZE_TOLERANCE) ** 2)
    return float(np.sum(weights))


def _probe(image: np.ndarray, detector: TileDetector, factor: float, size: float) -> float:
    """Plausible detections per megapixel of the original image, in one centred window.

    Only objects wholly inside the window count, so the area is the window less a trained-size
    margin: where a whole object of that size could lie."""
    from inference.tiling import plan_tiles, read_tile

    scale = float(detector.rescale or 1.0) * factor
    height, width = image.shape[:2]
    side = max(8, int(PROBE_SIDE / scale))
    w, h = min(width, side), min(height, side)
    x0, y0 = (width - w) // 2, (height - h) // 2
    window = image[y0 : y0 + h, x0 : x0 + w]
    pixels, _, _ = read_tile(window, plan_tiles(h, w, max(h, w), 0)[0], scale)
    det = detector.detect([pixels])[0]
    ph, pw = pixels.shape[:2]
    room = max(pw - size, 1.0) * max(ph - size, 1.0) / scale**2  # original px^2
    return plausible_count(det, size) / (room / 1e6)


def choose_scale(image: np.ndarray, detector: TileDetector) -> ScaleChoice:
    """The factor (<= 1) at which `image`'s objects look like the training objects to `detector`."""
    size = trained_size(detector)
    if size is None:
        return ScaleChoice(1.0)
    probes = {f: _probe(image, detector, f, size) for f in FACTORS}
    best = max(probes, key=probes.get)
    if probes[best] <= 0 or probes[best] < MIN_GAIN * probes[1.0]:
        best = 1.0  # nothing sure anywhere (an empty image) or no clear gain: as trained
    return ScaleChoice(best, probes)
