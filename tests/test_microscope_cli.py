"""The issue's "done when": a TEM .dm4 and a flattened SEM TIFF with an info bar go through
`segbot inspect` and `segbot predict` (click's CliRunner) with the right nm/px, shown and used, and no
detection on the bar. A trained model is too slow to build here: `predict` runs with the fake
ThresholdDetector (a real pipeline detector stand-in, tests/fake_detector.py) in place of the
loaded bundle, so everything after loading the model is the command's own code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segbot.cli import main
from tests.fake_detector import ThresholdDetector, disc_image
from tests.microscope_files import dm_bytes
from tests.scalebar_images import Case, draw_case
from tests.test_infobar import need_tesseract

DM_NM = 0.52


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path):
    import tifffile

    discs = [(50 + 70 * (k % 4), 50 + 70 * (k // 4), 8 + k % 5) for k in range(12)]
    tem = disc_image(240, 320, discs)[..., 0].astype(np.uint16) * 16  # 12-bit-ish TEM counts
    (tmp_path / "tem.dm4").write_bytes(dm_bytes(tem, DM_NM))
    drawn = draw_case(Case(value=200, unit="nm", nm_per_px=7.34, layout="above", size=16, seed=5))
    tifffile.imwrite(tmp_path / "sem.tif", drawn.image)  # flattened export: no scale metadata
    return tmp_path, drawn


def test_inspect_shows_each_files_scale(files):
    need_tesseract()
    folder, drawn = files
    out = run("inspect", folder / "tem.dm4").output
    assert "tem.dm4: image 320x240 px (DM4 file), scale 0.52 nm/px from the DM4 file's calibration" in out
    out = run("inspect", folder / "sem.tif").output
    first = out.splitlines()[0]
    nm = float(first.split("scale ")[1].split(" nm/px")[0])
    assert nm == pytest.approx(drawn.nm_per_px, rel=0.01)
    assert "from the scale bar: 200 nm = " in first and "info bar" in first and "left out" in first
    russian = run("inspect", folder / "sem.tif", "--lang", "ru").output.splitlines()
    assert "источник: масштабная линейка: 200 nm = " in russian[0], russian
    assert "не анализируется: информационная полоса x 0.." in russian[0], russian
    assert russian[1].startswith("примечание: Найдена информационная полоса"), russian
    out = run("inspect", folder / "tem.dm4", "--lang", "ru").output
    assert ("tem.dm4: снимок 320x240 пикс. (файл DM4), масштаб 0.52 нм/пикс., источник: калибровка файла "
            "DM4") in out


def test_predict_uses_the_scale_and_finds_nothing_on_the_bar(files, monkeypatch):
    need_tesseract()
    import segmodel.detector

    folder, drawn = files
    monkeypatch.setattr(segmodel.detector, "load_detector",
                        lambda *a, **k: ThresholdDetector(level=140, tile_size=256))
    (folder / "model").mkdir()
    out_dir = folder / "out"
    result = run("predict", folder / "model", folder / "tem.dm4", folder / "sem.tif", "--out", out_dir,
                 "--threshold", "0.1")
    assert result.exit_code == 0, result.output
    assert "tem.dm4: scale 0.52 nm/px from the DM4 file's calibration" in result.output
    assert "sem.tif: scale " in result.output and "from the scale bar: 200 nm" in result.output

    tem = json.loads((out_dir / "tem_summary.json").read_text())
    assert tem["nm_per_px"] == pytest.approx(DM_NM) and tem["n_objects"] == 12
    assert tem["scale_source"] == "the DM4 file's calibration"
    sem = json.loads((out_dir / "sem_summary.json").read_text())
    assert sem["nm_per_px"] == pytest.approx(drawn.nm_per_px, rel=0.01)
    x0, y0, x1, y1 = drawn.excluded
    h, w = drawn.image.shape[:2]
    assert sem["region_area_px"] == h * w - (x1 - x0) * (y1 - y0)  # density is over the micrograph only
    assert sem["excluded_regions"] == [{"x0": x0, "y0": y0, "x1": x1, "y1": y1, "kind": "info_bar"}]
    with open(out_dir / "sem_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(float(r["cy_px"]) < y0 for r in rows)
    assert float(rows[0]["d_nm"]) == pytest.approx(float(rows[0]["d_px"]) * sem["nm_per_px"], rel=1e-3)
    for name in ("tem_labels.tif", "tem_rois.zip", "sem_labels.tif", "sem_rois.zip", "results_coco.json",
                 "results.xlsx"):
        assert (out_dir / name).is_file(), name
