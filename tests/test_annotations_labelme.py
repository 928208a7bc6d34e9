"""LabelMe reading (3.x..5.x shapes, images by path, crops) and writing (schema, lossless round trip)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations.crops import format_summary, summarize_annotation, training_regions
from annotations.labelme import read_labelme, to_labelme, write_labelme
from annotations.model import AnnotationError, Instance


def png(h: int = 60, w: int = 80) -> bytes:
    rng = np.random.default_rng(0)
    return cv2.imencode(".png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes()


def doc(shapes, **extra) -> dict:
    out = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": "img.png",
        "imageData": base64.b64encode(png()).decode(),
        "imageHeight": 60,
        "imageWidth": 80,
    }
    out.update(extra)
    return out


def shape(label, pts, shape_type="polygon", **extra):
    return {"label": label, "points": pts, "shape_type": shape_type, "group_id": None, "flags": {}, **extra}


SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]


def read(d: dict, **kw):
    return read_labelme(json.dumps(d).encode(), name="t.json", **kw)


def test_polygon_rectangle_circle_ellipse_mask():
    mask = np.zeros((10, 8), np.uint8)
    mask[2:8, 1:7] = 255  # 6x6 = 36 px
    mask_b64 = base64.b64encode(cv2.imencode(".png", mask)[1].tobytes()).decode()
    ann = read(
        doc(
            [
                shape("particle", SQUARE),
                shape("particle", [[30, 30], [40, 35]], "rectangle"),
                shape("big", [[50, 30], [50, 40]], "circle"),
                shape("particle", [[60, 5], [70, 15]], "ellipse"),
                shape("particle", [[40, 40], [47, 49]], "mask", mask=mask_b64),
            ]
        )
    )
    areas = [abs(cv2.contourArea(i.polygon.astype(np.float32))) for i in ann.instances]
    assert areas[0] == pytest.approx(100)
    assert areas[1] == pytest.approx(50)
    assert areas[2] == pytest.approx(np.pi * 100, rel=1e-3)
    assert areas[3] == pytest.approx(np.pi * 25, rel=1e-3)
    assert areas[4] == pytest.approx(36, rel=1e-6)
    # mask pixels x 41..46, y 42..47, centred at integers -> pixel edges [40.5, 46.5] x [41.5, 47.5]
    assert ann.instances[4].polygon.min(axis=0).tolist() == pytest.approx([40.5, 41.5], abs=1e-6)
    assert ann.instances[4].polygon.max(axis=0).tolist() == pytest.approx([46.5, 47.5], abs=1e-6)
    assert ann.classes == ["big", "particle"]


def test_points_and_lines_skipped_with_note():
    ann = read(
        doc(
            [
                shape("particle", SQUARE),
                shape("p", [[1, 1]], "point"),
                shape("l", [[1, 1], [5, 5]], "line"),
                shape("l", [[1, 1], [5, 5], [9, 1]], "linestrip"),
            ]
        )
    )
    assert len(ann.instances) == 1
    assert any("line" in n for n in map(str, ann.notes)) and any("point" in n for n in map(str, ann.notes))


def test_labelme_3_format():
    d = {
        "imagePath": "img.png",
        "imageData": base64.b64encode(png()).decode(),
        "lineColor": [0, 255, 0, 128],
        "fillColor": [255, 0, 0, 128],
        "flags": {},
        "shapes": [{"label": "particle", "points": SQUARE, "line_color": None, "fill_color": None}],
    }
    ann = read(d)
    assert len(ann.instances) == 1 and ann.instances[0].label == "particle"


def test_image_by_path_inside_base_dir(tmp_path: Path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png())
    d = doc([shape("particle", SQUARE)], imageData=None, imagePath="imgs\\a.png")
    (tmp_path / "a.json").write_text(json.dumps(d))
    ann = read_labelme(tmp_path / "a.json")
    assert ann.image.shape == (60, 80, 3) and ann.name == "a.png"


def test_image_from_files_mapping_even_with_dotdot():
    d = doc([shape("particle", SQUARE)], imageData=None, imagePath="..\\pics\\a.png")
    ann = read(d, files={"a.png": png()})
    assert ann.image.shape == (60, 80, 3)


def test_crops_assign_by_centre_and_clip():
    d = doc(
        [
            shape("Crop", [[0, 0], [30, 30]], "rectangle"),
            shape("particle", SQUARE),  # inside
            shape(
                "particle", [[25, 5], [35, 5], [35, 15], [25, 15]]
            ),  # centre (30, 10) -> outside the [0,30) crop
            shape("particle", [[22, 20], [32, 20], [32, 28], [22, 28]]),  # centre (27, 24): inside, clipped
            shape("dot", [[50, 50], [55, 50], [55, 55]]),  # outside
        ]
    )
    ann = read(d)
    assert len(ann.crops) == 1 and len(ann.instances) == 4
    regions = training_regions(ann)
    assert len(regions) == 1
    r = regions[0]
    assert len(r.instances) == 2
    assert r.instances[1].polygon[:, 0].max() == pytest.approx(30)
    summary = summarize_annotation(ann)
    assert summary["ignored_outside_crops"] == 2
    assert summary["counts"] == {"particle": 2}
    assert r.cut(ann.image).shape == (30, 30, 3)
    assert r.local_instances()[0].polygon.min() == pytest.approx(10)
    en, ru = format_summary(summary), format_summary(summary, "ru")
    assert "1 crop" in en and "2 object" in en and "outside" in en
    assert "кроп" in ru and "вне" in ru


def test_no_crop_means_whole_image():
    ann = read(doc([shape("particle", SQUARE)]))
    regions = training_regions(ann)
    assert regions[0].whole_image and regions[0].crop.width == 80
    assert "whole image" in format_summary(summarize_annotation(ann))


def test_group_parts_merged_and_border_clipped():
    d = doc(
        [
            shape("particle", [[10, 10], [20, 10], [20, 20], [10, 20]], group_id=1),
            shape("particle", [[20, 10], [30, 10], [30, 20], [20, 20]], group_id=1),
            shape("particle", [[70, 50], [90, 50], [90, 58], [70, 58]]),  # past the right border
        ]
    )
    ann = read(d)
    assert len(ann.instances) == 2
    assert abs(cv2.contourArea(ann.instances[0].polygon.astype(np.float32))) == pytest.approx(200)
    assert ann.instances[1].polygon[:, 0].max() == pytest.approx(79.5)  # the last pixel's right edge
    assert any("clipped" in n for n in map(str, ann.notes))


def test_self_intersecting_polygon_kept_largest_part():
    ann = read(doc([shape("particle", [[10, 10], [30, 30], [30, 10], [10, 30]])]))  # bow tie
    assert len(ann.instances) == 1 and any("crosses" in n for n in map(str, ann.notes))


def traced(mask: np.ndarray) -> list[list[float]]:
    """The outline LabelMe (or a script) traces from a mask: through the boundary pixels' centres."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (contour,) = contours
    return contour.reshape(-1, 2).astype(float).tolist()


def test_traced_outlines_touching_themselves_keep_their_largest_polygon():
    import shapely

    lobes = np.zeros((60, 80), np.uint8)
    cv2.circle(lobes, (20, 30), 12, 1, -1)
    cv2.circle(lobes, (56, 30), 8, 1, -1)
    lobes[30, 32:49] = 1  # joined by a one-pixel bridge
    corners = np.zeros((60, 80), np.uint8)
    corners[5:25, 5:25] = 1
    corners[25:45, 25:40] = 1  # two blocks touching at one corner pixel
    figure_8 = [[10, 5], [20, 5], [15, 15], [20, 28], [10, 28], [15, 15]]  # touches itself at (15, 15)
    spur = [[50, 40], [60, 40], [60, 45], [70, 45], [60, 45], [60, 50], [50, 50]]  # out and back
    outlines = [traced(lobes), traced(corners), figure_8, spur]
    # shapely repairs the traced ones into a GeometryCollection holding a MultiPolygon: the case
    # that used to be refused as "zero area (its points lie on a line)"
    repaired = shapely.make_valid(shapely.Polygon(outlines[0]))
    assert repaired.geom_type == "GeometryCollection"
    assert "MultiPolygon" in [g.geom_type for g in repaired.geoms]
    ann = read(doc([shape("particle", pts) for pts in outlines]))
    assert len(ann.instances) == 4
    areas = [abs(cv2.contourArea(i.polygon.astype(np.float32))) for i in ann.instances]
    big_lobe = abs(cv2.contourArea(np.array(traced(lobes[:, :33]), np.float32)))  # the left disc's trace
    assert areas[0] == pytest.approx(big_lobe, rel=0.02)
    assert areas[1] == pytest.approx(19 * 19, rel=0.01)  # the larger block's trace: centres 5..24
    assert areas[2] == pytest.approx(0.5 * 10 * 13)  # the larger loop of the 8
    assert areas[3] == pytest.approx(100)  # the square without its spur
    assert any("4 shapes" in n and "cross themselves" in n for n in map(str, ann.notes))


def _squares(n: int) -> list[dict]:
    return [shape("particle", [[x, y], [x + 6, y], [x + 6, y + 6], [x, y + 6]])
            for x, y in ((5 + 9 * (k % 8), 5 + 9 * (k // 8)) for k in range(n))]


LINE = [[40, 50], [45, 52], [50, 54]]  # a "polygon" whose points lie on a line


def test_one_unusable_shape_among_many_is_skipped_with_a_note():
    shapes = _squares(12)
    shapes.insert(5, shape("single_site", LINE))
    ann = read(doc(shapes))
    assert len(ann.instances) == 12 and ann.classes == ["particle"]
    (note,) = [n for n in map(str, ann.notes) if "Skipped" in n]
    assert note.startswith("Shape #6 ('single_site') has zero area")
    assert "whole image counts as labelled" in note and "unlabelled" in note
    assert "note: Shape #6 ('single_site')" in format_summary(summarize_annotation(ann))


@pytest.mark.parametrize("crop, expect", [([[30, 40], [60, 60]], "inside crop #1"),
                                          ([[0, 0], [30, 30]], "outside every crop")])
def test_a_skipped_shape_says_whether_a_crop_loses_a_label(crop, expect):
    bad = [shape("particle", [[41, 45], [52, 45], [52, 56], [41, 56]]), shape("particle", LINE),
           shape("particle", [[np.nan, 1], [np.inf, 3], [np.nan, 5]])]
    ann = read(doc([*_squares(3), *bad, shape("crop", crop, "rectangle")]))
    notes = [n for n in map(str, ann.notes) if "Skipped" in n]
    assert len(notes) == 2 and notes[0].startswith("Shape #5 ('particle') has zero area")
    assert expect in notes[0]
    assert notes[1].startswith("Shape #6 ('particle') has NaN") and "if it lies inside a crop" in notes[1]


def test_many_unusable_shapes_share_one_note_after_the_first_few():
    ann = read(doc([*_squares(3), *(shape("particle", [[x, 50], [x, 55]]) for x in range(10, 80, 10))]))
    assert len(ann.instances) == 3
    skipped = [n for n in map(str, ann.notes) if "Skipped" in n]
    assert len(skipped) == 5 and skipped[0].startswith("Shape #4 ('particle', polygon) has 2 points;")
    assert any(n.startswith("2 shapes (#9, #10) could not be used either") for n in map(str, ann.notes))


def test_exact_copies_are_skipped_with_a_note():
    """A double paste labels nothing new: the first stays, the copy goes, the file is read."""
    squares = _squares(4)
    ann = read(doc([*squares, dict(squares[1])]))
    assert len(ann.instances) == 4
    assert "Shape #5 is an exact copy of shape #2; the copy was skipped." in map(str, ann.notes)
    again = read(doc([*squares, *squares[:3]]))
    assert len(again.instances) == 4
    assert "3 shapes (#5, #6, #7) are exact copies of earlier shapes; the copies were skipped." in map(
        str, again.notes)
    relabelled = dict(squares[0], label="single_site")  # same outline, another class: two objects
    assert len(read(doc([*squares, relabelled])).instances) == 5


def test_refused_when_nothing_usable_is_left():
    with pytest.raises(AnnotationError) as info:
        read(doc([shape("particle", LINE), shape("particle", [[1, 1], [2, 2]])]))
    assert info.value.code == "bad_polygon" and "shape #1" in str(info.value)
    # a crop whose only shape is unusable: the shape is the reason, not an "empty crop"
    with pytest.raises(AnnotationError) as info:
        read(doc([*_squares(2), shape("particle", LINE), shape("crop", [[35, 45], [60, 60]], "rectangle")]))
    assert info.value.code == "bad_polygon" and "shape #3" in str(info.value)
    # an unusable crop is never skipped: without it the whole image would count as labelled
    with pytest.raises(AnnotationError) as info:
        read(doc([*_squares(2), shape("crop", [[5, 5], [5, 30]], "rectangle")]))
    assert info.value.code == "bad_polygon" and "crop" in str(info.value)


def test_score_read_from_description_and_flags():
    ann = read(
        doc(
            [
                shape("particle", SQUARE, description="score=0.875"),
                shape("particle", [[30, 30], [40, 30], [40, 40]], flags={"score": 0.5}),
            ]
        )
    )
    assert [i.score for i in ann.instances] == [0.875, 0.5]


def _check_schema(d: dict) -> None:
    """What labelme 5.x's LabelFile.load reads (it needs no Qt to be checked against)."""
    for key, kind in {
        "version": str,
        "flags": dict,
        "shapes": list,
        "imagePath": str,
        "imageHeight": int,
        "imageWidth": int,
    }.items():
        assert isinstance(d[key], kind), key
    assert d["imageData"] is None or isinstance(d["imageData"], str)
    for s in d["shapes"]:
        assert isinstance(s["label"], str) and s["label"]
        assert s["shape_type"] in {"polygon", "rectangle"}
        assert all(len(p) == 2 and all(isinstance(v, float) for v in p) for p in s["points"])
        assert s["group_id"] is None and isinstance(s["flags"], dict) and isinstance(s["description"], str)
        assert s["mask"] is None
    if d["imageData"]:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(d["imageData"]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (d["imageHeight"], d["imageWidth"])


def test_written_file_matches_labelme_format(tmp_path: Path):
    img = np.zeros((40, 50, 3), np.uint8)
    insts = [
        Instance("particle", np.array(SQUARE, float), 0.93),
        Instance("частица", np.array(SQUARE) + 15.0),
    ]
    path = write_labelme(tmp_path / "out.json", img, insts, "dir/img.png", nm_per_px=2.5)
    d = json.loads(path.read_text(encoding="utf-8"))
    _check_schema(d)
    assert d["imagePath"] == "img.png" and d["shapes"][0]["description"] == "score=0.9300"
    back = read_labelme(path)
    assert back.nm_per_px == 2.5 and back.instances[1].label == "частица"
    _check_schema(to_labelme(img, insts, "x.png", embed_image=False))


coords = st.floats(min_value=0, max_value=199, allow_nan=False, allow_infinity=False)


@st.composite
def instance_lists(draw):
    out = []
    for _ in range(draw(st.integers(0, 6))):
        x, y = draw(coords), draw(coords)
        w = draw(st.floats(min_value=0.5, max_value=40))
        h = draw(st.floats(min_value=0.5, max_value=40))
        x1, y1 = min(x + w, 199.5), min(y + h, 159.5)  # the image spans [-0.5, 199.5] x [-0.5, 159.5]
        y = min(y, 159.0)
        if x1 - x < 0.5 or y1 - y < 0.5:
            continue
        pts = np.array([[x, y], [x1, y], [x1, y1], [x, y1]])
        score = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1)))
        out.append(Instance(draw(st.sampled_from(["particle", "single_site"])), pts, score))
    # distinct outlines (an exact copy is skipped)
    uniq = {(i.label, (np.round(i.polygon, 6) + 0.0).tobytes()): i for i in out}
    return list(uniq.values())


@settings(max_examples=40, deadline=None)
@given(instance_lists())
def test_round_trip_lossless(instances):
    img = np.random.default_rng(1).integers(0, 255, (160, 200, 3), dtype=np.uint8)
    d = to_labelme(img, instances, "a.png", nm_per_px=1.5)
    back = read_labelme(json.dumps(d).encode(), name="a.json")
    assert np.array_equal(back.image, img)
    assert back.nm_per_px == 1.5
    assert len(back.instances) == len(instances)
    for a, b in zip(instances, back.instances, strict=True):
        assert a.label == b.label
        assert np.array_equal(a.polygon, b.polygon)
        assert (a.score is None and b.score is None) or abs(a.score - b.score) < 1e-4


def test_json_of_crops_round_trip():
    img = np.zeros((50, 50, 3), np.uint8)
    from annotations.model import Crop

    d = to_labelme(img, [Instance("p", np.array(SQUARE, float))], "a.png", crops=[Crop(0, 0, 30, 30)])
    back = read(d | {"imageHeight": 50, "imageWidth": 50})
    assert back.crops == [Crop(0, 0, 30, 30)]


def test_image_size_checked_against_declared():
    with pytest.raises(AnnotationError) as info:
        read(doc([shape("particle", SQUARE)], imageHeight=61))
    assert info.value.code == "image_size_mismatch" and "80x61" in str(info.value)
