"""The bot's predict job body (jobs/predict.py) through the queue's front door: a job submitted with
typed PredictParams and run by the runner, whose detector cache (a DetectorCache whose loader hands
back the fake ThresholdDetector, tests/fake_detector.py) stands for the user's model. On a TEM .dm4
and a flattened SEM PNG: the file's and the scale bar's nm/px used and recorded, nothing found on the
info bar, the lab files stored per image and per set; LabelMe files find the images sent beside them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest

from tests.fake_detector import ThresholdDetector, disc_image
from tests.microscope_files import dm_bytes
from tests.scalebar_images import Case, draw_case
from tests.test_infobar import need_tesseract


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def run_predict_job(settings, files: dict[str, tuple[str, bytes]], detector, **params: Any) -> dict[str, Any]:
    """Store `files` (name -> (upload kind, bytes)) as one user's uploads beside a ready model, submit a
    predict job on them with `params` (PredictParams fields), run it with `detector` as the model.
    Returns the finished job, its Result rows by image name and its notice."""
    from jobqueue.runner import drain
    from jobqueue.store import submit_job
    from jobs.detectors import DetectorCache
    from jobs.params import PredictParams
    from storage.db import session_scope
    from storage.files import FileStore
    from storage.migrate import upgrade
    from storage.models import Job, ModelStatus, Notice, Result, TrainedModel, Upload, User

    upgrade(settings.database_url)
    store = FileStore(settings.files_dir)
    with session_scope(settings.database_url) as session:
        user = User(telegram_id=1)
        session.add(user)
        session.flush()
        model = TrainedModel(user_id=user.id, version=1, classes=["particle"], status=ModelStatus.READY,
                             path="models/fake")
        uploads = [Upload(user_id=user.id, kind=kind, original_name=name, sha256=store.put_bytes(data),
                          size=len(data)) for name, (kind, data) in files.items()]
        session.add_all([model, *uploads])
        session.commit()
        job_params = PredictParams(upload_ids=tuple(u.id for u in uploads), model_id=model.id, **params)
        job_id = submit_job(session, user, job_params, settings=settings, model_id=model.id, enqueue=False).id
    loaded: list[str] = []

    def load(bundle, _settings) -> ThresholdDetector:
        loaded.append(bundle.name)
        return detector

    assert drain(settings, "predict", detectors=DetectorCache(load)) == 1
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job.state == "succeeded", job.error
        results = {r.image_name: r for r in session.query(Result).filter_by(job_id=job_id)}
        notice = session.query(Notice).filter_by(job_id=job_id).one()
        session.expunge_all()
    assert loaded == ["fake"]  # the job's model, loaded once through the cache it was given
    return {"job": job, "results": results, "notice": notice, "store": store}


def test_predict_job_on_microscope_files(settings):
    need_tesseract()
    tem = disc_image(200, 260, [(60 + 60 * (k % 3), 50 + 60 * (k // 3), 9) for k in range(6)])[..., 0]
    drawn = draw_case(Case(value=500, unit="nm", nm_per_px=3.1, layout="beside", size=16, seed=6))
    files = {"tem.dm4": ("image", dm_bytes(tem.astype(np.uint16) * 10, 0.52)),
             "sem.png": ("image", _png(drawn.image))}
    run = run_predict_job(settings, files, ThresholdDetector(level=140, tile_size=256), threshold=0.1)
    results, store = run["results"], run["store"]
    set_files = dict(run["job"].result["set_files"])
    tem_result, sem_result = results["tem.dm4"], results["sem.png"]
    assert tem_result.summary["nm_per_px"] == pytest.approx(0.52)
    assert tem_result.summary["scale_source"] == "the DM4 file's calibration"
    assert tem_result.summary["n_objects"] == 6
    assert sem_result.summary["nm_per_px"] == pytest.approx(drawn.nm_per_px, rel=0.01)
    assert sem_result.summary["scale_source"].startswith("the scale bar: 500 nm = ")
    x0, y0, x1, y1 = drawn.excluded
    assert sem_result.summary["excluded_regions"][0]["y0"] == y0
    h, w = drawn.image.shape[:2]
    assert sem_result.summary["region_area_px"] == h * w - (x1 - x0) * (y1 - y0)
    csv_text = store.read_bytes(sem_result.files["csv"]).decode()
    cy = [float(row["cy_px"]) for row in csv.DictReader(io.StringIO(csv_text))]
    assert cy and max(cy) < y0  # nothing on the info bar
    for result in results.values():
        assert {"labels", "rois"} <= set(result.files)
    notice = run["notice"]
    assert notice.kind == "predict_done" and set(set_files) == {"coco", "xlsx"}
    assert notice.payload["set_files"] == set_files
    assert sorted(notice.payload["result_ids"]) == sorted(r.id for r in results.values())
    assert notice.payload["n_objects"] == sum(r.summary["n_objects"] for r in results.values())
    coco = json.loads(store.read_bytes(set_files["coco"]))
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == sum(
        r.summary["n_objects"] for r in results.values())


def _labelme_beside(image_name: str, height: int, width: int) -> bytes:
    """A LabelMe file that names its image by imagePath (not embedded): the image is sent beside it."""
    square = [[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]]
    return json.dumps({"version": "5.2.1", "flags": {}, "imagePath": image_name, "imageData": None,
                       "imageHeight": height, "imageWidth": width,
                       "shapes": [{"label": "particle", "points": square, "group_id": None, "description": "",
                                   "shape_type": "polygon", "flags": {}}]}).encode()


def test_predict_job_reads_every_labelme_files_image_sent_beside_it(settings):
    """Two LabelMe uploads whose imagePath names an image sent in the same job: both are found (the
    uploads by name stay what imagePath is resolved against while results are stored)."""
    discs = {"a.png": [(40, 40, 9)], "b.png": [(40, 40, 9), (100, 60, 9), (60, 100, 9)]}
    files = {"a.json": ("labelme", _labelme_beside("a.png", 140, 140)),
             "b.json": ("labelme", _labelme_beside("b.png", 140, 140)),
             **{name: ("image", _png(disc_image(140, 140, spots))) for name, spots in discs.items()}}
    run = run_predict_job(settings, files, ThresholdDetector(level=140, tile_size=256), threshold=0.1)
    found = {name: result.summary["n_objects"] for name, result in run["results"].items()}
    assert found == {"a.json": 1, "b.json": 3, "a.png": 1, "b.png": 3}


def _found(tree: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in a nested summary."""
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k == key] + [x for v in tree.values() for x in _found(v, key)]
    if isinstance(tree, list):
        return [x for v in tree for x in _found(v, key)]
    return []


def test_predict_job_gives_the_users_metal_dispersion_in_its_files(settings):
    """/metal travels in PredictParams: the job's own summary and workbook carry the dispersion (the
    caption alone did before), computed from the scaled sizes: D = 1.12 nm / d_s for Pt."""
    from openpyxl import load_workbook

    image = disc_image(200, 260, [(60 + 60 * (k % 3), 50 + 60 * (k // 3), 9) for k in range(6)])
    files = {"pt.png": ("image", _png(image))}
    run = run_predict_job(settings, files, ThresholdDetector(level=140, tile_size=256), threshold=0.1,
                          nm_per_px=0.2, metal="Pt")
    summary = run["results"]["pt.png"].summary
    d_s = _found(summary, "sauter_d_nm")
    values = [v for v in _found(summary, "dispersion") if v is not None]
    assert values and d_s and values[0] == pytest.approx(1.12 / d_s[0], rel=0.02)
    workbook = load_workbook(io.BytesIO(run["store"].read_bytes(run["job"].result["set_files"]["xlsx"])))
    rows = workbook["pooled numbers"].iter_rows(values_only=True)
    cells = [str(c) for row in rows for c in row if c is not None]
    assert any("dispersion" in c.lower() for c in cells)
    with pytest.raises(ValueError, match="not in the dispersion table"):
        from jobs.params import PredictParams

        PredictParams(model_id=1, metal="Xx")


def test_the_job_keeps_what_the_model_found_under_her_threshold(settings):
    """Detections scored under her threshold are not results (no count, no row) but are stored beside
    them for the Label page's "where it helps most"; the results zip leaves them out."""
    import zipfile

    from annotations.suggest import read_unsure
    from bot.result_files import zip_results

    bright = [(50.0 + 70 * k, 60.0, 10.0) for k in range(4)]  # 220 -> 0.86
    dim = [(60.0, 170.0, 10.0), (200.0, 160.0, 10.0)]  # 120 -> 0.47
    image = np.maximum(disc_image(240, 320, bright), disc_image(240, 320, dim, value=120))
    run = run_predict_job(settings, {"dim.png": ("image", _png(image))}, ThresholdDetector(level=60),
                          threshold=0.6)
    result, store = run["results"]["dim.png"], run["store"]
    assert result.summary["n_objects"] == 4
    unsure = read_unsure(store.read_bytes(result.files["unsure"]))
    centres = sorted(tuple(np.round(i.polygon.mean(axis=0))) for i in unsure)
    assert centres == [(60.0, 170.0), (200.0, 160.0)] and all(0.4 < i.score < 0.5 for i in unsure)
    zipped = zip_results(store, [{"name": "dim.png", "files": dict(result.files)}])
    names = zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    assert "dim/dim_objects.csv" in names and not any("unsure" in n for n in names)
