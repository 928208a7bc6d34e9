"""Database work behind the user's commands (jobs, models, stats, export, forget, admin).

Each function takes a session first and runs in a thread; every query is scoped to the user."""

from __future__ import annotations

import io
import json
import logging
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select

from bot.result_files import output_name
from jobqueue.store import queue_position, request_cancel
from jobs.params import ParamsError, TrainParams
from storage.files import FileStore, Store, StoreError
from storage.models import Job, JobState, ModelStatus, Result, TrainedModel, Upload, User

log = logging.getLogger(__name__)
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def status_lines(session, user_id: int) -> list[str]:
    jobs = session.scalars(select(Job).where(Job.user_id == user_id).order_by(Job.id.desc()).limit(10))
    lines = []
    for job in jobs:
        extra = ""
        if job.state == JobState.RUNNING:
            extra = f" {int(round(100 * (job.progress or 0)))}% {job.stage or ''}".rstrip()
        elif job.state == JobState.QUEUED:
            position = queue_position(session, job)
            extra = f" (position {position})" if position else ""
        elif job.state == JobState.FAILED and job.error:
            extra = f": {job.error[:200]}"
        lines.append(f"#{job.id} {job.kind}: {job.state}{extra}")
    return lines


def cancel_job(session, user_id: int, job_id: int | None) -> tuple[int | None, bool]:
    stmt = select(Job).where(Job.user_id == user_id)
    if job_id is not None:
        job = session.scalar(stmt.where(Job.id == job_id))
    else:
        job = session.scalar(stmt.where(Job.state.in_(ACTIVE)).order_by(Job.id.desc()))
    if job is None:
        return None, False
    if job.state not in ACTIVE:
        return job.id, False
    return job.id, bool(request_cancel(session, job))


def list_models(session, user_id: int) -> list[dict[str, Any]]:
    models = session.scalars(
        select(TrainedModel)
        .where(TrainedModel.user_id == user_id)
        .order_by(TrainedModel.version.desc())
        .limit(20)
    )
    return [
        {
            "id": m.id,
            "version": m.version,
            "name": m.name or "",
            "status": m.status,
            "date": m.created_at.strftime("%Y-%m-%d") if m.created_at else "?",
            "metrics": dict(m.metrics or {}),
        }
        for m in models
    ]


def _own_model(session, user_id: int, model_id: int) -> TrainedModel | None:
    model = session.get(TrainedModel, model_id)
    return model if model is not None and model.user_id == user_id else None


def model_version(session, user_id: int, model_id: int) -> int | None:
    model = _own_model(session, user_id, model_id)
    return model.version if model else None


def use_model(session, user_id: int, model_id: int) -> tuple[int | None, bool]:
    model = _own_model(session, user_id, model_id)
    if model is None:
        return None, False
    if model.status != ModelStatus.READY:
        return model.version, False
    session.get(User, user_id).active_model_id = model.id
    return model.version, True


def rename_model(session, user_id: int, model_id: int, name: str) -> int | None:
    model = _own_model(session, user_id, model_id)
    if model is None:
        return None
    model.name = name
    return model.version


def _bundle_dir(data_dir: Path, files_dir: Path, path: str | None) -> Path | None:
    """The bundle directory of a model, only if it lies inside files_dir/models."""
    if not path:
        return None
    models_root = (files_dir / "models").resolve()
    for base in (data_dir, files_dir):
        candidate = (base / path).resolve()
        if models_root in candidate.parents:
            return candidate
    return None


def delete_model(session, store: Store, user_id: int, model_id: int) -> int | None:
    model = _own_model(session, user_id, model_id)
    if model is None:
        return None
    version = model.version
    user = session.get(User, user_id)
    if user.active_model_id == model.id:
        user.active_model_id = None
    session.delete(model)
    session.flush()
    _remove_bundle(store, model.path)
    return version


def _remove_bundle(store: Store, path: str | None) -> None:
    """The model's bundle from the store itself (a bucket too, not only this machine's copy), so no
    worker anywhere can fetch it again; only a path inside the store's models/ is touched."""
    parts = PurePosixPath(path or "").parts
    if len(parts) < 4 or parts[0] != "files" or parts[1] != "models":  # files/models/u1/v2
        return
    try:
        store.remove_dir(PurePosixPath(*parts[1:]).as_posix())
    except (StoreError, OSError) as error:  # a leftover for `segbot clean`, never a failed delete
        log.warning("model bundle %s not removed from the store: %s", path, error)


def recent_summaries(session, user_id: int, limit: int = 50) -> list[dict[str, Any]]:
    results = session.scalars(
        select(Result).where(Result.user_id == user_id).order_by(Result.id.desc()).limit(limit)
    )
    return [dict(r.summary or {}) for r in results]


def export_zip(session, store: FileStore, data_dir: Path, user_id: int) -> bytes | None:
    uploads = list(session.scalars(select(Upload).where(Upload.user_id == user_id).order_by(Upload.id)))
    results = list(session.scalars(select(Result).where(Result.user_id == user_id).order_by(Result.id)))
    models = list(session.scalars(select(TrainedModel).where(TrainedModel.user_id == user_id)))
    if not (uploads or results or models):
        return None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for upload in uploads:
            try:
                archive.writestr(
                    f"uploads/{upload.id}_{Path(upload.original_name).name}", store.read_bytes(upload.sha256)
                )
            except StoreError:
                continue
        for result in results:
            stem = Path(result.image_name or f"image_{result.id}").stem
            for role, sha in (result.files or {}).items():
                try:
                    archive.writestr(
                        f"results/{result.id}_{stem}/{output_name(stem, role)}",
                        store.read_bytes(sha),
                    )
                except StoreError:
                    continue
            archive.writestr(
                f"results/{result.id}_{stem}/summary.json", json.dumps(result.summary or {}, indent=1)
            )
        for model in models:
            info = {
                "version": model.version,
                "name": model.name,
                "classes": model.classes,
                "status": model.status,
                "metrics": model.metrics,
                "options": model.options,
                "path": model.path,
            }
            archive.writestr(f"models/v{model.version}/model.json", json.dumps(info, indent=1, default=str))
            bundle = _bundle_dir(data_dir, store.root, model.path)
            for name in ("bundle.json", "MODEL_CARD.md"):
                if bundle is not None and (bundle / name).is_file():
                    archive.write(bundle / name, f"models/v{model.version}/{name}")
    return buffer.getvalue()


def forget_user(session, store: Store, data_dir: Path, user_id: int) -> bool:
    """Delete the user's rows, their files no one else references, and their model bundles;
    False when the user was gone already."""
    user = session.get(User, user_id)
    if user is None:
        return False
    for job in session.scalars(select(Job).where(Job.user_id == user_id, Job.state.in_(ACTIVE))):
        request_cancel(session, job)
    digests = set(session.scalars(select(Upload.sha256).where(Upload.user_id == user_id)))
    for files in session.scalars(select(Result.files).where(Result.user_id == user_id)):
        digests.update(v for v in (files or {}).values() if isinstance(v, str))
    bundles = list(session.scalars(select(TrainedModel.path).where(TrainedModel.user_id == user_id)))
    user.active_model_id = None
    session.flush()
    session.delete(user)
    session.flush()
    # Content-addressed: keep a blob another user also sent or got.
    shared = (
        set(session.scalars(select(Upload.sha256).where(Upload.sha256.in_(digests)))) if digests else set()
    )
    for files in session.scalars(select(Result.files)):
        shared.update(v for v in (files or {}).values() if isinstance(v, str))
    for digest in digests - shared:
        try:
            store.delete(digest)
        except StoreError:
            continue
    for path in bundles:
        _remove_bundle(store, path)
    user_dir = store.root / "models" / f"u{user_id}"
    if user_dir.is_dir():
        shutil.rmtree(user_dir, ignore_errors=True)
    return True


@dataclass(frozen=True)
class TrainingPlan:
    """The uploads and options of the training a correction starts."""

    upload_ids: list[int]
    options: dict[str, Any]


def _trained_with(train_job: Job | None) -> TrainParams | None:
    """The params the model's training job ran with (None: no such job, or a row that cannot be read)."""
    if train_job is None:
        return None
    try:
        return TrainParams.from_job(train_job)
    except ParamsError:
        return None


def correction_plan(session, user_id: int, upload_id: int) -> TrainingPlan | None:
    """The next training set after a correction: the model's training uploads plus the correction."""
    upload = session.get(Upload, upload_id)
    if upload is None or upload.user_id != user_id:
        return None
    ids: list[int] = []
    options: dict[str, Any] = {}
    result = session.get(Result, upload.corrects_result_id) if upload.corrects_result_id else None
    predict_job = session.get(Job, result.job_id) if result else None
    model = session.get(TrainedModel, predict_job.model_id) if predict_job and predict_job.model_id else None
    if model is not None and model.user_id == user_id:
        trained = _trained_with(session.get(Job, model.job_id) if model.job_id else None)
        if trained is not None:
            ids, options = list(trained.upload_ids), dict(trained.options)
        options = {
            **options,
            **{
                k: v
                for k, v in (model.options or {}).items()
                if k in ("arch", "iterations", "augment", "rescale")
            },
        }
    existing = set(session.scalars(select(Upload.id).where(Upload.id.in_(ids), Upload.user_id == user_id)))
    ids = [i for i in ids if i in existing and i != upload_id] + [upload_id]
    user = session.get(User, user_id)
    pending = [i for i in (user.preferences or {}).get("pending_uploads") or [] if i != upload_id]
    prefs = dict(user.preferences or {})
    prefs["pending_uploads"] = pending
    user.preferences = prefs
    options.pop("device", None)
    return TrainingPlan(ids, options)


def admin_overview(session) -> dict[str, Any]:
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    since = datetime.now(UTC) - timedelta(days=1)
    jobs24 = session.scalar(select(func.count()).select_from(Job).where(Job.created_at >= since)) or 0
    gpu = (
        session.scalar(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0)).where(Job.created_at >= since))
        or 0.0
    )
    queue = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"
    users = session.scalar(select(func.count()).select_from(User)) or 0
    return {"queue": queue, "users": users, "jobs24": jobs24, "gpu": float(gpu)}


def all_chat_ids(session) -> list[int]:
    return list(session.scalars(select(User.telegram_id).order_by(User.id)))
