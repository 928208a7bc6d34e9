"""The train job body: uploads in storage -> trainer.train_model -> a model bundle in the file
store and a TrainedModel row, added in the transaction that marks the job done.

Read top-down: train_job reads the LabelMe files, makes the options, trains (resuming from the
job's checkpoint when a worker died), and hands the result to a ModelInstall, whose `record`
installs the bundle and adds the model row when the job is marked done."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.i18n import N_
from jobs.context import JobCancelled, JobContext, JobError, Outcome, job_uploads, read_upload, scratch_dir
from jobs.fine_tune import Start, choose_start, classes_of, previous_model
from jobs.params import TrainParams
from segmodel.options import OptionsError, TrainOptions
from storage.models import Job, ModelStatus, TrainedModel, User
from storage.notices import TrainDoneNotice

if TYPE_CHECKING:
    from annotations.model import AnnotatedImage
    from trainer.train import TrainResult

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


def train_job(ctx: JobContext[TrainParams]) -> Outcome:
    began = time.monotonic()
    warm = "mmdet.models" in sys.modules  # else this job's setup includes importing torch and mmdet
    sources, digests = read_sources(ctx)
    options = train_options(ctx)
    start = start_weights(ctx, sources, options)
    scratch = scratch_dir(ctx, "train")
    # The model row keeps the user's options (init 'auto'); the run itself starts from `start`.
    run_options = dataclasses.replace(options, init=start.init) if start.init else options
    result = train(ctx, sources, digests, run_options, scratch, fine_tuning=start_stage(start))
    if result.resumed_at:
        log.info("job %s resumed at iteration %s of %s", ctx.job_id, result.resumed_at, result.iterations)
    if start.note:
        result.metrics["fine_tune"] = dict(start.note)  # the chat's "fine-tuned from v1" line
    summary = {"classes": list(result.classes), "metrics": dict(result.metrics),
               "iterations": result.iterations, "seconds": round(result.seconds, 1),
               "resumed_at": result.resumed_at,
               "timing": timing_record(result.metrics, options, result.iterations, time.monotonic() - began,
                                        warm)}
    install = ModelInstall(ctx, result, options, scratch)
    return Outcome(result=summary, notice=install.notice, record=install.record, discard=install.discard,
                   committed=install.clean_up)


def read_sources(ctx: JobContext[TrainParams]) -> tuple[list[AnnotatedImage], list[str]]:
    """The job's LabelMe files (images sent beside them resolve their imagePath) and the digests of
    every input, which name this run for its checkpoint."""
    from annotations.labelme import read_labelme

    with ctx.session() as session:
        uploads = job_uploads(ctx, session)
        data = {u.id: read_upload(ctx, u) for u in uploads}
    by_name = {u.original_name: data[u.id] for u in uploads}
    ctx.progress(0.0, "reading labels")
    sources = [read_labelme(data[u.id], name=u.original_name, files=by_name,
                            max_pixels=ctx.settings.max_image_pixels)
               for u in uploads if u.kind in ("labelme", "correction")]
    if not sources:
        raise JobError(N_("No LabelMe annotation files in this job; send the .json files you labelled."))
    return sources, [u.sha256 for u in uploads]


def start_weights(ctx: JobContext[TrainParams], sources: list[AnnotatedImage],
                  options: TrainOptions) -> Start:
    """A correction's training starts from the version it corrects (jobs/fine_tune.py); any other
    training from the options' own init."""
    from jobs.predict import bundle_path

    if ctx.params.correction_of is None:
        return Start()
    with ctx.session() as session:
        job = session.get(Job, ctx.job_id)
        previous = previous_model(session, job.user_id, ctx.params.correction_of) if job else None
    bundle = bundle_path(ctx, previous.path) if previous is not None else None
    start = choose_start(previous, classes_of(sources), options, bundle)
    if start.init:
        log.info("job %s fine-tunes v%s (%s)", ctx.job_id, start.note["from_version"], start.init)
    elif start.note:
        log.info("job %s starts afresh, not from v%s: %s", ctx.job_id, start.note["from_version"],
                 start.note)
    return start


def start_stage(start: Start) -> str | None:
    """The progress stage's word while fine-tuning ("fine-tuning v1" instead of "training")."""
    return f"fine-tuning v{start.note['from_version']}" if start.init else None


def train_options(ctx: JobContext[TrainParams]) -> TrainOptions:
    try:
        return ctx.params.train_options(ctx.settings.device)
    except OptionsError as error:
        raise JobError(N_("These training options cannot be used: {error}", error=error.text)) from None


def train(ctx: JobContext[TrainParams], sources: list[AnnotatedImage], digests: list[str],
          options: TrainOptions, scratch: Path, fine_tuning: str | None = None) -> TrainResult:
    """trainer.train_model, checkpointing into the store under the job's id. A cancel or a failure
    ends the run for good (its checkpoint goes); a stopping worker leaves it for the next one.
    `fine_tuning`: the stage's word for "training" when the run fine-tunes a version."""
    from trainer.checkpoint import CheckpointPlan
    from trainer.init_weights import WeightPaths
    from trainer.threads import ThreadPlan
    from trainer.train import TrainingCancelled, train_model

    def stage(word: str) -> str:
        return word.replace("training", fine_tuning, 1) if fine_tuning else word

    store, name = ctx.store, checkpoint_name(ctx.job_id)
    named = options.to_dict()
    if fine_tuning:  # the bundle's local copy may lie elsewhere on another host: name the version
        named["init"] = fine_tuning
    tag = {"job_id": ctx.job_id, "fingerprint": run_fingerprint(named, digests)}
    plan = CheckpointPlan(store.resolve(name), every_iters=ctx.settings.checkpoint_every_iters,
                          every_s=ctx.settings.checkpoint_every_s, tag=tag,
                          on_saved=lambda _path: store.publish(name))

    def drop_checkpoint() -> None:
        if not ctx.lost:  # a job that is no longer ours: its new worker resumes from it
            store.remove_dir(checkpoint_dir(ctx.job_id))

    try:
        return train_model(sources, scratch / "bundle", options,
                           progress=lambda p: ctx.progress(p.fraction, stage(p.stage), p.eta_s, p.loss),
                           should_cancel=ctx.cancelled, weights=WeightPaths.from_settings(ctx.settings),
                           checkpoint=plan, resume_from=store.fetch(name),  # None on a first attempt
                           threads=ThreadPlan.from_settings(ctx.settings))
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


@dataclass
class ModelInstall:
    """The trained bundle into the store and its TrainedModel row, in the job's finishing transaction."""

    ctx: JobContext[TrainParams]
    result: TrainResult
    options: TrainOptions
    scratch: Path
    installed: list[str] = field(default_factory=list)  # store dirs the bundle went to, last = current
    model_id: int | None = None  # the row `record` added
    version: int | None = None

    def record(self, session: Session, job: Job) -> None:
        # Runs inside the serialized finishing transaction: version numbers cannot collide, and a
        # directory left by an attempt that died before committing is an orphan we may replace.
        version = (session.scalar(select(func.max(TrainedModel.version))
                                  .where(TrainedModel.user_id == job.user_id)) or 0) + 1
        relative = self._install(f"models/u{job.user_id}/v{version}")
        path = str(Path(self.ctx.settings.files_dir.name) / relative)  # relative to the data dir
        model = TrainedModel(user_id=job.user_id, version=version, name=f"v{version}",
                             classes=list(self.result.classes), status=ModelStatus.READY.value, path=path,
                             arch=self.options.arch, metrics=dict(self.result.metrics),
                             options=self.options.to_dict(), dataset_id=job.dataset_id, job_id=job.id)
        session.add(model)
        session.flush()
        job.model_id = model.id
        if self.ctx.params.activate:
            user = session.get(User, job.user_id)
            if user is not None:
                user.active_model_id = model.id
        job.result = {**(job.result or {}), "model_id": model.id, "version": version}
        self.model_id, self.version = model.id, version

    def _install(self, relative: str) -> str:
        """Never half a bundle: one rename on a local store, a completion marker last on S3."""
        store = self.ctx.store
        if not self.installed:
            store.install_dir(Path(self.result.bundle_dir), relative, replace=True, move=True)
            self.installed.append(relative)
        elif self.installed[-1] != relative:  # a retried transaction numbered it anew: move it there
            store.install_dir(store.resolve(self.installed[-1]), relative, replace=True, move=True)
            store.remove_dir(self.installed[-1])
            self.installed.append(relative)
        return relative

    def notice(self, job: Job) -> TrainDoneNotice:
        """The chat's "model ready", made after `record` (which numbered the model)."""
        assert self.model_id is not None and self.version is not None, "record() runs first"
        return TrainDoneNotice(job_id=job.id, model_id=self.model_id, version=self.version,
                         classes=list(self.result.classes), metrics=dict(self.result.metrics),
                         iterations=self.result.iterations, seconds=round(self.result.seconds, 1))

    def discard(self) -> None:
        for relative in self.installed:
            self.ctx.store.remove_dir(relative)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def clean_up(self) -> None:  # the model is in: nothing left to resume
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.ctx.store.remove_dir(checkpoint_dir(self.ctx.job_id))
