"""What a job body gets and gives back: its ids, its typed params, storage, the worker's detector
cache, progress and cancel checks, and the typed outcome. The queue (jobqueue.runner) builds the
context from a claim and passes in how progress is written and how a cancel is read, so bodies
never import the queue."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.i18n import N_
from core.settings import Settings
from jobs.detectors import DetectorCache
from jobs.errors import JobCancelled, JobError
from jobs.params import P, UploadParams
from storage.db import session_factory
from storage.files import Store, StoreError
from storage.models import Job, Upload
from storage.notices import NoticePayload
from storage.stores import open_store

__all__ = ["Body", "ClaimInfo", "JobCancelled", "JobContext", "JobError", "Outcome", "ProgressSink",
           "job_uploads", "read_upload", "scratch_dir"]


@dataclass
class Outcome:
    """What a body produced. `record` adds rows in the transaction that marks the job done (it
    may run again when a lost connection made that transaction roll back); `notice` is the notice
    added in that transaction, or makes it from the job row once `record` ran (ids it gave out);
    `discard` removes files when that transaction did not happen."""

    result: dict[str, Any]
    notice: NoticePayload | Callable[[Job], NoticePayload]
    record: Callable[[Session, Job], None] | None = None
    discard: Callable[[], None] | None = None
    committed: Callable[[], None] | None = None  # after that transaction committed (clean-up)


class ClaimInfo(Protocol):
    """The claimed job's row as a body sees it (its params come parsed, as JobContext.params)."""

    @property
    def job_id(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def model_id(self) -> int | None: ...
    @property
    def attempts(self) -> int: ...


# progress(fraction, stage, eta_s, loss) -> False once the job is no longer ours
ProgressSink = Callable[[float, str, "float | None", "float | None"], bool]


@dataclass
class JobContext(Generic[P]):
    """What a running body may use: its ids and params, storage, progress and cancel checks."""

    settings: Settings
    claim: ClaimInfo
    params: P
    write_progress: ProgressSink
    read_stop: Callable[[], bool]
    detectors: DetectorCache = field(default_factory=DetectorCache)  # the runner's: one per process
    min_interval_s: float = 1.0  # database writes/reads for progress and cancel, at most this often
    _last_progress: float = 0.0
    _last_stage: str = ""
    _last_check: float = 0.0
    _stop: bool = False
    lost: bool = False
    _store: Store | None = None

    @property
    def url(self) -> str:
        return self.settings.database_url

    @property
    def job_id(self) -> int:
        return self.claim.job_id

    @property
    def store(self) -> Store:
        if self._store is None:  # one per job: the S3 backend holds a connection pool
            self._store = open_store(self.settings)
        return self._store

    def session(self) -> Session:
        return session_factory(self.url)()

    def progress(self, fraction: float, stage: str, eta_s: float | None = None,
                 loss: float | None = None) -> None:
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_progress < self.min_interval_s:
            return
        self._last_progress, self._last_stage = now, stage
        if not self.write_progress(fraction, stage, eta_s, loss):
            self.lost = True

    def cancelled(self) -> bool:
        """True once a cancel was requested (read from the database at most once a second)."""
        if self._stop or self.lost:
            return True
        now = time.monotonic()
        if now - self._last_check >= self.min_interval_s:
            self._last_check = now
            self._stop = self.read_stop()
        return self._stop

    def recheck_now(self) -> bool:
        """cancelled(), reading the database now whatever the interval."""
        self._last_check = 0.0
        return self.cancelled()

    def check(self) -> None:
        if self.cancelled():
            raise JobCancelled()


Body = Callable[[JobContext[P]], Outcome]

# Shared helpers for the bodies

U = TypeVar("U", bound=UploadParams)


def job_uploads(ctx: JobContext[U], session: Session) -> list[Upload]:
    ids = list(ctx.params.upload_ids)
    if not ids:
        raise JobError(N_("This job has no files to work on; please send them again."))
    rows = {u.id: u for u in session.scalars(select(Upload).where(Upload.id.in_(ids),
                                                                  Upload.user_id == ctx.claim.user_id))}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise JobError(N_("Some of the files for this job are gone (deleted or expired); "
                          "please send them again."))
    return [rows[i] for i in ids]


def read_upload(ctx: JobContext[Any], upload: Upload) -> bytes:
    try:
        return ctx.store.read_bytes(upload.sha256)
    except StoreError:
        raise JobError(N_("The file {name} is no longer stored; please send it again.",
                          name=upload.original_name)) from None


def scratch_dir(ctx: JobContext[Any], prefix: str) -> Path:
    return Path(tempfile.mkdtemp(dir=ctx.store.tmp, prefix=f"{prefix}-{ctx.job_id}-"))
