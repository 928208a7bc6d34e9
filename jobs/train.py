"""The train job body: uploads in storage -> trainer.train_model -> a model bundle in the file
store and a TrainedModel row, added in the transaction that marks the job done."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.context import JobCancelled, JobContext, JobError, Outcome, job_uploads, read_upload, scratch_dir
from storage.models import Job, ModelStatus, TrainedModel, User
from storage.notices import TRAIN_DONE


def train_job(ctx: JobContext) -> Outcome:
    from annotations.labelme import read_labelme
    from segmodel.options import TrainOptions
    from trainer.init_weights import WeightPaths
    from trainer.train import TrainingCancelled, train_model

    with ctx.session() as session:
        uploads = job_uploads(ctx, session)
        data = {u.id: read_upload(ctx, u) for u in uploads}
    files = {u.original_name: data[u.id] for u in uploads}  # resolves imagePath between uploads
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

    try:
        result = train_model(sources, out_dir, options, progress=report, should_cancel=ctx.cancelled,
                             weights=WeightPaths.from_settings(ctx.settings))
    except TrainingCancelled:
        shutil.rmtree(scratch, ignore_errors=True)
        raise JobCancelled() from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    bundle = Path(result.bundle_dir)
    installed: list[Path] = []

    def record(session: Session, job: Job) -> None:
        # Runs inside the serialized finishing transaction: version numbers cannot collide, and a
        # directory left by an attempt that died before committing is an orphan we may replace.
        version = (session.scalar(select(func.max(TrainedModel.version))
                                  .where(TrainedModel.user_id == job.user_id)) or 0) + 1
        relative = f"models/u{job.user_id}/v{version}"
        target = ctx.store.resolve(relative)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(bundle, target)  # same file system: one rename, never half a bundle
        installed.append(target)
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
        for path in installed:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    payload = ctx.extra.setdefault("payload", {})
    payload.update(job_id=ctx.job_id, classes=list(result.classes), metrics=dict(result.metrics),
                   iterations=result.iterations, seconds=round(result.seconds, 1))
    summary = {"classes": list(result.classes), "metrics": dict(result.metrics),
               "iterations": result.iterations, "seconds": round(result.seconds, 1)}

    def record_and_clean(session: Session, job: Job) -> None:
        record(session, job)
        shutil.rmtree(scratch, ignore_errors=True)

    return Outcome(result=summary, notice_kind=TRAIN_DONE, notice_payload=payload, record=record_and_clean,
                   discard=discard)


