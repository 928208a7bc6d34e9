"""Job bodies and the loop that runs them: plain functions that take ids, read inputs from
storage (database + file store) and write results back. Celery only calls `drain`.

A body is looked up by the job's kind in BODIES (train, predict). Tests and benchmarks add tiny
bodies (sleep, fail, out-of-memory) from a module named in SEGBOT_TEST_JOB_MODULE, imported when
this module loads, so they exercise real workers and a real broker with fake work.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import jobs as jobstore
from storage.files import FileStore, StoreError
from storage.models import Job, JobState, ModelStatus, Result, TrainedModel, Upload, User
from storage.notices import JOB_CANCELLED, JOB_FAILED, PREDICT_DONE, TRAIN_DONE

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The user cancelled the job (or it is no longer this worker's): stop, keep nothing."""


class JobError(Exception):
    """A failure the user can act on; str() is the message shown to them."""


@dataclass
class Outcome:
    """What a body produced. `record` adds rows in the transaction that marks the job done;
    `discard` removes files when that transaction did not happen."""

    result: dict[str, Any]
    notice_kind: str
    notice_payload: dict[str, Any]
    record: Callable[[Session, Job], None] | None = None
    discard: Callable[[], None] | None = None


Body = Callable[["JobContext"], Outcome]
BODIES: dict[str, Body] = {}


def register(kind: str) -> Callable[[Body], Body]:
    def add(body: Body) -> Body:
        BODIES[kind] = body
        return body

    return add


@dataclass
class JobContext:
    """What a running body may use: its ids and params, storage, progress and cancel checks."""

    settings: Any
    claim: jobstore.Claim
    min_interval_s: float = 1.0  # database writes/reads for progress and cancel, at most this often
    _last_progress: float = 0.0
    _last_stage: str = ""
    _last_check: float = 0.0
    _stop: bool = False
    lost: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.settings.database_url

    @property
    def job_id(self) -> int:
        return self.claim.job_id

    @property
    def params(self) -> dict[str, Any]:
        return self.claim.params

    @property
    def store(self) -> FileStore:
        return FileStore(self.settings.files_dir)

    def session(self) -> Session:
        from storage.db import session_factory

        return session_factory(self.url)()

    def progress(self, fraction: float, stage: str, eta_s: float | None = None,
                 loss: float | None = None) -> None:
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_progress < self.min_interval_s:
            return
        self._last_progress, self._last_stage = now, stage
        if not jobstore.set_progress(self.url, self.claim, fraction, stage, eta_s, loss):
            self.lost = True

    def cancelled(self) -> bool:
        """True once a cancel was requested (read from the database at most once a second)."""
        if self._stop or self.lost:
            return True
        now = time.monotonic()
        if now - self._last_check >= self.min_interval_s:
            self._last_check = now
            self._stop = jobstore.should_stop(self.url, self.claim)
        return self._stop

    def check(self) -> None:
        if self.cancelled():
            raise JobCancelled()


# Running


class _Heartbeat(threading.Thread):
    """Keeps heartbeat_at fresh while a body runs, so the sweeper knows the worker is alive."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job_id}")
        self.ctx = ctx
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.ctx.settings.heartbeat_s):
            try:
                if not jobstore.heartbeat(self.ctx.url, self.ctx.claim):
                    self.ctx.lost = True
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the job
                log.warning("job %s: heartbeat failed", self.ctx.job_id, exc_info=True)


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def out_of_memory_advice(kind: str) -> str:
    if kind == "predict":
        return ("Recognition ran out of memory. Try a smaller tile size, fewer images per job, or crop "
                "very large images; a model trained with the smaller preset (tiny) also needs less.")
    if kind == "train":
        return ("Training ran out of memory. Try the smaller preset (tiny), fewer or smaller labelled crops, "
                "or a smaller crop size; or ask the administrator for a machine with more memory.")
    return ("The job ran out of memory. Try a smaller preset, fewer objects or images, or a smaller tile "
            "size.")


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def _fail(ctx: JobContext, reason: str) -> None:
    jobstore.finish_job(ctx.url, ctx.claim, JobState.FAILED, error=reason,
                        notice=(JOB_FAILED, {"job_id": ctx.job_id, "kind": ctx.claim.kind, "reason": reason}))


def run_claim(settings: Any, claim: jobstore.Claim) -> str:
    """Run one claimed job to its end state; never raises for a job's own failure."""
    ctx = JobContext(settings, claim)
    beat = _Heartbeat(ctx)
    beat.start()
    started = time.monotonic()
    try:
        outcome = _run(ctx)
    finally:
        beat.done.set()
        beat.join(timeout=5)
    _observe(settings, claim.kind, outcome, time.monotonic() - started)
    return outcome


def _observe(settings: Any, kind: str, outcome: str, seconds: float) -> None:
    """Prometheus counters (storage/metrics.py); metrics never break a job."""
    try:
        from storage import metrics

        if outcome != "lost":
            metrics.observe_job(kind, outcome, seconds)
        metrics.update_gpu_memory(settings.device)
    except Exception:  # noqa: BLE001
        log.debug("metrics not recorded", exc_info=True)


def _run(ctx: JobContext) -> str:
    claim = ctx.claim
    body = BODIES.get(claim.kind)
    if body is None:
        _fail(ctx, f"This worker cannot run jobs of kind '{claim.kind}'. Please tell the administrator.")
        return JobState.FAILED.value
    log.info("job %s (%s) started, attempt %s", claim.job_id, claim.kind, claim.attempts)
    try:
        outcome = body(ctx)
        ctx._last_check = 0.0
        if ctx.cancelled():  # cancelled while finishing: the user asked for nothing to be kept
            if outcome.discard:
                outcome.discard()
            raise JobCancelled()
    except JobCancelled:
        if jobstore.finish_job(ctx.url, claim, JobState.CANCELLED,
                               notice=(JOB_CANCELLED, {"job_id": claim.job_id, "kind": claim.kind})):
            log.info("job %s cancelled", claim.job_id)
            return JobState.CANCELLED.value
        return "lost"
    except Exception as error:  # MemoryError is an Exception too; the worker goes on either way
        out_of_memory = is_out_of_memory(error)
        if out_of_memory:
            log.warning("job %s ran out of memory: %s", claim.job_id, error)
            reason = out_of_memory_advice(claim.kind)
        elif isinstance(error, JobError) or _is_user_error(error):
            reason = str(error)
        else:
            log.exception("job %s failed", claim.job_id)
            _count_error()
            reason = (f"Job #{claim.job_id} failed because of an internal error; the administrator "
                      "can find the details in the worker log.")
    else:
        return _record(ctx, outcome)
    if out_of_memory:  # the exception and its frames (big arrays) are gone once out of `except`
        _free_memory()
    _fail(ctx, reason)
    return JobState.FAILED.value


def _count_error() -> None:
    try:
        from storage.metrics import ERRORS_TOTAL

        ERRORS_TOTAL.labels(service="worker").inc()
    except Exception:  # noqa: BLE001
        pass


def _record(ctx: JobContext, outcome: Outcome) -> str:
    claim = ctx.claim
    try:
        recorded = jobstore.finish_job(ctx.url, claim, JobState.SUCCEEDED, result=outcome.result,
                                       notice=(outcome.notice_kind, outcome.notice_payload),
                                       hook=outcome.record)
    except BaseException:
        if outcome.discard:
            outcome.discard()
        log.exception("job %s: could not record its results", claim.job_id)
        _fail(ctx, f"Job #{claim.job_id} finished but its results could not be saved; please send it again.")
        return JobState.FAILED.value
    if not recorded:  # swept or cancelled meanwhile: whoever owns it now decides
        if outcome.discard:
            outcome.discard()
        return "lost"
    log.info("job %s succeeded", claim.job_id)
    return JobState.SUCCEEDED.value


def _is_user_error(error: BaseException) -> bool:
    """Bad input (annotations, options): its message is written for the user."""
    from annotations.model import AnnotationError

    return isinstance(error, AnnotationError) or type(error).__name__ == "OptionsError"


def drain(settings: Any, queue: str, worker: str | None = None, limit: int | None = None) -> int:
    """Claim and run jobs of `queue` (fair order) until none is claimable; returns how many ran."""
    ran = 0
    while limit is None or ran < limit:
        claim = jobstore.claim_next(settings.database_url, queue, settings, worker)
        if claim is None:
            break
        run_claim(settings, claim)
        ran += 1
    return ran


# Shared helpers for the bodies


def _uploads(ctx: JobContext, session: Session) -> list[Upload]:
    ids = [int(i) for i in ctx.params.get("upload_ids", [])]
    if not ids:
        raise JobError("This job has no files to work on; please send them again.")
    rows = {u.id: u for u in session.scalars(select(Upload).where(Upload.id.in_(ids),
                                                                  Upload.user_id == ctx.claim.user_id))}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise JobError("Some of the files for this job are gone (deleted or expired); "
                       "please send them again.")
    return [rows[i] for i in ids]


def _read(ctx: JobContext, upload: Upload) -> bytes:
    try:
        return ctx.store.read_bytes(upload.sha256)
    except StoreError:
        raise JobError(f"The file {upload.original_name} is no longer stored; "
                       "please send it again.") from None


def _scratch(ctx: JobContext, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(dir=ctx.store.tmp, prefix=f"{prefix}-{ctx.job_id}-"))


# Training


@register("train")
def train_job(ctx: JobContext) -> Outcome:
    from annotations.labelme import read_labelme
    from trainer.options import TrainOptions
    from trainer.train import TrainingCancelled, train_model

    with ctx.session() as session:
        uploads = _uploads(ctx, session)
        data = {u.id: _read(ctx, u) for u in uploads}
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
    scratch = _scratch(ctx, "train")
    out_dir = scratch / "bundle"

    def report(p: Any) -> None:
        ctx.progress(p.fraction, p.stage, p.eta_s, p.loss)

    try:
        result = train_model(sources, out_dir, options, progress=report, should_cancel=ctx.cancelled)
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


# Recognition

_detector_cache: dict[tuple[int, str], Any] = {}


def _detector(ctx: JobContext, model: TrainedModel) -> Any:
    from inference.model import load_detector

    key = (model.id, model.path or "")
    if key not in _detector_cache:
        _detector_cache.clear()  # one model in memory per worker process
        bundle = ctx.settings.data_dir / (model.path or "")
        _detector_cache[key] = load_detector(bundle, device=ctx.settings.device,
                                             trusted_roots=[ctx.settings.files_dir / "models"])
    return _detector_cache[key]


@register("predict")
def predict_job(ctx: JobContext) -> Outcome:
    from annotations.export import write_outputs
    from annotations.images import read_image
    from annotations.labelme import read_labelme
    from inference.pipeline import PredictOptions, predict_image

    with ctx.session() as session:
        uploads = _uploads(ctx, session)
        model_id = ctx.params.get("model_id") or ctx.claim.model_id
        model = session.get(TrainedModel, int(model_id)) if model_id else None
        if model is None or model.user_id != ctx.claim.user_id or model.status != ModelStatus.READY:
            raise JobError("The model for this job is not available; train one or pick another with /models.")
        data = {u.id: _read(ctx, u) for u in uploads}
    files = {u.original_name: data[u.id] for u in uploads}  # resolves imagePath between uploads
    ctx.progress(0.0, "loading model")
    detector = _detector(ctx, model)
    options = PredictOptions(threshold=float(ctx.params.get("threshold", 0.5)), tile=ctx.params.get("tile"))
    # The model drops detections below this floor before building masks: low enough for the
    # user's threshold, no lower (dense tiles at 0.05 would hold ~0.5 GB of masks).
    detector.score_thr = min(0.25, options.threshold)
    scratch = _scratch(ctx, "predict")
    rows: list[dict[str, Any]] = []
    try:
        images = [u for u in uploads if u.kind != "zip"]
        for index, upload in enumerate(images):
            ctx.check()
            if upload.kind in ("labelme", "correction"):
                ann = read_labelme(data[upload.id], name=upload.original_name, files=files,
                                   max_pixels=ctx.settings.max_image_pixels)
                image, own_scale = ann.image, ann.nm_per_px
            else:
                loaded = read_image(data[upload.id], name=upload.original_name,
                                    max_pixels=ctx.settings.max_image_pixels)
                image, own_scale = loaded.image, loaded.nm_per_px
            nm_per_px = ctx.params.get("nm_per_px") or own_scale

            def tiles(done: int, total: int, index: int = index) -> None:
                ctx.progress((index + done / max(total, 1)) / len(images), f"image {index + 1}/{len(images)}")
                ctx.check()

            prediction = predict_image(image, detector, options, progress=tiles)
            stem = Path(upload.original_name).stem or f"image{index + 1}"
            out_dir = scratch / str(index)
            out_dir.mkdir()
            written = write_outputs(out_dir, stem, image, prediction.instances, nm_per_px=nm_per_px,
                                    title=upload.original_name)
            files = {role: ctx.store.put_file(path) for role, path in written.items()}
            summary: dict[str, Any] = {}
            if "summary" in written:
                summary = json.loads(Path(written["summary"]).read_text())
            rows.append({"upload_id": upload.id, "image_name": upload.original_name,
                         "image_sha256": upload.sha256, "files": files, "summary": summary})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result_ids: list[int] = []

    def record(session: Session, job: Job) -> None:
        for row in rows:
            result = Result(job_id=job.id, user_id=job.user_id, **row)
            session.add(result)
            session.flush()
            result_ids.append(result.id)
        payload["result_ids"] = list(result_ids)
        job.result = {**(job.result or {}), "result_ids": list(result_ids)}

    payload: dict[str, Any] = {"job_id": ctx.job_id, "model_id": model.id, "n_images": len(rows),
                               "n_objects": sum(int(r["summary"].get("n_objects", 0)) for r in rows)}
    return Outcome(result={"n_images": len(rows), "n_objects": payload["n_objects"]},
                   notice_kind=PREDICT_DONE, notice_payload=payload, record=record)


def _load_test_bodies() -> None:
    name = os.environ.get("SEGBOT_TEST_JOB_MODULE")
    if name:
        importlib.import_module(name)


_load_test_bodies()
