"""The reader's messages as Texts: errors keep theirs, notes go to JSON and back, every message has a
Russian translation with the same values and three plural forms, and Russian renders read right."""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotations.crops import format_summary, summarize_annotation
from annotations.errors import BadPolygon
from annotations.labelme import read_labelme
from core.errors import InputError
from core.i18n import N_, NP_, Text, dump_text, load_text, render
from imaging.images import read_image
from outputs.files import format_stats

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())["files"]


def _png(h: int = 60, w: int = 80) -> bytes:
    rng = np.random.default_rng(0)
    return cv2.imencode(".png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes()


def _shape(label: str, points: list, shape_type: str = "polygon") -> dict:
    return {"label": label, "points": points, "shape_type": shape_type, "group_id": None, "flags": {}}


def _square(x: float, y: float, side: float = 8) -> list:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


def _labelme(shapes: list, name: str = "t.json"):
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "img.png",
           "imageData": base64.b64encode(_png()).decode(), "imageHeight": 60, "imageWidth": 80}
    return read_labelme(json.dumps(doc).encode(), name=name)


# ------------------------------------------------------------------ Text and InputError


def test_a_text_goes_to_json_and_back_with_nested_texts_and_numpy_values() -> None:
    text = NP_("{n} shape ({numbers}) crosses itself", "{n} shapes ({numbers}) cross themselves",
               n=np.int64(12), numbers=N_("{shown} and {more} more", shown="#1, #2", more=np.int32(10)),
               value=np.float64(0.25), missing=float("nan"))
    stored = json.dumps(dump_text(text), allow_nan=False)  # PostgreSQL's json takes no NaN
    back = load_text(json.loads(stored))
    assert isinstance(back, Text) and back.plural == text.plural and back.count == "n"
    assert str(back) == str(text) == "12 shapes (#1, #2 and 10 more) cross themselves"
    assert np.isnan(back.values["missing"]) and back.values["value"] == 0.25


def test_an_old_rows_plain_string_stays_itself() -> None:
    assert load_text("Shape #3 crosses itself; the largest part was kept.") == (
        "Shape #3 crosses itself; the largest part was kept.")
    assert dump_text("plain") == "plain" and render("ru", load_text("plain")) == "plain"


def test_an_input_error_keeps_its_text_and_says_english() -> None:
    text = N_("'{name}': {shape} {problem}", name="a.json", shape=N_("shape #{n}", n=3),
              problem=N_("has zero radius; redraw it."))
    error = BadPolygon(text)
    assert error.text is text and str(error) == "'a.json': shape #3 has zero radius; redraw it."
    assert error.code == "bad_polygon"
    again = pickle.loads(pickle.dumps(error))  # a worker's error crossing a process keeps its Text
    assert type(again) is BadPolygon and again.text == text and str(again) == str(error)
    assert InputError("plain English").text == "plain English"


def test_every_corpus_refusal_reads_in_russian_and_names_its_file() -> None:
    for entry in MANIFEST:
        kwargs = {"max_bytes": entry["max_bytes"]} if "max_bytes" in entry else {}
        reader = read_labelme if entry["reader"] == "labelme" else read_image
        with pytest.raises(InputError) as info:
            reader(CORPUS / entry["file"], name=entry["file"], **kwargs)
        ru = render("ru", info.value.text)
        assert ru != str(info.value) and entry["file"] in ru, (entry["file"], ru)
        letters = [c for c in ru.replace(entry["file"], "") if c.isalpha()]
        cyrillic = sum("а" <= c.lower() <= "я" or c in "ёЁ" for c in letters)
        assert cyrillic > len(letters) / 2, (entry["file"], ru)  # Russian, not English with a word or two
        assert "{" not in ru, ru


# ------------------------------------------------------------------ Russian renders, plurals


@pytest.mark.parametrize("points, english, russian", [
    (1, "has 1 point;", "имеет 1 точку,"),
    (2, "has 2 points;", "имеет 2 точки,"),
])
def test_a_broken_outline_says_its_points_with_the_right_form(points, english, russian) -> None:
    broken = _shape("particle", [[1.0 + k, 1.0] for k in range(points)])
    with pytest.raises(BadPolygon) as info:
        _labelme([broken])
    assert english in str(info.value) and russian in render("ru", info.value.text)


@pytest.mark.parametrize("n, russian", [
    (1, "Фигура #1 выходит за край изображения; она обрезана по нему."),
    (2, "2 фигуры (#1, #2) выходят за край изображения"),
    (5, "5 фигур (#1, #2, #3, #4, #5) выходят за край изображения"),
    (21, "21 фигура (#1, #2, #3, #4, #5, #6, #7, #8 и ещё 13) выходит за край изображения"),
])
def test_shapes_past_the_border_are_counted_in_russian_forms(n, russian) -> None:
    shapes = [_shape("particle", _square(76, 2 + 2.5 * k, side=6)) for k in range(n)]  # past x = 80
    ann = _labelme(shapes)
    (note,) = [note for note in ann.notes if "border" in str(note)]
    assert russian in render("ru", note), render("ru", note)
    assert str(note).startswith("Shape #1 " if n == 1 else f"{n} shapes (#1, #2")


def test_a_circle_crop_and_a_skipped_shape_in_russian() -> None:
    shapes = [_shape("crop", [[30, 30], [30, 5]], "circle"), *(_shape("particle", _square(x, 26)) for x in
              (12, 24, 36)), _shape("particle", [[30, 30], [31, 31]])]
    ann = _labelme(shapes)
    ru = [render("ru", note) for note in ann.notes]
    assert "Кроп #1 нарисован как circle; используется описанный вокруг него прямоугольник." in ru
    (skipped,) = [note for note in ru if "пропущена" in note]
    assert skipped.startswith("Фигура #5 ('particle', polygon) имеет 2 точки, а контуру нужно не меньше 3.")
    assert "внутри кропа #1" in skipped
    english = [str(note) for note in ann.notes]
    assert "Crop #1 is a circle; its bounding box is used." in english


def test_a_summary_renders_stored_notes_and_old_plain_ones() -> None:
    ann = _labelme([*(_shape("particle", _square(x, 20)) for x in (10, 30)), _shape("particle", [[5, 5]])])
    summary = json.loads(json.dumps(summarize_annotation(ann), allow_nan=False))  # as Upload.summary holds it
    assert all(isinstance(note, dict) for note in summary["notes"])
    ru, en = format_summary(summary, "ru"), format_summary(summary)
    assert "2 объекта: particle 2" in ru and "примечание: Фигура #3 ('particle', polygon) имеет 1 точку" in ru
    assert "2 objects: particle 2" in en and "note: Shape #3 ('particle', polygon) has 1 point;" in en
    old = {**summary, "notes": ["Shape #9 crosses itself; the largest part was kept."]}  # a row from before
    assert "примечание: Shape #9 crosses itself; the largest part was kept." in format_summary(old, "ru")


@pytest.mark.parametrize("n, russian", [(1, "1 объект"), (3, "3 объекта"), (11, "11 объектов"),
                                        (22, "22 объекта")])
def test_stats_count_objects_in_russian_forms(n, russian) -> None:
    summary = {"name": "x.png", "n_objects": n, "counts": {}, "mean_d_nm": 4.0, "std_d_nm": 1.0,
               "median_d_nm": 3.5, "density": 12.5, "density_unit": "per um2", "coverage": 0.25}
    ru = format_stats(summary, "ru").splitlines()
    assert ru[1] == russian
    assert ru[2] == "средний D 4.00 ± 1.00 нм (медиана 3.50)" and ru[3] == "плотность 12.5 на мкм²"
    assert format_stats(summary).splitlines()[1] == (f"{n} object" if n == 1 else f"{n} objects")


def test_an_image_note_in_russian() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7).save(buffer, format="PNG")
    loaded = read_image(buffer.getvalue(), name="deep.png")
    (note,) = loaded.notes
    assert str(note).startswith("16-bit image stretched to 8 bit")
    assert render("ru", note).startswith("16-битное изображение растянуто до 8 бит (диапазон 0..")
