"""Overlays a scientist can read: on dense small particles ids go off (the CSV has them), outlines run
beside the particle so its edge stays visible, and a zoomed inset of the densest region carries ids
that neither overlap each other nor cover any object; on 40 px particles every id sits beside its own.

The pictures are kept in tmp_path and copied to /tmp/segbot-artifacts/ for looking at."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotations.geometry import bboxes, circle_polygon
from annotations.model import Instance
from measures.objects import measure_arrays
from outputs.files import write_outputs, write_png
from outputs.overlay import IDS_OFF_NOTE, Picture, render_pictures
from outputs.overlay_layout import inset_window, place_ids
from trainer.synthetic import synthetic_scene

ARTIFACTS = Path("/tmp/segbot-artifacts")


def _keep(tmp_path: Path, name: str, rgb: np.ndarray) -> Path:
    path = write_png(tmp_path / name, rgb)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


@pytest.fixture(scope="module")
def dense():
    """239 particles of 7 px on a 512 px image: the case that was unreadable."""
    scene = synthetic_scene(3, size=(512, 512), n_particles=239, n_pits=0, radius=(3.5, 3.5), pairs=0.0)
    assert len(scene.instances) == 239
    return scene


@pytest.fixture(scope="module")
def coarse():
    return synthetic_scene(4, size=(512, 512), n_particles=40, n_pits=0, radius=(20.0, 20.0), pairs=0.2)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(point, box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _check_ids(picture: Picture, centres: np.ndarray, object_boxes: np.ndarray) -> None:
    """No id over another id, over any object's box (so over no centre), and none nearer another object."""
    ids = list(picture.id_boxes.items())
    h, w = picture.rgb.shape[:2]
    for n, (k, box) in enumerate(ids):
        assert 0 <= box[0] and 0 <= box[1] and box[2] <= w and box[3] <= h
        assert not _inside(centres[k], box), f"id {k + 1} covers its object's centre"
        assert not any(_inside(c, box) for c in centres), f"id {k + 1} covers an object's centre"
        assert not any(_overlap(box, o) for o in object_boxes), f"id {k + 1} covers an object"
        for j, other in ids[n + 1:]:
            assert not _overlap(box, other), f"ids {k + 1} and {j + 1} overlap"


def _ink_outside_boxes(with_ids: np.ndarray, without: np.ndarray, boxes, legend) -> int:
    """Pixels that drawing the ids changed outside the id boxes (and the legend, whose note differs)."""
    changed = (with_ids != without).any(axis=2)
    for x0, y0, x1, y1 in [*boxes, legend]:
        changed[int(np.floor(y0)):int(np.ceil(y1)) + 1, int(np.floor(x0)):int(np.ceil(x1)) + 1] = False
    return int(changed.sum())


def test_dense_small_particles_ids_off_outlines_beside_and_an_inset(dense, tmp_path) -> None:
    pictures = render_pictures(dense.image, dense.instances)
    overlay, inset, window = pictures.overlay, pictures.inset, pictures.window
    _keep(tmp_path, "dense_overlay.png", overlay.rgb)
    # Whole picture: no ids (they cannot fit beside 239 particles without covering some), and it says so.
    assert not overlay.ids_shown and overlay.id_boxes == {} and IDS_OFF_NOTE in overlay.legend
    assert overlay.line_width == 1
    # The outline runs outside the particle: inside it (1 px in from the rim) the pixels are the image's.
    a = measure_arrays(dense.instances)
    legend = overlay.legend_box
    frame = np.zeros(dense.image.shape[:2], np.uint8)
    cv2.rectangle(frame, window.box[:2], (window.box[2] - 1, window.box[3] - 1), 1, 3)
    seen = 0
    for inst, box in zip(dense.instances, a.bbox, strict=True):
        if _overlap(box, legend):
            continue
        mask = np.zeros(dense.image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(inst.polygon).astype(np.int32)], 1)
        core = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool) & (frame == 0)
        assert core.any()
        assert np.array_equal(overlay.rgb[core], dense.image[core]), "an outline covers the particle"
        seen += 1
    assert seen > 200

    # The inset: the densest region, zoomed so particles are ~30 px, with every id placed cleanly.
    assert inset is not None and window.zoom > 3
    _keep(tmp_path, "dense_inset.png", inset.rgb)
    x0, y0, x1, y1 = window.box
    inside = [k for k, (cx, cy) in enumerate(a.centroid) if x0 <= cx < x1 and y0 <= cy < y1]
    assert len(inside) >= 20 and inset.ids_shown and sorted(inset.id_boxes) == inside
    top = inset.rgb.shape[0] - round(window.height * window.zoom)  # the legend strip above the zoom
    centres = window.to_inset(a.centroid) + [0, top]
    _check_ids(inset, centres, bboxes([window.to_inset(i.polygon) + [0, top] for i in dense.instances]))
    # The ids' ink lies inside the boxes measured above.
    plain = render_pictures(dense.image, dense.instances, show_ids=False).inset
    strip = (0, 0, inset.rgb.shape[1], top)
    assert _ink_outside_boxes(inset.rgb, plain.rgb, inset.id_boxes.values(), strip) == 0


def test_inset_lies_where_the_particles_are_densest() -> None:
    rng = np.random.default_rng(0)
    sparse = [(x, y) for x, y in rng.uniform(10, 1014, (150, 2))]
    cluster = [(x, y) for x, y in rng.uniform(700, 820, (60, 2))]
    insts = [Instance("p", circle_polygon(x, y, 3.0, 16)) for x, y in sparse + cluster]
    a = measure_arrays(insts)
    window = inset_window(a.centroid, 6.0, (1024, 1024, 3))
    assert window is not None
    x0, y0, x1, y1 = window.box
    held = sum(x0 <= x < x1 and y0 <= y < y1 for x, y in cluster)
    assert held >= 0.8 * len(cluster)


def test_40px_particles_get_every_id_beside_its_own_and_no_inset(coarse, tmp_path) -> None:
    pictures = render_pictures(coarse.image, coarse.instances)
    overlay = pictures.overlay
    _keep(tmp_path, "coarse_overlay.png", overlay.rgb)
    assert pictures.inset is None and pictures.window is None
    a = measure_arrays(coarse.instances)
    visible = [k for k, box in enumerate(a.bbox) if not _overlap(box, overlay.legend_box)]
    assert overlay.ids_shown and sorted(overlay.id_boxes) == visible
    assert IDS_OFF_NOTE not in overlay.legend
    _check_ids(overlay, a.centroid, a.bbox)
    # each id is nearer its own particle than any other: it cannot be read as a neighbour's
    for k, box in overlay.id_boxes.items():
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        gaps = [np.hypot(*np.maximum(0, np.maximum(b[:2] - centre, centre - b[2:]))) for b in a.bbox]
        assert int(np.argmin(gaps)) == k
    plain = render_pictures(coarse.image, coarse.instances, show_ids=False).overlay
    assert _ink_outside_boxes(overlay.rgb, plain.rgb, overlay.id_boxes.values(), overlay.legend_box) == 0


def test_ids_that_cannot_all_fit_are_all_left_off_unless_asked() -> None:
    boxes = np.array([[10, 10, 20, 20], [21, 10, 31, 20], [10, 21, 20, 31], [21, 21, 31, 31]], float)
    sizes = [(14.0, 10.0)] * 4
    assert place_ids(boxes, sizes, (41, 41)) is None  # no room beside a 2 x 2 block in a small picture
    roomy = place_ids(boxes + 50, sizes, (200, 200))
    assert roomy is not None and len(roomy) == 4
    forced = place_ids(boxes, sizes, (41, 41), force=True)
    assert forced is not None and len(forced) == 4


def test_write_outputs_adds_the_inset_only_for_small_objects(dense, coarse, tmp_path) -> None:
    small = write_outputs(tmp_path / "d", "dense", dense.image, dense.instances)
    assert small["inset"].name == "dense_inset.png" and cv2.imread(str(small["inset"])) is not None
    large = write_outputs(tmp_path / "c", "coarse", coarse.image, coarse.instances)
    assert "inset" not in large and not (tmp_path / "c" / "coarse_inset.png").exists()
