"""What lab tools open: an ImageJ label TIFF, an ImageJ ROI set, a COCO JSON, an Excel workbook.

Pixel convention (the same as LabelMe's, ImageJ's and COCO's polygons): a polygon vertex (x, y) is in
pixel-corner coordinates, pixel (col, row) covering [col, col + 1) x [row, row + 1). The label image
gives a pixel to an object when the pixel's centre (col + 0.5, row + 0.5) lies inside its outline
(matplotlib's Path.contains_points); where outlines overlap the later object (higher id) keeps the
pixel. The per-object table's `area_mask_px` is that object's pixel count in the label image, so the
two agree exactly; `area_px` stays the outline's own (shoelace) area, which differs from the count
by the partly covered boundary pixels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotations.model import Instance
from measures.objects import measure_arrays
from measures.sizes import Metal
from measures.stats import ImageMeasures, pooled_stats
from outputs.numbers import summary_rows
from outputs.tables import csv_columns, csv_rows, usable_instances

UINT16_MAX = 65535


def rasterise(instances: Sequence[Instance], shape: tuple[int, ...]) -> np.ndarray:
    """Instance label image: 0 background, k + 1 for instances[k]; uint16, or uint32 past 65,535."""
    from matplotlib.path import Path as MplPath

    h, w = int(shape[0]), int(shape[1])
    dtype = np.uint16 if len(instances) <= UINT16_MAX else np.uint32
    labels = np.zeros((h, w), dtype)
    for k, inst in enumerate(instances, 1):
        poly = np.asarray(inst.polygon, dtype=np.float64)
        if len(poly) < 3 or not np.isfinite(poly).all():
            continue
        x0 = max(0, int(np.floor(poly[:, 0].min() - 0.5)))
        x1 = min(w, int(np.ceil(poly[:, 0].max() + 0.5)))
        y0 = max(0, int(np.floor(poly[:, 1].min() - 0.5)))
        y1 = min(h, int(np.ceil(poly[:, 1].max() + 0.5)))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        centres = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
        inside = MplPath(poly).contains_points(centres).reshape(yy.shape)
        labels[y0:y1, x0:x1][inside] = k
    return labels


def mask_areas(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of each id 1..n in a label image."""
    return np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1].astype(np.float64)


def write_label_tiff(path: Path, labels: np.ndarray, nm_per_px: float | None) -> Path:
    """ImageJ-compatible instance label TIFF (opens in Fiji, napari, cellpose), the scale in its
    resolution tags (pixels per micron, ImageJ unit 'um')."""
    import tifffile

    data = labels if labels.dtype == np.uint16 else labels.astype(np.float32)  # ImageJ has no uint32
    # deflate (ImageJ, Fiji, tifffile read it): an 8k label image is 128 MB raw, a few MB compressed
    kwargs: dict = {"imagej": True, "metadata": {"axes": "YX"}, "compression": "zlib"}
    if nm_per_px:
        px_per_um = 1000.0 / float(nm_per_px)
        kwargs["resolution"] = (px_per_um, px_per_um)
        kwargs["metadata"]["unit"] = "um"
    tifffile.imwrite(path, data, **kwargs)
    return Path(path)


def _roi_name(k: int, label: str) -> str:
    return f"{k:04d}-{re.sub(r'[^0-9A-Za-z_.+-]+', '_', label)}"


def write_roi_zip(path: Path, instances: Sequence[Instance]) -> Path:
    """ImageJ ROI set (.zip): one sub-pixel polygon per object, named '0001-particle' (id-class),
    grouped by class (ImageJ's ROI groups 1..255)."""
    import roifile

    classes = {label: k for k, label in enumerate(sorted({i.label for i in instances}), 1)}
    rois = []
    for k, inst in enumerate(instances, 1):
        points = np.asarray(inst.polygon, dtype=np.float64)
        roi = roifile.ImagejRoi.frompoints(points, name=_roi_name(k, inst.label))
        roi.roitype = roifile.ROI_TYPE.POLYGON
        roi.group = min(classes[inst.label], 255)
        rois.append(roi)
    path = Path(path)
    path.unlink(missing_ok=True)
    if rois:
        roifile.roiwrite(path, rois, mode="w")
    else:  # an empty set is still a valid (empty) zip archive
        import zipfile

        with zipfile.ZipFile(path, "w"):
            pass
    return path


# ------------------------------------------------------------------ result sets


@dataclass
class SetEntry:
    """One image of a result set."""

    name: str  # the image's stem: sheet name, per-image file prefix
    file_name: str  # the image file, as COCO's file_name
    shape: tuple[int, ...]
    instances: list[Instance]
    nm_per_px: float | None = None
    region_area_px: float | None = None


def coco_dict(entries: Sequence[SetEntry]) -> dict:
    """COCO instance segmentation: images, categories (the classes), annotations with polygon,
    bbox, area (outline area, px^2) and score."""
    names = sorted({i.label for e in entries for i in e.instances})
    cat = {name: k for k, name in enumerate(names, 1)}
    images, annotations = [], []
    ann_id = 0
    for image_id, entry in enumerate(entries, 1):
        h, w = int(entry.shape[0]), int(entry.shape[1])
        images.append({"id": image_id, "file_name": entry.file_name, "width": w, "height": h,
                       **({"nm_per_px": entry.nm_per_px} if entry.nm_per_px else {})})
        instances, _ = usable_instances(entry.instances, entry.shape)
        a = measure_arrays(instances)
        for k, inst in enumerate(instances):
            ann_id += 1
            x0, y0, x1, y1 = (float(v) for v in a.bbox[k])
            ann = {"id": ann_id, "image_id": image_id, "category_id": cat[inst.label],
                   "segmentation": [np.round(inst.polygon, 3).ravel().tolist()],
                   "area": round(float(a.area_px[k]), 3), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
            if inst.score is not None:
                ann["score"] = float(inst.score)
            annotations.append(ann)
    return {"info": {"description": "segbot predictions", "version": "1.0"}, "licenses": [],
            "images": images, "categories": [{"id": k, "name": n, "supercategory": "object"}
                                              for n, k in cat.items()],
            "annotations": annotations}


def write_coco(path: Path, entries: Sequence[SetEntry]) -> Path:
    Path(path).write_text(json.dumps(coco_dict(entries)), encoding="utf-8")
    return Path(path)


_UNIT_SUFFIX = (("_nm2", "nm²"), ("_px2", "px²"), ("_nm", "nm"), ("_px", "px"))


def header_with_unit(column: str) -> str:
    """'area_px' -> 'area (px²)', 'd_nm' -> 'd (nm)', 'score' -> 'score (0..1)'."""
    special = {"score": "score (0..1)", "circularity": "circularity (1 = circle)",
               "nm_per_px": "pixel size (nm/px)"}
    if column in special:
        return special[column]
    if column.startswith("area") and column.endswith("_px"):
        return f"{column[:-3]} (px²)"
    for suffix, unit in _UNIT_SUFFIX:
        if column.endswith(suffix):
            return f"{column[: -len(suffix)]} ({unit})"
    return column


def _cell(column: str, text: str):
    if text == "":
        return None
    if column in ("image", "class"):
        return text
    if column == "id":
        return int(text)
    return float(text)


def _sheet_title(name: str, used: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\]", "_", name).strip("'") or "image"
    base = base[:28]
    title, k = base, 2
    while title.lower() in used or title.lower() in ("pooled", "summary", "pooled numbers"):
        title, k = f"{base[:25]}_{k}", k + 1
    used.add(title.lower())
    return title


def table_rows(
    entry: SetEntry, with_image: bool = False, scaled: bool | None = None, with_arrays: bool = False
):
    """(columns, rows of strings) of an entry: the same table as its CSV (outputs.tables.csv_rows);
    with_arrays: also the measured arrays, (columns, rows, arrays)."""
    instances, _ = usable_instances(entry.instances, entry.shape)
    a = measure_arrays(instances)
    a.mask_area_px = mask_areas(rasterise(instances, entry.shape), len(instances))
    scaled = bool(entry.nm_per_px) if scaled is None else scaled
    columns = csv_columns(scaled, with_image=with_image, with_mask=True)
    rows = csv_rows(a, entry.nm_per_px if scaled else None, image=entry.name if with_image else None)
    return (columns, rows, a) if with_arrays else (columns, rows)


def write_workbook(path: Path, entries: Sequence[SetEntry], metal: Metal | None = None) -> Path:
    """Excel workbook: a summary sheet, one sheet per image with the per-object table, a pooled sheet
    (every object with its image), and a "pooled numbers" sheet (weighted means, intervals, fit,
    dispersion with a metal: outputs.numbers.summary_rows); units in the headers; numbers as numbers."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    summary = wb.create_sheet("summary")
    summary.append(["image", "objects", "pixel size (nm/px)", "analysed area (px²)"])
    all_scaled = bool(entries) and all(e.nm_per_px for e in entries)
    tables, measured = [], []
    for entry in entries:
        columns, rows, a = table_rows(entry, with_arrays=True)
        tables.append((entry, columns, rows))
        measured.append(ImageMeasures(entry.name, a, entry.shape, entry.nm_per_px, entry.region_area_px))
        h, w = int(entry.shape[0]), int(entry.shape[1])
        summary.append([entry.name, len(rows), entry.nm_per_px, float(entry.region_area_px or h * w)])
    used: set[str] = set()
    for entry, columns, rows in tables:
        sheet = wb.create_sheet(_sheet_title(entry.name, used))
        sheet.append([header_with_unit(c) for c in columns])
        for row in rows:
            sheet.append([_cell(c, v) for c, v in zip(columns, row, strict=True)])
    pooled = wb.create_sheet("pooled")
    header_done = False
    for entry in entries:
        columns, rows = table_rows(entry, with_image=True, scaled=all_scaled)
        if not header_done:
            pooled.append([header_with_unit(c) for c in columns])
            header_done = True
        for row in rows:
            pooled.append([_cell(c, v) for c, v in zip(columns, row, strict=True)])
    if not header_done:
        pooled.append([header_with_unit(c) for c in csv_columns(all_scaled, with_image=True, with_mask=True)])
    numbers = wb.create_sheet("pooled numbers")
    numbers.append(["group", "quantity", "value", "unit"])
    for row in summary_rows(pooled_stats(measured, metal)):
        numbers.append(row)
    wb.save(path)
    return Path(path)


def write_result_set(
    out_dir: Path, entries: Sequence[SetEntry], stem: str = "results", metal: Metal | None = None
) -> dict[str, Path]:
    """The set-level files: {stem}_coco.json and {stem}.xlsx."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"coco": write_coco(out_dir / f"{stem}_coco.json", entries),
            "xlsx": write_workbook(out_dir / f"{stem}.xlsx", entries, metal)}
