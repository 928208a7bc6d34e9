"""Retention (`segbot clean`) and per-user disk usage (`segbot admin usage`, the bot's /admin).

What goes: uploads and results older than SEGBOT_RETENTION_DAYS (their rows, then the blobs no
row names any more), sent notices as old, unreferenced model bundle dirs, stale scratch files,
training checkpoints of jobs that ended.
What stays: every model until its owner deletes it, the uploads of the dataset a kept model was
trained on, the uploads an unfinished job still needs, and ANY blob some row still names —
references are collected from every column that can hold a digest, including JSON.
Files younger than a grace period are never touched: a worker may have written one whose row
is not committed yet.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from jobs.params import ParamsError, UploadParams, parse_params
from storage.files import Store, StoredFile, as_store
from storage.models import (
    Dataset,
    Job,
    JobState,
    Notice,
    Result,
    TrainedModel,
    Upload,
    User,
    dataset_uploads,
)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
GRACE_S = 24 * 3600
_UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


# References


def _digests_in(value: Any) -> Iterator[str]:
    """Every sha256-looking string anywhere inside a JSON value."""
    if isinstance(value, str):
        if _DIGEST.match(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _digests_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _digests_in(item)


@dataclass
class References:
    blobs: set[str]
    model_dirs: set[str]  # names in the store: models/u1/v2


def _model_dir_candidates(path: str | None, store: Store) -> list[str]:
    """TrainedModel.path is relative to the data dir (files/models/u1/v2); accept one relative to
    the store too (models/u1/v2)."""
    if not path:
        return []
    parts = Path(path).parts
    names = ["/".join(parts)]
    if len(parts) > 1:  # the data dir's files/ (an object store's cache may live elsewhere)
        names.append("/".join(parts[1:]))
    return names


def collect_references(session: Session, store: Store) -> References:
    blobs: set[str] = set()
    blobs.update(sha for (sha,) in session.execute(select(Upload.sha256)) if sha)
    result_refs = select(Result.image_sha256, Result.files, Result.summary)
    for image_sha, files, summary in session.execute(result_refs):
        if image_sha:
            blobs.add(image_sha)
        blobs.update(_digests_in(files))
        blobs.update(_digests_in(summary))
    for params, result in session.execute(select(Job.params, Job.result)):
        blobs.update(_digests_in(params))
        blobs.update(_digests_in(result))
    for (payload,) in session.execute(select(Notice.payload)):
        blobs.update(_digests_in(payload))
    for (summary,) in session.execute(select(Upload.summary)):
        blobs.update(_digests_in(summary))
    for (summary,) in session.execute(select(Dataset.summary)):
        blobs.update(_digests_in(summary))
    model_dirs: set[str] = set()
    for (path,) in session.execute(select(TrainedModel.path)):
        model_dirs.update(_model_dir_candidates(path, store))
    return References(blobs, model_dirs)


def missing_references(database_url: str, files_dir: Path | Store) -> list[str]:
    """Rows whose files are not in the store (after a restore this should be empty)."""
    from storage.db import session_scope

    store = as_store(files_dir)
    missing: list[str] = []
    with session_scope(database_url) as session:
        for upload_id, sha in session.execute(select(Upload.id, Upload.sha256)):
            if not store.exists(sha):
                missing.append(f"upload {upload_id}: blob {sha}")
        for result_id, files in session.execute(select(Result.id, Result.files)):
            for role, sha in (files or {}).items():
                if isinstance(sha, str) and _DIGEST.match(sha) and not store.exists(sha):
                    missing.append(f"result {result_id} {role}: blob {sha}")
        for model_id, path in session.execute(select(TrainedModel.id, TrainedModel.path)):
            if path and not any(_safe_has_dir(store, n) for n in _model_dir_candidates(path, store)):
                missing.append(f"model {model_id}: bundle {path}")
    return missing


# Cleaning


@dataclass
class CleanupReport:
    cutoff: datetime
    dry_run: bool
    uploads: int = 0
    results: int = 0
    notices: int = 0
    blobs: int = 0
    model_dirs: int = 0
    tmp_files: int = 0
    checkpoints: int = 0
    bytes_freed: int = 0

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        return [
            f"retention cutoff {self.cutoff.isoformat(timespec='seconds')}",
            f"{verb}: {self.uploads} uploads, {self.results} results, {self.notices} notices (rows)",
            f"{verb}: {self.blobs} unreferenced files, {self.model_dirs} orphaned model dirs, "
            f"{self.tmp_files} stale temp files, {self.checkpoints} checkpoints of ended jobs",
            f"space {'to free' if self.dry_run else 'freed'}: {self.bytes_freed / 1e6:.2f} MB",
        ]


def _expired_rows(session: Session, cutoff: datetime) -> tuple[list[int], list[int], list[int]]:
    kept_datasets = select(TrainedModel.dataset_id).where(TrainedModel.dataset_id.is_not(None))
    kept_uploads = set(session.scalars(
        select(dataset_uploads.c.upload_id).where(dataset_uploads.c.dataset_id.in_(kept_datasets))
    ))
    for kind, params in session.execute(select(Job.kind, Job.params).where(Job.state.in_(_UNFINISHED))):
        kept_uploads.update(_uploads_needed(kind, params))
    uploads = [i for i in session.scalars(select(Upload.id).where(Upload.created_at < cutoff))
               if i not in kept_uploads]
    unfinished_jobs = select(Job.id).where(Job.state.in_(_UNFINISHED))
    results = list(session.scalars(
        select(Result.id).where(Result.created_at < cutoff, Result.job_id.not_in(unfinished_jobs))
    ))
    notices = list(session.scalars(
        select(Notice.id).where(Notice.sent_at.is_not(None), Notice.created_at < cutoff)
    ))
    return uploads, results, notices


def _uploads_needed(kind: str, params: dict[str, Any] | None) -> tuple[int, ...]:
    """The uploads an unfinished job works on, read through its kind's params class."""
    try:
        parsed = parse_params(kind, params or {})
    except ParamsError:  # that job fails when it starts (the runner says why): it needs nothing
        return ()
    return parsed.upload_ids if isinstance(parsed, UploadParams) else ()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _safe_has_dir(store: Store, name: str) -> bool:
    try:
        return store.has_dir(name)
    except Exception:  # noqa: BLE001 - a malformed path names no bundle
        return False


def _dirs(files: Iterable[StoredFile], depth: int) -> dict[str, tuple[float, int]]:
    """Directories `depth` levels down (models/u1/v2: 3) -> (newest mtime, total size)."""
    found: dict[str, tuple[float, int]] = {}
    for entry in files:
        parts = entry.name.split("/")
        if len(parts) <= depth:
            continue
        name = "/".join(parts[:depth])
        mtime, size = found.get(name, (0.0, 0))
        found[name] = (max(mtime, entry.mtime), size + entry.size)
    return found


def _job_id(name: str) -> int | None:
    tail = name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def run_cleanup(database_url: str, files_dir: Path | Store, retention_days: float, *, dry_run: bool = False,
                now: datetime | None = None, grace_s: float = GRACE_S) -> CleanupReport:
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    young = now.timestamp() - grace_s
    report = CleanupReport(cutoff=cutoff, dry_run=dry_run)
    store = as_store(files_dir)

    refs, unfinished = _expire_rows(database_url, store, cutoff, report, dry_run)
    if not dry_run:
        # A second look just before deleting: a row added meanwhile (a re-upload of the same
        # content) protects its blob.
        again, unfinished_now = _references_now(database_url, store)
        refs = References(refs.blobs | again.blobs, refs.model_dirs | again.model_dirs)
        unfinished |= unfinished_now
    _remove_blobs(store, refs.blobs, young, report)
    _remove_model_dirs(store, refs.model_dirs, young, report)
    _remove_checkpoints(store, unfinished, report)
    _remove_tmp_files(store, young, report)
    return report


def _expire_rows(database_url: str, store: Store, cutoff: datetime, report: CleanupReport, dry_run: bool
                 ) -> tuple[References, set[int]]:
    """Delete the expired uploads, results and sent notices (counted in `report`); what is still
    referenced once they are gone, and the unfinished jobs. A dry run asks inside the same
    transaction, then rolls it back."""
    from storage.db import session_scope

    with session_scope(database_url, commit=not dry_run) as session:
        uploads, results, notices = _expired_rows(session, cutoff)
        report.uploads, report.results, report.notices = len(uploads), len(results), len(notices)
        if results:
            session.execute(delete(Result).where(Result.id.in_(results)))
        if uploads:
            session.execute(delete(Upload).where(Upload.id.in_(uploads)))
        if notices:
            session.execute(delete(Notice).where(Notice.id.in_(notices)))
        session.flush()
        refs = collect_references(session, store)  # what is still referenced once these rows are gone
        unfinished = set(session.scalars(select(Job.id).where(Job.state.in_(_UNFINISHED))))
    return refs, unfinished


def _references_now(database_url: str, store: Store) -> tuple[References, set[int]]:
    """What the database references now, and its unfinished jobs, in a session of its own."""
    from storage.db import session_factory

    with session_factory(database_url)() as session:
        refs = collect_references(session, store)
        unfinished = set(session.scalars(select(Job.id).where(Job.state.in_(_UNFINISHED))))
    return refs, unfinished


def _remove_blobs(store: Store, referenced: set[str], young: float, report: CleanupReport) -> None:
    """Blobs no row names, older than `young` (a timestamp)."""
    for entry in list(store.iter_files("blobs")):
        sha = entry.name.rsplit("/", 1)[-1]
        if not _DIGEST.match(sha) or sha in referenced or entry.mtime > young:
            continue
        report.blobs += 1
        report.bytes_freed += entry.size
        if not report.dry_run:
            store.delete(sha)


def _remove_model_dirs(store: Store, referenced: set[str], young: float, report: CleanupReport) -> None:
    """Model bundle dirs (models/u<user>/<dir>) no row names, none of whose files is younger than `young`."""
    for name, (mtime, size) in _dirs(store.iter_files("models"), 3).items():
        if name in referenced or mtime > young:
            continue
        report.model_dirs += 1
        report.bytes_freed += size
        if not report.dry_run:
            store.remove_dir(name)


def _remove_checkpoints(store: Store, unfinished: set[int], report: CleanupReport) -> None:
    """Checkpoints: kept while their job may still resume, gone once it ended however it ended."""
    for name, (_mtime_s, size) in _dirs(store.iter_files("scratch/jobs"), 3).items():
        if _job_id(name) in unfinished:
            continue
        report.checkpoints += 1
        report.bytes_freed += size
        if not report.dry_run:
            store.remove_dir(name)


def _remove_tmp_files(store: Store, young: float, report: CleanupReport) -> None:
    """Scratch files and dirs of the store's tmp dir last changed before `young`."""
    for path in list(store.tmp.iterdir()):
        if _mtime(path) > young:
            continue
        report.tmp_files += 1
        report.bytes_freed += _size(path)
        if not report.dry_run:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already: never counted


# Usage


@dataclass
class UserUsage:
    user_id: int
    telegram_id: int
    username: str | None
    uploads: int = 0
    upload_bytes: int = 0
    results: int = 0
    result_bytes: int = 0
    models: int = 0
    model_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.upload_bytes + self.result_bytes + self.model_bytes


def usage_by_user(session: Session, store: Store) -> list[UserUsage]:
    """Disk used by each user's uploads, results and models, largest first.

    A blob two users share counts for both (each would keep it alive alone)."""
    sizes: dict[str, int] = {}

    def blob_size(sha: str) -> int:
        if sha not in sizes:
            try:
                found = store.blob_stat(sha)
                sizes[sha] = found.size if found else 0
            except Exception:  # noqa: BLE001 - missing or malformed: 0
                sizes[sha] = 0
        return sizes[sha]

    usage = {uid: UserUsage(uid, tid, name)
             for uid, tid, name in session.execute(select(User.id, User.telegram_id, User.username))}
    seen: dict[int, set[str]] = defaultdict(set)
    for uid, sha in session.execute(select(Upload.user_id, Upload.sha256)):
        usage[uid].uploads += 1
        if sha not in seen[uid]:
            seen[uid].add(sha)
            usage[uid].upload_bytes += blob_size(sha)
    for uid, files in session.execute(select(Result.user_id, Result.files)):
        usage[uid].results += 1
        for sha in set(_digests_in(files)) - seen[uid]:
            seen[uid].add(sha)
            usage[uid].result_bytes += blob_size(sha)
    for uid, path in session.execute(select(TrainedModel.user_id, TrainedModel.path)):
        usage[uid].models += 1
        for candidate in _model_dir_candidates(path, store):
            size = store.dir_size(candidate) if _safe_has_dir(store, candidate) else 0
            if size:
                usage[uid].model_bytes += size
                break
    return sorted(usage.values(), key=lambda u: (-u.total_bytes, u.user_id))
