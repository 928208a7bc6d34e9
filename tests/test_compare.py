"""`segbot compare`: two real EMPS sets (a folder of LabelMe files against a folder of results), the
numbers against scipy on the same diameters, the picture, and the refusals (scaled vs unscaled, a
set mixing both)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats as sps

from annotations.geometry import mask_to_polygon
from annotations.labelme import write_labelme
from annotations.model import Instance
from segbot.cli import main
from tests.services import need_service

EMPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "emps-dev"
SET_A = ("78b42bc5e8",)  # 174 particles
SET_B = ("7ea28e7e54", "9fa90de188")  # 42 + 38 particles


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def emps_labelme(folder: Path, image_id: str, nm_per_px: float | None = None) -> Path:
    """A LabelMe file of an EMPS image with its instance map's particles as outlines."""
    if not (EMPS / "images" / f"{image_id}.png").exists():
        need_service("EMPS data", f"missing at {EMPS}")
    image = np.asarray(Image.open(EMPS / "images" / f"{image_id}.png").convert("RGB"))
    seg = np.asarray(Image.open(EMPS / "segmaps" / f"{image_id}.png"))
    instances = []
    for i in np.unique(seg):
        poly = mask_to_polygon(seg == i) if i else None
        if poly is not None:
            instances.append(Instance("particle", poly))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image_id}.json"
    return write_labelme(path, image, instances, f"{image_id}.png", nm_per_px=nm_per_px)


def _d(csv_paths) -> np.ndarray:
    out = []
    for p in csv_paths:
        with open(p, newline="", encoding="utf-8") as fh:
            out += [float(r["d_px"]) for r in csv.DictReader(fh)]
    return np.array(out)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sets")
    for image_id in SET_A:
        emps_labelme(root / "fresh", image_id)
    for image_id in SET_B:
        emps_labelme(root / "spent_labelme", image_id)
    result = run("stats", root / "spent_labelme", "--out", root / "spent")  # a folder of results
    assert result.exit_code == 0, result.output
    return root


def test_compare_two_real_sets(sets: Path, tmp_path: Path):
    result = run("compare", sets / "fresh", sets / "spent", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    # the diameters each side used, read independently: the stats tables of both sets
    run("stats", sets / "fresh", "--out", tmp_path / "fresh_out")
    d_a = _d(sorted((tmp_path / "fresh_out").glob("*_objects.csv")))
    d_b = _d(sorted(p for p in (sets / "spent").glob("*_objects.csv") if not p.name.startswith("pooled")))
    assert len(d_a) == 174 and len(d_b) == 80
    rows = {r[0]: r for r in csv.reader(open(tmp_path / "cmp" / "compare.csv", encoding="utf-8"))}
    assert float(rows["objects"][1]) == 174 and float(rows["objects"][2]) == 80
    assert float(rows["number mean d_n"][1]) == pytest.approx(d_a.mean(), rel=1e-4)
    sauter_b = (d_b**3).sum() / (d_b**2).sum()
    assert float(rows["surface (Sauter) mean d_s"][2]) == pytest.approx(sauter_b, rel=1e-4)
    assert float(rows["mean ratio B/A"][1]) == pytest.approx(d_b.mean() / d_a.mean(), rel=1e-4)
    lo, hi = float(rows["mean ratio 95% CI"][1]), float(rows["mean ratio 95% CI"][2])
    assert lo < d_b.mean() / d_a.mean() < hi
    assert float(rows["Kolmogorov-Smirnov D, p"][2]) == pytest.approx(sps.ks_2samp(d_a, d_b).pvalue, rel=1e-3)
    mw = sps.mannwhitneyu(d_a, d_b, alternative="two-sided").pvalue
    assert float(rows["Mann-Whitney U, p"][2]) == pytest.approx(mw, rel=1e-3)
    text = (tmp_path / "cmp" / "compare.txt").read_text(encoding="utf-8")
    assert "mean size 'spent' / 'fresh' = " in text and "(Kolmogorov-Smirnov)" in text
    assert ("the size distributions differ" in text) == (sps.ks_2samp(d_a, d_b).pvalue < 0.05)
    picture = Image.open(tmp_path / "cmp" / "compare.png")
    assert picture.size[0] > 800 and np.asarray(picture.convert("L")).std() > 10  # something drawn
    assert result.output.startswith("quantity")


def test_scaled_set_is_not_compared_with_an_unscaled_one(sets: Path, tmp_path: Path):
    emps_labelme(tmp_path / "scaled", SET_B[0], nm_per_px=0.5)
    result = run("compare", sets / "fresh", tmp_path / "scaled", "--out", tmp_path / "cmp")
    assert result.exit_code == 1
    assert "Cannot compare 'scaled' (sizes in nm) with 'fresh' (sizes in pixels, no scale)" in result.output
    assert not (tmp_path / "cmp").exists()
    # a folder of both kinds is refused too
    emps_labelme(tmp_path / "scaled", SET_B[1])
    result = run("compare", tmp_path / "scaled", sets / "fresh", "--out", tmp_path / "cmp")
    assert result.exit_code == 1 and "mixes images with a scale (1) and without one (1)" in result.output
    # the same scale given to both: compared in nm
    result = run("compare", sets / "fresh", tmp_path / "scaled", "--out", tmp_path / "cmp",
                 "--nm-per-px", "0.5", "--metal", "pt")
    assert result.exit_code == 0, result.output
    assert "dispersion (Pt)" in result.output and "nm" in result.output


def test_predict_gives_the_numbers_and_its_folder_compares(sets: Path, tmp_path: Path, monkeypatch):
    """`segbot predict --metal Pt` on a real micrograph (a threshold detector in place of the model):
    the printed lines, the summary and the workbook's "pooled numbers" carry d_s and the dispersion of
    the objects in its CSV; the results folder is a set `segbot compare` reads."""
    import openpyxl

    import segmodel.detector
    from tests.fake_detector import ThresholdDetector

    monkeypatch.setattr(segmodel.detector, "load_detector",
                        lambda *a, **k: ThresholdDetector(level=120, tile_size=256))
    image = tmp_path / f"{SET_A[0]}.png"
    image.write_bytes((EMPS / "images" / f"{SET_A[0]}.png").read_bytes())
    (tmp_path / "model").mkdir()
    out = tmp_path / "out"
    result = run("predict", tmp_path / "model", image, "--out", out, "--nm-per-px", "0.5", "--metal", "Pt",
                 "--threshold", "0.1", "--no-auto-scale")
    assert result.exit_code == 0, result.output
    d = np.array([float(r["d_nm"]) for r in csv.DictReader(open(out / f"{SET_A[0]}_objects.csv"))])
    assert len(d) > 10
    sauter = (d**3).sum() / (d**2).sum()
    summary = json.loads((out / f"{SET_A[0]}_summary.json").read_text())
    assert summary["sauter_d_nm"] == pytest.approx(sauter, rel=1e-6)
    assert summary["dispersion"] == pytest.approx(min(1.0, 1.1227 / sauter), rel=1e-3)
    assert f"dispersion (Pt) {summary['dispersion']:.2f}" in result.output and "d_s " in result.output
    sheet = openpyxl.load_workbook(out / "results.xlsx")["pooled numbers"]
    rows = {(r[0], r[1]): r[2] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert rows[("all", "surface (Sauter) mean d_s")] == pytest.approx(sauter, rel=1e-6)
    assert rows[("all", "dispersion (Pt, spheres, Bergeret & Gallezot 2008)")] == pytest.approx(
        summary["dispersion"])
    result = run("compare", out, sets / "fresh", "--out", tmp_path / "cmp")
    assert result.exit_code == 1 and "Cannot compare 'out' (sizes in nm) with 'fresh'" in result.output
    result = run("compare", out, sets / "fresh", "--out", tmp_path / "cmp", "--nm-per-px", "0.5")  # both nm
    assert result.exit_code == 0 and "objects, nm" not in result.output and "d_n, nm" in result.output
