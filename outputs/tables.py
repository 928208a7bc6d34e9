"""The per-object table: which outlines are written at all (usable_instances), the CSV's columns
and rows; shared by the per-image CSV (outputs.files) and the lab formats (outputs.lab_formats)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from annotations.geometry import area_centroid_perimeter, bboxes, image_frame, pack
from annotations.model import Instance
from core.errors import InputError
from core.i18n import N_
from measures.compare import SetImage
from measures.objects import MeasureArrays
from measures.stats import nearest_neighbour


def csv_columns(scaled: bool, with_image: bool = False, with_mask: bool = False) -> list[str]:
    """The per-object table's columns; with_mask adds area_mask_px, the object's pixel count in
    {stem}_labels.tif (see outputs.lab_formats for the pixel convention)."""
    cols = ["image"] if with_image else []
    cols += [
        "id",
        "class",
        "score",
        "cx_px",
        "cy_px",
        "area_px",
        *(["area_mask_px"] if with_mask else []),
        "d_px",
        "perimeter_px",
        "circularity",
        "feret_min_px",
        "feret_max_px",
        "bbox_x0_px",
        "bbox_y0_px",
        "bbox_x1_px",
        "bbox_y1_px",
        "nnd_px",
    ]
    if scaled:
        cols += [
            "nm_per_px",
            "cx_nm",
            "cy_nm",
            "area_nm2",
            "d_nm",
            "perimeter_nm",
            "feret_min_nm",
            "feret_max_nm",
            "nnd_nm",
        ]
    return cols


def _col(values: np.ndarray, digits: int = 3) -> list[str]:
    return ["" if v != v else f"{v:.{digits}f}" for v in np.asarray(values, dtype=np.float64).tolist()]


def csv_rows(a: MeasureArrays, nm_per_px: float | None, image: str | None = None) -> list[list[str]]:
    """Rows for csv_columns(..., with_mask=a.mask_area_px is not None); formatted column by column
    (thousands of objects)."""
    nnd = nearest_neighbour(a.centroid)
    n = len(a)
    cols: list[list[str]] = [] if image is None else [[image] * n]
    cols += [
        [str(k + 1) for k in range(n)],
        [str(v) for v in a.labels.tolist()],
        _col(a.score, 4),
        _col(a.centroid[:, 0], 2),
        _col(a.centroid[:, 1], 2),
        _col(a.area_px, 2),
        *([_col(a.mask_area_px, 0)] if a.mask_area_px is not None else []),
        _col(a.d_px),
        _col(a.perimeter_px),
        _col(a.circularity, 4),
        _col(a.feret_min_px),
        _col(a.feret_max_px),
        *(_col(a.bbox[:, k], 2) for k in range(4)),
        _col(nnd),
    ]
    if nm_per_px:
        nm = float(nm_per_px)
        cols += [
            [f"{nm:.6g}"] * n,
            _col(a.centroid[:, 0] * nm),
            _col(a.centroid[:, 1] * nm),
            _col(a.area_px * nm * nm),
            _col(a.d_px * nm, 4),
            _col(a.perimeter_px * nm),
            _col(a.feret_min_px * nm),
            _col(a.feret_max_px * nm),
            _col(nnd * nm),
        ]
    return [list(row) for row in zip(*cols, strict=True)] if n else []


def write_csv(path: Path, a: MeasureArrays, nm_per_px: float | None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(csv_columns(bool(nm_per_px), with_mask=a.mask_area_px is not None))
        writer.writerows(csv_rows(a, nm_per_px))
    return path


def usable_instances(instances: list[Instance], image_shape: tuple[int, ...]) -> tuple[list[Instance], int]:
    """Instances that read_labelme will accept back, and how many were dropped.

    Drops outlines with < 3 points, non-finite or zero-area ones, and exact copies, so the LabelMe file
    the user corrects and sends back is never refused; clamps vertices to the image. Vectorised checks.
    """
    x0, y0, x1, y1 = image_frame(image_shape[1], image_shape[0])
    cand = [i for i in instances if len(i.polygon) >= 3]
    if cand:
        verts, starts = pack([i.polygon for i in cand])
        finite = np.logical_and.reduceat(np.isfinite(verts).all(axis=1), starts)
        cand = [i for i, f in zip(cand, finite.tolist(), strict=True) if f]
    if cand:
        boxes = bboxes([i.polygon for i in cand])
        outside = (boxes[:, 0] < x0) | (boxes[:, 1] < y0) | (boxes[:, 2] > x1) | (boxes[:, 3] > y1)
        for k in np.nonzero(outside)[0].tolist():
            poly = cand[k].polygon
            clamped = np.column_stack([np.clip(poly[:, 0], x0, x1), np.clip(poly[:, 1], y0, y1)])
            cand[k] = Instance(cand[k].label, clamped, cand[k].score)
        areas = area_centroid_perimeter([i.polygon for i in cand])[0]
        cand = [i for i, a in zip(cand, areas.tolist(), strict=True) if a > 1e-9]
    kept, seen = [], set()
    for inst in cand:
        key = (inst.label, (np.round(inst.polygon, 6) + 0.0).tobytes())
        if key not in seen:
            seen.add(key)
            kept.append(inst)
    return kept, len(instances) - len(kept)


def sizes_from_csv(text: str) -> SetImage:
    """An objects CSV (csv_columns' table, as written above) read back: class and D of each object, in
    nm too when the table has a d_nm column."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and ("d_px" not in rows[0] or "class" not in rows[0]):
        raise TableError(N_("This CSV is not a segbot objects table (no 'class' and 'd_px' columns)."))
    d_px = np.array([float(r["d_px"]) for r in rows], dtype=np.float64)
    scaled = bool(rows) and "d_nm" in rows[0] and all(r["d_nm"] for r in rows)
    d_nm = np.array([float(r["d_nm"]) for r in rows], dtype=np.float64) if scaled else None
    return SetImage([r["class"] for r in rows], d_px, d_nm)


class TableError(InputError):
    code = "bad_table"
