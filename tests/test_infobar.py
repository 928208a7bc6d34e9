"""Info bars and scale bars of flattened SEM exports (imaging/infobar.py): the regions found, the
bar measured and its label read (Tesseract), the scale used unless the file has one, and the
pipeline finding no object on the bar. Images are drawn in code (tests/scalebar_images.py) with a
known scale; the benchmark (bench/bench_scalebar.py) runs the full set."""

from __future__ import annotations

import io

import numpy as np
import pytest

from imaging.infobar import Region, analyse, analyse_many, analysed_area, parse_label, tesseract_available
from tests.fake_detector import ThresholdDetector, disc_image
from tests.scalebar_images import Case, cases, draw_case, micrograph
from tests.services import need_service


def need_tesseract() -> None:
    """The tesseract-ocr program: a failure under CI (deploy/system-packages.sh installs it), else skip."""
    if not tesseract_available():
        need_service("the tesseract-ocr program", "is missing (bash deploy/system-packages.sh installs it)")


def png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("text", "want"), [
    ("200 nm", (200.0, "nm", True)), ("1 µm", (1.0, "µm", True)), ("500nm", (500.0, "nm", True)),
    ("0.5 um", (0.5, "µm", True)), ("0,5 µm", (0.5, "µm", True)), ("2 μm", (2.0, "µm", True)),
    # how Tesseract's English model reads the micro sign and a 1 or a 5
    ("lum", (1.0, "µm", False)), ("5 pm", (5.0, "µm", False)), ("Spm", (5.0, "µm", False)),
    ("2yum", (2.0, "µm", False)), ("HFW 3.12", None), ("mag 50 000 x", None), ("", None),
])
def test_parse_label(text, want):
    assert parse_label(text) == want


SAMPLE = [cases()[k] for k in (0, 4, 8, 13, 20, 29, 52, 66, 75, 89)]  # fonts, sizes, layouts, units, JPEG


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: f"{c.seed}-{c.layout}-{c.font[:9]}-{c.size}")
def test_regions_and_bar_length_without_ocr(case: Case):
    drawn = draw_case(case)
    result = analyse(drawn.image, read_label=False)
    assert [(r.x0, r.y0, r.x1, r.y1) for r in result.regions] == [drawn.excluded]
    assert result.regions[0].kind == ("scale_box" if case.layout == "box" else "info_bar")
    assert result.bar_px == pytest.approx(drawn.bar_px, rel=0.005)
    assert result.scale is None


def test_plain_images_have_no_info_bar():
    rng = np.random.default_rng(2)
    field = np.repeat(micrograph(300, 400, 4)[..., None], 3, 2)
    border = np.vstack([field, np.zeros((40, 400, 3), np.uint8)])  # a black border without text
    for image in (np.repeat(micrograph(400, 500, 3)[..., None], 3, 2),
                  disc_image(300, 400, [(50, 50, 10), (200, 250, 20), (390, 290, 15)]),
                  rng.integers(0, 255, (300, 300, 3), dtype=np.uint8), border):
        result = analyse(image, read_label=False)
        assert result.regions == [] and result.bar_px is None


def test_scale_bar_read_on_a_few_images():
    need_tesseract()
    drawn = [draw_case(c) for c in SAMPLE]
    results = analyse_many([d.image for d in drawn])
    for case, d, result in zip(SAMPLE, drawn, results, strict=True):
        assert result.scale is not None, case
        want_unit = "nm" if case.unit == "nm" else "µm"
        assert result.scale.label == f"{case.value:g} {want_unit}"
        assert result.scale.nm_per_px == pytest.approx(d.nm_per_px, rel=0.01)
        assert 0 < result.scale.confidence <= 1


def test_read_image_takes_the_bars_scale_and_says_so():
    need_tesseract()
    drawn = draw_case(Case(value=200, unit="nm", nm_per_px=7.34, layout="above", seed=1))
    loaded = read(png(drawn.image), "sem.png")
    assert loaded.nm_per_px == pytest.approx(drawn.nm_per_px, rel=0.01)
    assert loaded.scale_bar.source == "bar"
    assert str(loaded.scale_source) == f"the scale bar: 200 nm = {loaded.scale_bar.length_px:.1f} px"
    assert loaded.scale_summary("/scale to change").startswith(f"scale {loaded.nm_per_px:.3g} nm/px from the")
    assert loaded.scale_confidence == loaded.scale_bar.confidence
    assert [(r.x0, r.y0, r.x1, r.y1) for r in loaded.excluded] == [drawn.excluded]
    h, w = drawn.image.shape[:2]
    x0, y0, x1, y1 = drawn.excluded
    assert loaded.analysed_area_px == h * w - (x1 - x0) * (y1 - y0)


def test_a_printed_field_width_is_used_when_the_bar_agrees():
    """The data bar prints "HFW 4.7 µm" (the drawn scale over 640 px, 3 digits): more precise than a
    27 px bar, and the bar agrees with it, so the width is used, named, and the reading is sure."""
    need_tesseract()
    drawn = draw_case(Case(value=200, unit="nm", nm_per_px=7.34, layout="above", seed=1, hfw=True))
    loaded = read(png(drawn.image), "sem.png")
    assert str(loaded.scale_source) == "the printed field width: HFW 4.7 µm over 640 px"
    assert loaded.nm_per_px == pytest.approx(4700 / 640)
    assert loaded.scale_bar.bar_nm_per_px == pytest.approx(drawn.nm_per_px, rel=0.01)
    assert loaded.scale_confidence >= 0.9
    assert [(r.x0, r.y0, r.x1, r.y1) for r in loaded.excluded] == [drawn.excluded]


def test_reading_the_bar_leaves_the_environment_as_it_was(monkeypatch):
    """OCR runs Tesseract on one OpenMP thread without leaving OMP_THREAD_LIMIT behind: processes
    started later inherited it, and a 2-thread training under it hung (trainer/threads.py)."""
    import os

    need_tesseract()
    drawn = draw_case(Case(value=500, unit="nm", nm_per_px=3.1, layout="above", seed=2))
    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    assert read(png(drawn.image), "sem.png").scale_bar is not None
    assert "OMP_THREAD_LIMIT" not in os.environ
    monkeypatch.setenv("OMP_THREAD_LIMIT", "3")  # the operator's own value stays
    assert read(png(drawn.image), "sem.png").scale_bar is not None
    assert os.environ["OMP_THREAD_LIMIT"] == "3"


def read(data: bytes, name: str):
    from imaging.images import read_image

    return read_image(data, name=name, info_bar=True)


def test_the_files_own_scale_wins_over_the_bar():
    import tifffile

    need_tesseract()
    drawn = draw_case(Case(value=500, unit="nm", nm_per_px=3.1, seed=2))
    buf = io.BytesIO()
    tifffile.imwrite(buf, drawn.image, imagej=True, resolution=(250, 250), metadata={"unit": "um"})
    loaded = read(buf.getvalue(), "sem.tif")
    assert loaded.nm_per_px == pytest.approx(4.0) and "ImageJ" in str(loaded.scale_source)
    assert loaded.excluded and any("the file's metadata 4 nm/px is used" in n for n in map(str, loaded.notes))


def test_without_tesseract_the_bar_is_still_left_out(monkeypatch):
    import imaging.infobar as infobar

    monkeypatch.setattr(infobar, "tesseract_available", lambda: False)
    drawn = draw_case(Case(seed=3))
    loaded = read(png(drawn.image), "sem.png")
    assert loaded.nm_per_px is None and len(loaded.excluded) == 1
    assert any("tesseract-ocr" in n for n in map(str, loaded.notes))


def sem_with_bar(layout: str = "above") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Bright particles on a dark field (what ThresholdDetector finds) with a white-on-black info bar."""
    drawn = draw_case(Case(layout=layout, dark=True, size=16, seed=4))
    return drawn.image, drawn.excluded


@pytest.mark.parametrize("layout", ["above", "box"])
def test_pipeline_finds_nothing_on_the_bar(layout: str):
    from imaging.images import read_image
    from inference.pipeline import PredictOptions, predict_image

    image, (x0, y0, x1, y1) = sem_with_bar(layout)
    loaded = read_image(png(image), name="sem.png", info_bar=True)
    assert [(r.x0, r.y0, r.x1, r.y1) for r in loaded.excluded] == [(x0, y0, x1, y1)]

    def on_bar(instances):
        return [i for i in instances if (lambda c: x0 <= c[0] < x1 and y0 <= c[1] < y1)(i.polygon.mean(0))]

    detector = ThresholdDetector(level=140, tile_size=256)
    bare = predict_image(loaded.image, detector, PredictOptions(threshold=0.1))
    assert on_bar(bare.instances), "the fake detector must see the bar's text, else this proves nothing"
    kept = predict_image(loaded.image, detector, PredictOptions(threshold=0.1, exclude=loaded.excluded))
    assert kept.instances and not on_bar(kept.instances)
    for inst in kept.instances:  # in whole-image pixels, none reaching into an edge band
        assert inst.polygon[:, 0].max() <= image.shape[1] and inst.polygon[:, 1].max() <= image.shape[0]
        if layout == "above":
            assert inst.polygon[:, 1].max() <= y0
    off_bar = len(bare.instances) - len(on_bar(bare.instances))
    assert len(kept.instances) == pytest.approx(off_bar, abs=2)  # objects cut by the crop edge may differ


def test_analysed_area_is_the_union_outside_the_regions():
    regions = [Region(0, 80, 100, 100, "info_bar"), Region(70, 60, 100, 90, "scale_box")]
    # 100 x 100 image: the band is 2000 px, the box adds 30 x 20 above the band
    assert analysed_area((100, 100, 3), regions) == 100 * 100 - 2000 - 600
    assert analysed_area((100, 100), []) == 10000
