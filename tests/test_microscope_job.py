"""The bot's predict job body (jobs/predict.py) on a TEM .dm4 and a flattened SEM PNG: the file's and
the scale bar's nm/px used and recorded, nothing found on the info bar, the lab files stored per image
and per set. The model is the fake ThresholdDetector (tests/fake_detector.py)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.fake_detector import ThresholdDetector, disc_image
from tests.microscope_files import dm_bytes
from tests.scalebar_images import Case, draw_case
from tests.test_infobar import need_tesseract


@dataclass
class Claim:
    job_id: int
    user_id: int
    kind: str = "predict"
    params: dict[str, Any] = field(default_factory=dict)
    model_id: int | None = None
    attempts: int = 1


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_predict_job_on_microscope_files(settings, monkeypatch):
    need_tesseract()
    import jobs.predict as predict
    from jobs.context import JobContext
    from storage.db import session_factory
    from storage.files import FileStore
    from storage.migrate import upgrade
    from storage.models import Job, ModelStatus, Result, TrainedModel, Upload, User

    upgrade(settings.database_url)
    store = FileStore(settings.files_dir)
    tem = disc_image(200, 260, [(60 + 60 * (k % 3), 50 + 60 * (k // 3), 9) for k in range(6)])[..., 0]
    drawn = draw_case(Case(value=500, unit="nm", nm_per_px=3.1, layout="beside", size=16, seed=6))
    files = {"tem.dm4": dm_bytes(tem.astype(np.uint16) * 10, 0.52), "sem.png": _png(drawn.image)}
    with session_factory(settings.database_url)() as session:
        user = User(telegram_id=1)
        session.add(user)
        session.flush()
        model = TrainedModel(user_id=user.id, version=1, classes=["particle"], status=ModelStatus.READY,
                             path="models/fake")
        session.add(model)
        uploads = [Upload(user_id=user.id, kind="image", original_name=name, sha256=store.put_bytes(data),
                          size=len(data)) for name, data in files.items()]
        session.add_all(uploads)
        session.flush()
        job = Job(user_id=user.id, kind="predict", params={"upload_ids": [u.id for u in uploads]})
        session.add(job)
        session.commit()
        ids = (job.id, user.id, model.id)
    monkeypatch.setattr(predict, "_detector", lambda ctx, m: ThresholdDetector(level=140, tile_size=256))
    ctx = JobContext(settings=settings, claim=Claim(ids[0], ids[1], params={"upload_ids": [1, 2],
                                                                                "threshold": 0.1},
                                                    model_id=ids[2]),
                     write_progress=lambda *a: True, read_stop=lambda: False)
    outcome = predict.predict_job(ctx)
    with session_factory(settings.database_url)() as session:
        job = session.get(Job, ids[0])
        outcome.record(session, job)
        session.commit()
        results = {r.image_name: r for r in session.query(Result).all()}
        set_files = dict(job.result["set_files"])
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
    import csv

    cy = [float(row["cy_px"]) for row in csv.DictReader(io.StringIO(csv_text))]
    assert cy and max(cy) < y0  # nothing on the info bar
    for result in results.values():
        assert {"labels", "rois"} <= set(result.files)
    assert set(set_files) == {"coco", "xlsx"} and outcome.notice_payload["set_files"] == set_files
    import json

    coco = json.loads(store.read_bytes(set_files["coco"]))
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == sum(
        r.summary["n_objects"] for r in results.values())


def _labelme_beside(image_name: str, height: int, width: int) -> bytes:
    """A LabelMe file that names its image by imagePath (not embedded): the image is sent beside it."""
    import json

    square = [[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]]
    return json.dumps({"version": "5.2.1", "flags": {}, "imagePath": image_name, "imageData": None,
                       "imageHeight": height, "imageWidth": width,
                       "shapes": [{"label": "particle", "points": square, "group_id": None, "description": "",
                                   "shape_type": "polygon", "flags": {}}]}).encode()


def test_predict_job_reads_every_labelme_files_image_sent_beside_it(settings, monkeypatch):
    """Two LabelMe uploads whose imagePath names an image sent in the same job: both are found (the
    uploads by name stay what imagePath is resolved against while results are stored)."""
    import jobs.predict as predict
    from jobs.context import JobContext
    from storage.db import session_factory
    from storage.files import FileStore
    from storage.migrate import upgrade
    from storage.models import Job, ModelStatus, Result, TrainedModel, Upload, User

    upgrade(settings.database_url)
    store = FileStore(settings.files_dir)
    discs = {"a.png": [(40, 40, 9)], "b.png": [(40, 40, 9), (100, 60, 9), (60, 100, 9)]}
    files = {"a.json": ("labelme", _labelme_beside("a.png", 140, 140)),
             "b.json": ("labelme", _labelme_beside("b.png", 140, 140)),
             **{name: ("image", _png(disc_image(140, 140, spots))) for name, spots in discs.items()}}
    with session_factory(settings.database_url)() as session:
        user = User(telegram_id=1)
        session.add(user)
        session.flush()
        model = TrainedModel(user_id=user.id, version=1, classes=["particle"], status=ModelStatus.READY,
                             path="models/fake")
        session.add(model)
        uploads = [Upload(user_id=user.id, kind=kind, original_name=name, sha256=store.put_bytes(data),
                          size=len(data)) for name, (kind, data) in files.items()]
        session.add_all(uploads)
        session.flush()
        params = {"upload_ids": [u.id for u in uploads], "model_id": model.id, "threshold": 0.1}
        job = Job(user_id=user.id, kind="predict", params=params)
        session.add(job)
        session.commit()
        ids = (job.id, user.id, model.id)
    monkeypatch.setattr(predict, "_detector", lambda ctx, m: ThresholdDetector(level=140, tile_size=256))
    ctx = JobContext(settings=settings, claim=Claim(ids[0], ids[1], params=params, model_id=ids[2]),
                     write_progress=lambda *a: True, read_stop=lambda: False)
    outcome = predict.predict_job(ctx)
    with session_factory(settings.database_url)() as session:
        outcome.record(session, session.get(Job, ids[0]))
        session.commit()
        found = {r.image_name: r.summary["n_objects"] for r in session.query(Result).all()}
    assert found == {"a.json": 1, "b.json": 3, "a.png": 1, "b.png": 3}
