"""A correction round starts from the version it corrects (jobs/fine_tune.py): real tiny trainings
through the queue's train body; a new class falls back to today's start and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.captions import model_line_figures, ready_text
from jobqueue.runner import drain
from jobqueue.store import submit_job
from jobs.fine_tune import Previous, Start, choose_start
from jobs.params import TrainParams
from segmodel.options import TrainOptions
from storage.db import session_factory
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Job, Result, TrainedModel, Upload, User
from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

V1 = Previous(model_id=7, version=1, classes=("particle",), arch="tiny", path="files/models/u1/v1")


def test_same_classes_fine_tune_the_corrected_version(tmp_path: Path) -> None:
    start = choose_start(V1, ["particle"], TrainOptions(), tmp_path)
    assert start == Start(str(tmp_path), {"from_version": 1, "from_model_id": 7})


def test_a_new_class_an_other_preset_or_a_lost_bundle_start_afresh_and_say_why(tmp_path: Path) -> None:
    added = choose_start(V1, ["particle", "pit"], TrainOptions(), tmp_path)
    assert added.init is None
    assert added.note == {"from_version": 1, "from_model_id": 7, "skipped": "classes", "added": ["pit"],
                          "dropped": []}
    assert choose_start(V1, ["particle"], TrainOptions(arch="r50"), tmp_path).note["skipped"] == "arch"
    assert choose_start(V1, ["particle"], TrainOptions(), tmp_path / "gone").note["skipped"] == "missing"


def test_no_correction_or_an_explicit_init_keeps_the_users_start(tmp_path: Path) -> None:
    assert choose_start(None, ["particle"], TrainOptions(), tmp_path) == Start()
    assert choose_start(V1, ["particle"], TrainOptions(init="random"), tmp_path) == Start()


OPTIONS = {"arch": "tiny", "iterations": 2, "holdout": False, "batch_size": 1, "crop_size": 128}


@pytest.fixture
def queue_db(settings):
    """The test's database made; one training thread (tiny runs need no more)."""
    upgrade(settings.database_url)
    return settings.model_copy(update={"train_threads": 1})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_correction_job_fine_tunes_the_version_it_corrects(queue_db) -> None:
    settings, store = queue_db, FileStore(queue_db.files_dir)

    def labels(seed: int, n_pits: int) -> bytes:
        scene = with_crops(synthetic_scene(seed, (192, 192), n_particles=12, n_pits=n_pits), n_crops=1,
                           crop_size=128)
        return json.dumps(labelme_dict(scene, image_name=f"s{seed}.png")).encode()

    with session_factory(settings.database_url)() as session:
        user = User(telegram_id=93, username="corrector")
        session.add(user)
        session.commit()

        def upload(kind: str, data: bytes, corrects: int | None = None) -> Upload:
            row = Upload(user_id=user.id, kind=kind, original_name=f"{kind}{len(data)}.json",
                         sha256=store.put_bytes(data), size=len(data), corrects_result_id=corrects)
            session.add(row)
            session.commit()
            return row

        def train(upload_ids: tuple[int, ...], correction_of: int | None = None) -> TrainedModel:
            params = TrainParams(upload_ids=upload_ids, options=OPTIONS, correction_of=correction_of)
            job = submit_job(session, user, params, settings=settings, enqueue=False)
            assert drain(settings, "train") == 1
            session.expire_all()
            done = session.get(Job, job.id)
            assert done.state == "succeeded", done.error
            return session.scalars(select(TrainedModel).where(TrainedModel.job_id == job.id)).one()

        def corrected(model: TrainedModel, data: bytes) -> Upload:
            """A result of `model` (its recognition job) and the user's correction of it."""
            predict = Job(user_id=user.id, kind="predict", state="succeeded", params={}, model_id=model.id)
            session.add(predict)
            session.commit()
            result = Result(job_id=predict.id, user_id=user.id, image_name="next.png")
            session.add(result)
            session.commit()
            return upload("correction", data, corrects=result.id)

        first = upload("labelme", labels(1, 0))
        v1 = train((first.id,))
        fix = corrected(v1, labels(2, 0))
        v2 = train((first.id, fix.id), correction_of=fix.id)
        meta = json.loads((settings.data_dir / v2.path / "bundle.json").read_text())
        assert v2.metrics["fine_tune"] == {"from_version": 1, "from_model_id": v1.id}
        assert Path(meta["init"]["path"]) == settings.data_dir / v1.path / "weights.pt"
        assert meta["init"]["skipped"] == 0  # every tensor of v1, heads included
        assert v2.options["init"] == "auto"  # the row keeps the user's choice, not a worker's path
        assert "Fine-tuned from v1 with your correction" in ready_text("en", 2, v2.metrics)
        assert "Дообучена от v1" in ready_text("ru", 2, v2.metrics)
        assert "fine-tuned from v1" in model_line_figures("en", v2.metrics)

        with_pits = corrected(v2, labels(3, 4))  # the correction adds a class: v2's heads do not fit
        v3 = train((first.id, with_pits.id), correction_of=with_pits.id)
        meta = json.loads((settings.data_dir / v3.path / "bundle.json").read_text())
        assert v3.metrics["fine_tune"] == {"from_version": 2, "from_model_id": v2.id, "skipped": "classes",
                                           "added": ["pit"], "dropped": []}
        assert meta["init"] == {"init": "random"}
        assert "Trained afresh, not from v2: your labels' classes differ from v2's (+pit)." in ready_text(
            "en", 3, v3.metrics)
        assert "Fine-tuned" not in ready_text("en", 1, v1.metrics)  # no correction, no line
