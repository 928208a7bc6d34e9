"""`segbot inspect/stats/eval` through click, and the issue's "done when" on a real EM image."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from annotations.labelme import write_labelme
from annotations.model import Crop, Instance
from segbot.cli import main
from tests.services import need_service

EMPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "emps-dev"  # ../shared beside the repo
REAL = "78b42bc5e8"  # 174 labelled particles
CORPUS = Path(__file__).parent / "corpus"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixel-edge outline made here with plain cv2 + shapely (not annotations.geometry), so the
    comparison with pixel areas below checks the measuring, not a polygon built from the pixel count.
    Pixel centres at integers: the outline lies on the pixel edges, half a pixel out."""
    import cv2
    import shapely

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=len).reshape(-1, 2).astype(float)
    if len(contour) < 3:
        x0, y0 = contour.min(axis=0) - 0.5
        x1, y1 = contour.max(axis=0) + 0.5
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    shape = shapely.Polygon(contour).buffer(0.5, join_style="mitre")
    shape = max(getattr(shape, "geoms", [shape]), key=lambda g: g.area)
    return np.clip(np.asarray(shape.exterior.coords)[:-1], -0.5, [mask.shape[1] - 0.5, mask.shape[0] - 0.5])


def _real_labelme(
    tmp_path: Path, drop_every_tenth: bool = False, name: str = "gt"
) -> tuple[Path, np.ndarray]:
    if not (EMPS / "images" / f"{REAL}.png").exists():
        need_service("EMPS data", f"missing at {EMPS}")  # CI always has ../shared beside the clone
    image = np.asarray(Image.open(EMPS / "images" / f"{REAL}.png").convert("RGB"))
    seg = np.asarray(Image.open(EMPS / "segmaps" / f"{REAL}.png"))
    ids = [i for i in np.unique(seg) if i]
    instances = [Instance("particle", _outline(seg == i)) for i in ids]
    if drop_every_tenth:
        instances = [inst for k, inst in enumerate(instances) if k % 10 != 9]
    path = tmp_path / name / f"{REAL}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_labelme(path, image, instances, f"{REAL}.png")
    pixel_counts = np.bincount(seg.ravel())[ids]
    return path, pixel_counts


@pytest.mark.slow
def test_done_when_real_image(tmp_path: Path):
    gt, pixel_counts = _real_labelme(tmp_path)
    result = run("stats", gt, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / f"{REAL}_summary.json").read_text())
    assert summary["n_objects"] == len(pixel_counts) == 174
    independent = float(np.mean(2 * np.sqrt(pixel_counts / np.pi)))  # D from the segmap's pixel areas
    assert abs(summary["mean_d_px"] - independent) / independent < 0.01
    with open(tmp_path / "out" / f"{REAL}_objects.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 174

    result = run("eval", gt, gt)
    assert result.exit_code == 0
    assert "precision 1.000" in result.output and "recall 1.000" in result.output

    partial, _ = _real_labelme(tmp_path, drop_every_tenth=True, name="pred")
    result = run("eval", partial, gt, "--json")
    data = json.loads(result.output)
    assert data["count"]["precision"] == 1.0
    assert data["count"]["recall"] == pytest.approx(157 / 174) and f"{data['count']['recall']:.2f}" == "0.90"
    assert data["coco"]["segm"]["AP"] == pytest.approx(157 / 174, abs=0.02)

    # folders: paired by file name
    result = run("eval", tmp_path / "pred", tmp_path / "gt")
    assert "recall 0.902" in result.output


def _small_file(path: Path, nm: float | None = None, crops=()) -> Path:
    image = np.full((100, 120, 3), 40, np.uint8)
    insts = [
        Instance(
            "particle" if k % 3 else "single_site",
            np.array([[x, y], [x + 8, y], [x + 8, y + 6], [x, y + 6]], float),
        )
        for k, (x, y) in enumerate([(5, 5), (30, 5), (60, 10), (5, 50), (40, 60), (80, 70)])
    ]
    write_labelme(
        path, image, insts, path.with_suffix(".png").name, nm_per_px=nm, crops=[Crop(*c) for c in crops]
    )
    return path


def test_stats_several_files_pooled_with_scale(tmp_path: Path):
    a = _small_file(tmp_path / "a.json")
    b = _small_file(tmp_path / "b.json", nm=2.0)
    result = run("stats", a, b, "--out", tmp_path / "out", "--nm-per-px", "0.5", "--log")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    for stem in ("a", "b"):
        assert {
            f"{stem}.json",
            f"{stem}_overlay.png",
            f"{stem}_objects.csv",
            f"{stem}_summary.json",
            f"{stem}_hist.png",
            f"{stem}_summary.txt",
        } <= names
    assert {"pooled_objects.csv", "pooled_summary.json", "pooled_hist.png", "pooled_summary.txt",
            "pooled_coco.json", "pooled.xlsx"} <= names
    pooled = json.loads((tmp_path / "out" / "pooled_summary.json").read_text())
    assert pooled["n_objects"] == 12 and pooled["counts"] == {"particle": 8, "single_site": 4}
    # --nm-per-px overrides the file's own 2.0
    assert pooled["mean_d_nm"] == pytest.approx(0.5 * 2 * np.sqrt(48 / np.pi))
    header = (tmp_path / "out" / "a_objects.csv").read_text().splitlines()[0].split(",")
    assert {"d_px", "d_nm", "area_px", "area_nm2"} <= set(header)


def test_stats_uses_crops_and_file_scale(tmp_path: Path):
    f = _small_file(tmp_path / "c.json", nm=2.0, crops=[(0, 0, 50, 40)])
    result = run("stats", f, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "out" / "c_summary.json").read_text())
    assert s["n_objects"] == 2 and s["region_area_px"] == 2000 and s["nm_per_px"] == 2.0
    assert s["density"] == pytest.approx(2 / (2000 * 4 / 1e6))
    from annotations.labelme import read_labelme

    back = read_labelme(tmp_path / "out" / "c.json")  # crops kept for the correction round trip
    assert len(back.crops) == 1 and len(back.instances) == 2


def test_stats_refuses_bad_input_and_writes_nothing(tmp_path: Path):
    good = _small_file(tmp_path / "a.json")
    result = run("stats", good, CORPUS / "bad_polygon_two_points.json", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "Error:" in result.output and "at least 3" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_inspect_file_dir_and_bad(tmp_path: Path):
    (tmp_path / "d").mkdir()
    f = _small_file(tmp_path / "d" / "a.json")
    result = run("inspect", f)
    assert result.exit_code == 0 and "6 objects" in result.output
    result = run("inspect", f, "--lang", "ru")
    assert "6 объектов" in result.output
    shutil.copy(CORPUS / "empty_crop.json", tmp_path / "d" / "b.json")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "d" / "c.png")
    result = run("inspect", tmp_path / "d")
    assert result.exit_code == 1
    assert "6 objects" in result.output and "contains no labelled object" in result.output
    assert "c.png: image 12x10 px" in result.output and "1 of 3 file(s) refused" in result.output
    result = run("inspect", CORPUS / "unsafe_path_dotdot.json")
    assert result.exit_code == 1 and "outside the folder" in result.output


def test_cli_subprocess_help_is_light():
    import subprocess
    import sys

    code = (
        "import sys; from segbot.cli import main; "
        "from click.testing import CliRunner; r = CliRunner().invoke(main, ['stats', '--help']); "
        "print(r.output); "
        "print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "--nm-per-px" in out and out.strip().endswith("False False False")


def test_custom_crop_label(tmp_path: Path):
    image = np.zeros((60, 80, 3), np.uint8)
    insts = [
        Instance("particle", np.array([[5, 5], [15, 5], [15, 15]], float)),
        Instance("particle", np.array([[50, 40], [60, 40], [60, 50]], float)),
        Instance("region", np.array([[0, 0], [30, 0], [30, 30], [0, 30]], float)),
    ]
    path = write_labelme(tmp_path / "r.json", image, insts, "r.png")
    result = run("inspect", path, "--crop-label", "REGION")
    assert result.exit_code == 0, result.output
    assert "1 crop" in result.output and "1 object outside every crop ignored" in result.output
    result = run("inspect", path)
    assert "3 objects" in result.output
