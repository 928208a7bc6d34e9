"""The train job body: uploads in storage -> trainer.train_model -> a model bundle in the file
store and a TrainedModel row, added in the transaction that marks the job done."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.context import JobCancelled, JobContext, JobError, Outcome, job_uploads, read_upload, scratch_dir
from storage.models import Job, ModelStatus, TrainedModel, User
from storage.notices import TRAIN_DONE

log = logging.getLogger(__name__)


def checkpoint_name(job_id: int) -> str:
    """The job's stable place in the store: a worker that reclaims the job finds it there."""
    return f"scratch/jobs/{int(job_id)}/checkpoint.pt"


def checkpoint_dir(job_id: int) -> str:
    return f"scratch/jobs/{int(job_id)}"


def run_fingerprint(options: dict[str, Any], digests: list[str]) -> str:
    """Options and input files of a run; a checkpoint of any other run is never resumed."""
    plain = {k: v for k, v in options.items() if k != "device"}  # a GPU worker may resume a CPU run
    text = json.dumps({"options": plain, "inputs": digests}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def timing_record(metrics: dict[str, Any], options: Any, iterations: int, body_s: float,
                  warm: bool = True) -> dict[str, Any]:
    """How fast this job trained, for jobqueue/estimates.py (the bot's next estimates): the trainer's
    measured seconds per iteration and threads, with the worker kind, preset, batch and crop size it
    is compared by, and the setup = everything of the body the iterations do not explain. `warm`:
    torch and mmdet were imported already (a worker's first job pays several seconds for that,
    which a later job does not)."""
    timing = dict(metrics.get("timing") or {})
    loop_s = float(timing.get("loop_s") or 0.0)
    timing.update(device_kind="cpu" if options.device == "cpu" else "cuda", arch=options.arch,
                  batch_size=options.batch_size, crop_size=options.crop_size, iterations=iterations,
                  seconds=round(body_s, 2), setup_s=round(max(0.0, body_s - loop_s), 2), warm=warm)
    return timing


def train_job(ctx: JobContext) -> Outcome:
    from annotations.labelme import read_labelme
    from segmodel.options import TrainOptions
    from trainer.checkpoint import CheckpointPlan
    from trainer.init_weights import WeightPaths
    from trainer.threads import ThreadPlan
    from trainer.train import TrainingCancelled, train_model

    began = time.monotonic()
    warm = "mmdet.models" in sys.modules  # else this job's setup includes importing torch and mmdet
    with ctx.session() as session:
        uploads = job_uploads(ctx, session)
        data = {u.id: read_upload(ctx, u) for u in uploads}
    files = {u.original_name: data[u.id] for u in uploads}  # resolves imagePath between uploads
    digests = [u.sha256 for u in uploads]
    ctx.progress(0.0, "reading labels")
    sources = [read_labelme(data[u.id], name=u.original_name, files=files,
                            max_pixels=ctx.settings.max_image_pixels)
               for u in uploads if u.kind in ("labelme", "correction")]
    if not sources:
        raise JobError("No LabelMe annotation files in this job; send the .json files you labelled.")
    try:  # from_user: never an init path from a job (it would load any file on the worker)
        options = TrainOptions.from_user({**ctx.params.get("options", {}), "device": ctx.settings.device})
    except ValueError as error:
        raise JobError(f"These training options cannot be used: {error}") from None
    scratch = scratch_dir(ctx, "train")
    out_dir = scratch / "bundle"

    def report(p: Any) -> None:
        ctx.progress(p.fraction, p.stage, p.eta_s, p.loss)

    store = ctx.store
    name = checkpoint_name(ctx.job_id)
    tag = {"job_id": ctx.job_id, "fingerprint": run_fingerprint(options.to_dict(), digests)}
    plan = CheckpointPlan(store.resolve(name), every_iters=ctx.settings.checkpoint_every_iters,
                          every_s=ctx.settings.checkpoint_every_s, tag=tag,
                          on_saved=lambda _path: store.publish(name))
    resume_from = store.fetch(name)  # None on a first attempt

    def drop_checkpoint() -> None:
        if not ctx.lost:  # a job that is no longer ours: its new worker resumes from it
            store.remove_dir(checkpoint_dir(ctx.job_id))

    try:
        result = train_model(sources, out_dir, options, progress=report, should_cancel=ctx.cancelled,
                             weights=WeightPaths.from_settings(ctx.settings), checkpoint=plan,
                             resume_from=resume_from, threads=ThreadPlan.from_settings(ctx.settings))
    except TrainingCancelled:
        shutil.rmtree(scratch, ignore_errors=True)
        drop_checkpoint()
        raise JobCancelled() from None
    except Exception:  # the job fails: not retried, so not resumed
        shutil.rmtree(scratch, ignore_errors=True)
        drop_checkpoint()
        raise
    except BaseException:  # the worker is stopping: the job comes back and resumes
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if result.resumed_at:
        log.info("job %s resumed at iteration %s of %s", ctx.job_id, result.resumed_at, result.iterations)
    bundle = Path(result.bundle_dir)
    installed: list[str] = []

    def record(session: Session, job: Job) -> None:
        # Runs inside the serialized finishing transaction: version numbers cannot collide, and a
        # directory left by an attempt that died before committing is an orphan we may replace.
        version = (session.scalar(select(func.max(TrainedModel.version))
                                  .where(TrainedModel.user_id == job.user_id)) or 0) + 1
        relative = f"models/u{job.user_id}/v{version}"
        # Never half a bundle: one rename on a local store, a completion marker last on S3.
        if not installed:
            store.install_dir(bundle, relative, replace=True, move=True)
            installed.append(relative)
        elif installed[-1] != relative:  # a retried transaction numbered it anew: move it there
            store.install_dir(store.resolve(installed[-1]), relative, replace=True, move=True)
            store.remove_dir(installed[-1])
            installed.append(relative)
        path = str(Path(ctx.settings.files_dir.name) / relative)  # relative to the data dir
        model = TrainedModel(user_id=job.user_id, version=version, name=f"v{version}",
                             classes=list(result.classes), status=ModelStatus.READY.value, path=path,
                             arch=options.arch, metrics=dict(result.metrics), options=options.to_dict(),
                             dataset_id=job.dataset_id, job_id=job.id)
        session.add(model)
        session.flush()
        job.model_id = model.id
        if ctx.params.get("activate", True):
            user = session.get(User, job.user_id)
            if user is not None:
                user.active_model_id = model.id
        job.result = {**(job.result or {}), "model_id": model.id, "version": version}
        payload = ctx.extra.setdefault("payload", {})
        payload.update(model_id=model.id, version=version)

    def discard() -> None:
        for relative in installed:
            store.remove_dir(relative)
        shutil.rmtree(scratch, ignore_errors=True)

    payload = ctx.extra.setdefault("payload", {})
    payload.update(job_id=ctx.job_id, classes=list(result.classes), metrics=dict(result.metrics),
                   iterations=result.iterations, seconds=round(result.seconds, 1))
    summary = {"classes": list(result.classes), "metrics": dict(result.metrics),
               "iterations": result.iterations, "seconds": round(result.seconds, 1),
               "resumed_at": result.resumed_at,
               "timing": timing_record(result.metrics, options, result.iterations, time.monotonic() - began,
                                        warm)}

    def clean_up() -> None:  # the model is in: nothing left to resume
        shutil.rmtree(scratch, ignore_errors=True)
        store.remove_dir(checkpoint_dir(ctx.job_id))

    return Outcome(result=summary, notice_kind=TRAIN_DONE, notice_payload=payload, record=record,
                   discard=discard, committed=clean_up)


