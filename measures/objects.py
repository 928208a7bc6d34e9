"""Per-object measurements: area S, equivalent diameter D = 2*sqrt(S/pi), centroid, perimeter,
circularity, Feret diameters, bounding box, score; in px and, when a scale is known, in nm / nm^2."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from annotations import geometry
from annotations.model import Instance


@dataclass(frozen=True)
class ObjectMeasure:
    id: int  # 1-based, in input order
    label: str
    area_px: float
    d_px: float
    cx_px: float
    cy_px: float
    perimeter_px: float
    circularity: float  # 4*pi*S/P^2, 1 for a circle
    feret_min_px: float
    feret_max_px: float
    bbox_x0_px: float
    bbox_y0_px: float
    bbox_x1_px: float
    bbox_y1_px: float
    score: float | None = None
    nm_per_px: float | None = None

    @property
    def area_nm2(self) -> float | None:
        return None if self.nm_per_px is None else self.area_px * self.nm_per_px**2

    @property
    def d_nm(self) -> float | None:
        return None if self.nm_per_px is None else self.d_px * self.nm_per_px

    @property
    def perimeter_nm(self) -> float | None:
        return None if self.nm_per_px is None else self.perimeter_px * self.nm_per_px

    @property
    def feret_min_nm(self) -> float | None:
        return None if self.nm_per_px is None else self.feret_min_px * self.nm_per_px

    @property
    def feret_max_nm(self) -> float | None:
        return None if self.nm_per_px is None else self.feret_max_px * self.nm_per_px

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("area_nm2", "d_nm", "perimeter_nm", "feret_min_nm", "feret_max_nm"):
            out[key] = getattr(self, key)
        return out


@dataclass
class MeasureArrays:
    """The same numbers as columns (what statistics and exports work on)."""

    labels: np.ndarray  # (n,) object dtype
    area_px: np.ndarray
    d_px: np.ndarray
    centroid: np.ndarray  # (n, 2)
    perimeter_px: np.ndarray
    circularity: np.ndarray
    feret_min_px: np.ndarray
    feret_max_px: np.ndarray
    bbox: np.ndarray  # (n, 4)
    score: np.ndarray  # (n,) float, nan when none
    # pixels of each object in the instance label image (outputs.lab_formats.rasterise), when made
    mask_area_px: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.area_px)


def measure_arrays(instances: list[Instance]) -> MeasureArrays:
    polys = [i.polygon for i in instances]
    area, centroid, perimeter = geometry.area_centroid_perimeter(polys)
    fmin, fmax = geometry.ferets(polys)
    with np.errstate(invalid="ignore", divide="ignore"):
        circ = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, 0.0)
    return MeasureArrays(
        labels=np.array([i.label for i in instances], dtype=object),
        area_px=area,
        d_px=2.0 * np.sqrt(area / np.pi),
        centroid=centroid,
        perimeter_px=perimeter,
        circularity=np.minimum(circ, 1.0),
        feret_min_px=fmin,
        feret_max_px=fmax,
        bbox=geometry.bboxes(polys),
        score=np.array([np.nan if i.score is None else float(i.score) for i in instances], dtype=np.float64),
    )


def measure(instances: list[Instance], nm_per_px: float | None = None) -> list[ObjectMeasure]:
    """One ObjectMeasure per instance, in order (ids 1..n)."""
    a = measure_arrays(instances)
    return from_arrays(a, nm_per_px)


def from_arrays(a: MeasureArrays, nm_per_px: float | None = None) -> list[ObjectMeasure]:
    rows = zip(
        a.labels.tolist(),
        a.area_px.tolist(),
        a.d_px.tolist(),
        a.centroid.tolist(),
        a.perimeter_px.tolist(),
        a.circularity.tolist(),
        a.feret_min_px.tolist(),
        a.feret_max_px.tolist(),
        a.bbox.tolist(),
        a.score.tolist(),
        strict=True,
    )
    return [
        ObjectMeasure(
            k + 1,
            label,
            area,
            d,
            c[0],
            c[1],
            per,
            circ,
            fmin,
            fmax,
            b[0],
            b[1],
            b[2],
            b[3],
            None if s != s else s,
            nm_per_px,
        )
        for k, (label, area, d, c, per, circ, fmin, fmax, b, s) in enumerate(rows)
    ]


def to_arrays(measures: list[ObjectMeasure]) -> MeasureArrays:
    n = len(measures)
    return MeasureArrays(
        labels=np.array([m.label for m in measures], dtype=object),
        area_px=np.fromiter((m.area_px for m in measures), float, n),
        d_px=np.fromiter((m.d_px for m in measures), float, n),
        centroid=np.array([[m.cx_px, m.cy_px] for m in measures], dtype=float).reshape(n, 2),
        perimeter_px=np.fromiter((m.perimeter_px for m in measures), float, n),
        circularity=np.fromiter((m.circularity for m in measures), float, n),
        feret_min_px=np.fromiter((m.feret_min_px for m in measures), float, n),
        feret_max_px=np.fromiter((m.feret_max_px for m in measures), float, n),
        bbox=np.array(
            [[m.bbox_x0_px, m.bbox_y0_px, m.bbox_x1_px, m.bbox_y1_px] for m in measures], dtype=float
        ).reshape(n, 4),
        score=np.fromiter((np.nan if m.score is None else m.score for m in measures), float, n),
    )
