"""What lab tools open, read back by the tools' own readers: the ImageJ label TIFF (tifffile), the
ROI set (roifile), the COCO JSON (pycocotools), the workbook (openpyxl), against the CSV.

Pixel convention: the label image gives a pixel to an object when the pixel's centre lies inside its
outline (later ids win overlaps); the CSV's area_mask_px is that count, so the two agree exactly. The
test rasterises the outlines again with shapely (an independent point-in-polygon) and checks both.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from annotations.model import Instance
from measures.objects import measure_arrays
from outputs.files import write_outputs, write_pooled

H, W = 90, 120
NM = 2.5


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 23) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def _instances() -> list[Instance]:
    rng = np.random.default_rng(11)
    out = []
    for k in range(14):
        cx, cy = rng.uniform(12, W - 12), rng.uniform(12, H - 12)
        label = "particle" if k % 3 else "single_site"
        out.append(Instance(label, _ellipse(cx + 0.137, cy + 0.291, rng.uniform(3, 9), rng.uniform(3, 9)),
                            score=float(rng.uniform(0.5, 1))))
    out.append(Instance("particle", _ellipse(30.213, 40.377, 8, 6)))  # two overlapping outlines
    out.append(Instance("particle", _ellipse(36.161, 42.309, 7, 7), score=0.9))
    return out


def _shapely_labels(instances: list[Instance]) -> np.ndarray:
    import shapely

    yy, xx = np.mgrid[0:H, 0:W]
    points = shapely.points(xx.ravel() + 0.5, yy.ravel() + 0.5)
    labels = np.zeros(H * W, np.int64)
    for k, inst in enumerate(instances, 1):
        labels[shapely.contains(shapely.Polygon(inst.polygon), points)] = k
    return labels.reshape(H, W)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def written(tmp_path: Path):
    image = np.full((H, W, 3), 40, np.uint8)
    insts = _instances()
    paths = write_outputs(tmp_path, "img1", image, insts, nm_per_px=NM, title="sample")
    return insts, paths


def test_label_tiff_gives_the_csv_count_and_areas(written):
    import tifffile

    insts, paths = written
    rows = _csv(paths["csv"])
    with tifffile.TiffFile(paths["labels"]) as tif:
        labels = tif.asarray()
        assert tif.is_imagej and labels.dtype == np.uint16 and labels.shape == (H, W)
        assert tif.imagej_metadata["unit"] == "um"
        xres = tif.pages.first.tags["XResolution"].value
    assert 1000.0 / (xres[0] / xres[1]) == pytest.approx(NM, rel=1e-6)  # nm/px in the resolution tags
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert len(rows) == len(insts) == len(ids)
    assert [int(r["id"]) for r in rows] == ids.tolist()
    assert [float(r["area_mask_px"]) for r in rows] == counts.astype(float).tolist()
    # the same as an independent rasterisation of the outlines
    assert np.array_equal(labels, _shapely_labels(insts))
    # an object alone covers about its outline area: they differ by partly covered boundary pixels
    for row, inst in zip(rows, insts, strict=True):
        alone = int((_shapely_labels([inst]) > 0).sum())
        assert abs(alone - float(row["area_px"])) <= 0.5 * float(row["perimeter_px"]) + 2
        assert float(row["area_mask_px"]) <= alone  # overlaps only take pixels away
    assert sum(float(r["area_mask_px"]) for r in rows) == int((labels > 0).sum())


def test_label_tiff_scale_read_back_by_our_reader(written):
    from imaging.images import read_image

    _, paths = written
    loaded = read_image(paths["labels"])
    assert loaded.nm_per_px == pytest.approx(NM, rel=1e-6)


def test_roi_set_gives_the_same_outlines(written):
    import roifile

    insts, paths = written
    rois = roifile.roiread(paths["rois"])
    assert len(rois) == len(insts)
    for k, (roi, inst) in enumerate(zip(rois, insts, strict=True), 1):
        assert roi.name == f"{k:04d}-{inst.label}"
        assert roi.roitype == roifile.ROI_TYPE.POLYGON
        assert np.allclose(roi.coordinates(), inst.polygon, atol=1e-4)  # float32 sub-pixel coordinates
    groups = {roi.group for roi, inst in zip(rois, insts, strict=True) if inst.label == "particle"}
    assert len(groups) == 1


def _entries(tmp_path: Path):
    insts = _instances()
    a_insts, b_insts = insts[:9], insts[9:]
    image = np.full((H, W, 3), 40, np.uint8)
    pa = write_outputs(tmp_path, "a", image, a_insts, nm_per_px=NM)
    pb = write_outputs(tmp_path, "b", image, b_insts, nm_per_px=NM)
    items = [("a", measure_arrays(a_insts), image.shape, NM, None),
             ("b", measure_arrays(b_insts), image.shape, NM, None)]
    paths = write_pooled(tmp_path, items, instances=[a_insts, b_insts], file_names=["a.png", "b.png"])
    return (a_insts, b_insts), (pa, pb), paths


def test_coco_loads_in_pycocotools_with_counts_and_scores(tmp_path: Path):
    from pycocotools.coco import COCO

    (a_insts, b_insts), _, paths = _entries(tmp_path)
    coco = COCO(str(paths["coco"]))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(names.values()) == ["particle", "single_site"]
    all_insts = a_insts + b_insts
    for cat_id, name in names.items():
        assert len(coco.getAnnIds(catIds=[cat_id])) == sum(i.label == name for i in all_insts)
    assert len(coco.getImgIds()) == 2
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a.get("score") for a in anns] == [i.score for i in a_insts]
    mask = coco.annToMask(anns[0])  # pycocotools rasterises the polygon
    assert abs(int(mask.sum()) - anns[0]["area"]) < 0.5 * anns[0]["area"]


def test_workbook_numbers_are_the_csvs(tmp_path: Path):
    from openpyxl import load_workbook

    (a_insts, b_insts), (pa, pb), paths = _entries(tmp_path)
    wb = load_workbook(paths["xlsx"], read_only=True)
    assert wb.sheetnames == ["summary", "a", "b", "pooled", "pooled numbers"]
    for sheet, csv_path in (("a", pa["csv"]), ("b", pb["csv"])):
        rows = list(wb[sheet].iter_rows(values_only=True))
        header, body = rows[0], rows[1:]
        assert "area (px²)" in header and "d (nm)" in header and "area (nm²)" in header
        table = _csv(csv_path)
        assert len(body) == len(table)
        for got, want in zip(body, table, strict=True):
            values = list(want.values())
            for cell, text in zip(got, values, strict=True):
                if text == "":
                    assert cell is None
                elif isinstance(cell, str):
                    assert cell == text
                else:
                    assert cell == float(text)
    pooled = list(wb["pooled"].iter_rows(values_only=True))
    assert pooled[0][0] == "image" and len(pooled) - 1 == len(a_insts) + len(b_insts)
    pooled_csv = _csv(paths["csv"])
    assert [float(r["d_nm"]) for r in pooled_csv] == [row[pooled[0].index("d (nm)")] for row in pooled[1:]]
    summary = list(wb["summary"].iter_rows(values_only=True))
    assert [r[1] for r in summary[1:]] == [len(a_insts), len(b_insts)]
    numbers = {(r[0], r[1]): r[2] for r in wb["pooled numbers"].iter_rows(min_row=2, values_only=True)}
    d = np.array([float(r["d_nm"]) for r in pooled_csv])
    assert numbers[("all", "objects")] == len(d)
    sauter = (d**3).sum() / (d**2).sum()
    assert numbers[("all", "surface (Sauter) mean d_s")] == pytest.approx(sauter, rel=1e-5)


def test_empty_result_still_writes_readable_files(tmp_path: Path):
    import roifile
    import tifffile

    paths = write_outputs(tmp_path, "empty", np.zeros((40, 50, 3), np.uint8), [], nm_per_px=None)
    assert tifffile.imread(paths["labels"]).max() == 0
    assert roifile.roiread(paths["rois"]) == []
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_objects"] == 0 and summary["excluded_regions"] == []
