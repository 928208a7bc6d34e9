"""The real job bodies through real workers: a tiny training is SIGKILLed mid-way, a new worker
trains it again, exactly one model and one notice exist; then recognition with that model."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from jobqueue.store import submit_job
from jobs.params import PredictParams, TrainParams
from storage.db import session_factory
from storage.files import FileStore
from storage.models import Job, Notice, Result, TrainedModel, Upload, User
from tests.test_queue_workers import _job, _wait_state, queue_env, wait_for  # noqa: F401 - the fixture


def _upload(session, store: FileStore, user: User, kind: str, name: str, data: bytes) -> Upload:
    upload = Upload(user_id=user.id, kind=kind, original_name=name, sha256=store.put_bytes(data),
                    size=len(data))
    session.add(upload)
    session.commit()
    return upload


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_training_survives_sigkill_then_model_recognises(queue_env) -> None:  # noqa: F811
    import cv2

    from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

    workers, settings = queue_env
    # Training shares two busy cores: give heartbeats room so a slow one is not taken for a death.
    workers.env["SEGBOT_STALE_AFTER_S"] = "8"
    for name in ("OMP_NUM_THREADS", "SEGBOT_TRAIN_THREADS"):  # the pool process decides by itself
        workers.env.pop(name, None)
    settings = settings.model_copy(update={"stale_after_s": 8.0})
    store = FileStore(settings.files_dir)
    scene = synthetic_scene(3, (256, 256), n_particles=20, n_pits=4)
    labelled = with_crops(scene, n_crops=1, crop_size=160)
    first = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = User(telegram_id=77, username="chemist")
        session.add(user)
        session.commit()
        labels = _upload(session, store, user, "labelme", "train.json",
                         json.dumps(labelme_dict(labelled, image_name="train.png")).encode())
        options = {"arch": "tiny", "iterations": 2, "holdout": False, "batch_size": 1, "crop_size": 128}
        job = submit_job(session, user, TrainParams(upload_ids=(labels.id,), options=options),
                         settings=settings)
    wait_for(lambda: _job(settings, job.id).stage == "training", 300, "training to start")
    workers.kill(first)  # mid-training: the model is not saved, the job stays "running" for now
    assert _job(settings, job.id).state == "running"
    assert not (settings.files_dir / "models").exists()
    workers.start("--queues", "train,predict")
    done = _wait_state(settings, job.id, ("succeeded", "failed"), timeout=400)
    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    # Threads chosen from the idle cores (no cap on forked pool processes): 1 or 2, by the load.
    timing = done.result["timing"]
    print(f"pool process trained on {timing['threads']} thread(s), used {timing['threads_used']}")
    assert timing["threads_source"] == "auto" and timing["threads"] >= 1
    with session_factory(settings.database_url)() as session:
        models = list(session.scalars(select(TrainedModel)))
        assert len(models) == 1 and models[0].job_id == job.id and models[0].version == 1
        model = models[0]
        assert model.status == "ready" and set(model.classes) <= {"particle", "pit"}
        assert (settings.data_dir / model.path / "weights.pt").is_file()
        assert session.get(User, user.id).active_model_id == model.id
        notices = list(session.scalars(select(Notice).where(Notice.job_id == job.id)))
        assert [(n.kind, n.payload["model_id"], n.payload["version"]) for n in notices] == [
            ("train_done", model.id, 1)]
        assert list((settings.files_dir / "models" / f"u{user.id}").iterdir()) == [
            settings.data_dir / model.path]

        ok, png = cv2.imencode(".png", cv2.cvtColor(synthetic_scene(4, (256, 256)).image, cv2.COLOR_RGB2BGR))
        image = _upload(session, store, user, "image", "new.png", png.tobytes())
        predict = submit_job(session, user, PredictParams(upload_ids=(image.id,), model_id=model.id,
                                                          threshold=0.05, nm_per_px=2.5),
                             settings=settings, model_id=model.id)
    done = _wait_state(settings, predict.id, ("succeeded", "failed"), timeout=300)
    assert done.state == "succeeded", done.error
    with session_factory(settings.database_url)() as session:
        results = list(session.scalars(select(Result).where(Result.job_id == predict.id)))
        assert len(results) == 1
        files = results[0].files
        assert {"labelme", "overlay", "csv", "summary"} <= set(files)
        assert all(store.exists(sha) for sha in files.values())
        assert "n_objects" in results[0].summary
        notice = session.scalar(select(Notice).where(Notice.job_id == predict.id))
        assert notice.kind == "predict_done" and notice.payload["result_ids"] == [results[0].id]
        assert session.get(Job, predict.id).result["result_ids"] == [results[0].id]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reclaimed_training_resumes_from_its_checkpoint(queue_env) -> None:  # noqa: F811
    """SIGKILL after the first checkpoint: the next worker goes on from there (not from 0) and
    finishes the planned iterations; one model, one notice, and the checkpoint is gone."""
    from jobs.train import checkpoint_dir, checkpoint_name
    from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

    workers, settings = queue_env
    workers.env.update(SEGBOT_STALE_AFTER_S="8", SEGBOT_CHECKPOINT_EVERY_ITERS="3")
    settings = settings.model_copy(update={"stale_after_s": 8.0})
    store = FileStore(settings.files_dir)
    labelled = with_crops(synthetic_scene(3, (256, 256), n_particles=20, n_pits=4), n_crops=1, crop_size=160)
    first = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = User(telegram_id=78, username="resumer")
        session.add(user)
        session.commit()
        labels = _upload(session, store, user, "labelme", "train.json",
                         json.dumps(labelme_dict(labelled, image_name="train.png")).encode())
        options = {"arch": "tiny", "iterations": 9, "holdout": False, "batch_size": 1, "crop_size": 128}
        job = submit_job(session, user, TrainParams(upload_ids=(labels.id,), options=options),
                         settings=settings)
    checkpoint = store.resolve(checkpoint_name(job.id))
    wait_for(checkpoint.is_file, 400, "the first checkpoint")
    workers.kill(first)
    stopped_at = _job(settings, job.id).progress
    assert _job(settings, job.id).state == "running" and not (settings.files_dir / "models").exists()
    second = workers.start("--queues", "train")
    wait_for(lambda: "resumed at" in (_job(settings, job.id).stage or ""), 300, "the resumed progress")
    stage = _job(settings, job.id).stage
    done = _wait_state(settings, job.id, ("succeeded", "failed"), timeout=400)
    assert done.state == "succeeded", done.error
    resumed_at = done.result["resumed_at"]
    print(f"killed at progress {stopped_at:.2f}; resumed at iteration {resumed_at} of 9 ({stage!r})")
    assert resumed_at >= 3 and resumed_at % 3 == 0 and stage == f"training, resumed at {resumed_at} / 9"
    assert done.result["iterations"] == 9 and done.attempts == 2
    assert f"job {job.id} resumed at iteration {resumed_at} of 9" in second.log.read_text()
    with session_factory(settings.database_url)() as session:
        models = list(session.scalars(select(TrainedModel)))
        assert [(m.job_id, m.version) for m in models] == [(job.id, 1)]
        assert (settings.data_dir / models[0].path / "weights.pt").is_file()
        notices = list(session.scalars(select(Notice).where(Notice.job_id == job.id)))
        assert [n.kind for n in notices] == ["train_done"]
    # deleted once the job's result is committed: just after the state the test saw, so wait a moment
    wait_for(lambda: not store.resolve(checkpoint_dir(job.id)).exists(), 30, "the checkpoint deleted")
