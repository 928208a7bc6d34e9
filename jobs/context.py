"""What a job body gets and gives back: its ids and params, storage, progress and cancel checks,
and the typed outcome. The queue (jobqueue.runner) builds the context from a claim and passes in
how progress is written and how a cancel is read, so bodies never import the queue."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import session_factory
from storage.files import Store, StoreError
from storage.models import Job, Upload
from storage.stores import open_store


class JobCancelled(Exception):
    """The user cancelled the job (or it is no longer this worker's): stop, keep nothing."""


class JobError(Exception):
    """A failure the user can act on; str() is the message shown to them."""


@dataclass
class Outcome:
    """What a body produced. `record` adds rows in the transaction that marks the job done (it
    may run again when a lost connection made that transaction roll back); `discard` removes
    files when that transaction did not happen."""

    result: dict[str, Any]
    notice_kind: str
    notice_payload: dict[str, Any]
    record: Callable[[Session, Job], None] | None = None
    discard: Callable[[], None] | None = None
    committed: Callable[[], None] | None = None  # after that transaction committed (clean-up)


class ClaimInfo(Protocol):
    job_id: int
    user_id: int
    kind: str
    params: dict[str, Any]
    model_id: int | None
    attempts: int


# progress(fraction, stage, eta_s, loss) -> False once the job is no longer ours
ProgressSink = Callable[[float, str, "float | None", "float | None"], bool]


@dataclass
class JobContext:
    """What a running body may use: its ids and params, storage, progress and cancel checks."""

    settings: Any
    claim: ClaimInfo
    write_progress: ProgressSink
    read_stop: Callable[[], bool]
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
    def store(self) -> Store:
        if "store" not in self.extra:  # one per job: the S3 backend holds a connection pool
            self.extra["store"] = open_store(self.settings)
        return self.extra["store"]

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


Body = Callable[[JobContext], Outcome]

# Shared helpers for the bodies


def job_uploads(ctx: JobContext, session: Session) -> list[Upload]:
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


def read_upload(ctx: JobContext, upload: Upload) -> bytes:
    try:
        return ctx.store.read_bytes(upload.sha256)
    except StoreError:
        raise JobError(f"The file {upload.original_name} is no longer stored; "
                       "please send it again.") from None


def scratch_dir(ctx: JobContext, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(dir=ctx.store.tmp, prefix=f"{prefix}-{ctx.job_id}-"))


