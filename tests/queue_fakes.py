"""Tiny job bodies for the queue tests and benchmark, loaded by real workers through
`python -m tests.fake_worker` (tests/fake_worker.py): real processes and broker, fake work.

Each fake kind has its own small params class, declared and registered exactly like the product's
(jobs/params.py): the kind is a plain string here, a JobKind member there; its notices likewise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from jobs.context import JobContext, JobError, Outcome
from jobs.params import JobParams
from jobs.registry import register
from storage.models import Job, Result
from storage.notices import NoticePayload


@dataclass(frozen=True, kw_only=True)
class FakeDone(NoticePayload):
    job_id: int


@dataclass(frozen=True, kw_only=True)
class SleepDone(FakeDone, kind="sleep_done"):
    pass


@dataclass(frozen=True, kw_only=True)
class NoopDone(FakeDone, kind="noop_done"):
    pass


@dataclass(frozen=True, kw_only=True)
class WriteDone(FakeDone, kind="write_done"):
    pass


@dataclass(frozen=True, kw_only=True)
class SleepParams(JobParams, kind="sleep"):
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class NoopParams(JobParams, kind="noop"):
    pass


@dataclass(frozen=True, kw_only=True)
class FailParams(JobParams, kind="fail"):
    message: str = "bad input"


@dataclass(frozen=True, kw_only=True)
class OomParams(JobParams, kind="oom"):
    pass


@dataclass(frozen=True, kw_only=True)
class CrashParams(JobParams, kind="crash"):
    pass


@dataclass(frozen=True, kw_only=True)
class WriteParams(JobParams, kind="write"):
    blob_bytes: int = 0  # a blob of this size into the store
    bundle_bytes: int = 0  # a bundle dir of this size
    inject_enospc: bool = False  # the store's writes fail as on a full disk


def _result_row(session: Session, job: Job) -> None:
    session.add(Result(job_id=job.id, user_id=job.user_id, image_name=f"job{job.id}", summary={"fake": 1}))


@register(SleepParams)
def sleep_job(ctx: JobContext[SleepParams]) -> Outcome:
    """Sleep params.seconds in small steps, reporting progress and honouring cancel."""
    seconds = ctx.params.seconds
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        ctx.progress(elapsed / seconds, "sleeping", seconds - elapsed)
        ctx.check()
        time.sleep(min(0.05, seconds - elapsed))
    return Outcome(result={"slept": seconds, "t_end": time.time()}, notice=SleepDone(job_id=ctx.job_id),
                   record=_result_row)


@register(NoopParams)
def noop_job(ctx: JobContext[NoopParams]) -> Outcome:
    return Outcome(result={"t_end": time.time()}, notice=NoopDone(job_id=ctx.job_id))


@register(FailParams)
def fail_job(ctx: JobContext[FailParams]) -> Outcome:
    raise JobError(ctx.params.message)


@register(OomParams)
def oom_job(ctx: JobContext[OomParams]) -> Outcome:
    hog: list[Any] = [bytearray(1024) for _ in range(100)]
    raise MemoryError(f"could not allocate ({len(hog)} blocks held)")


@register(CrashParams)
def crash_job(ctx: JobContext[CrashParams]) -> Outcome:
    raise RuntimeError("a bug")


@register(WriteParams)
def write_job(ctx: JobContext[WriteParams]) -> Outcome:
    """Store a blob and a bundle dir of the params' sizes (the disk-full tests)."""
    import contextlib
    import errno
    from unittest import mock

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    with contextlib.ExitStack() as stack:
        if ctx.params.inject_enospc:
            stack.enter_context(mock.patch("storage.files.os.fsync", full))
            stack.enter_context(mock.patch("storage.files.shutil.copytree", full))
        return _write(ctx)


def _write(ctx: JobContext[WriteParams]) -> Outcome:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    store = ctx.store
    size = ctx.params.blob_bytes
    sha = store.put_bytes(os.urandom(size)) if size else None
    relative = f"models/u{ctx.claim.user_id}/write{ctx.job_id}"
    if ctx.params.bundle_bytes:
        source = Path(tempfile.mkdtemp(prefix="fake-bundle-"))  # off the store's disk
        try:
            (source / "weights.pt").write_bytes(os.urandom(ctx.params.bundle_bytes))
            store.install_dir(source, relative)
        finally:
            shutil.rmtree(source, ignore_errors=True)

    def record(session: Session, job: Job) -> None:
        session.add(Result(job_id=job.id, user_id=job.user_id, image_name=relative, files={"blob": sha}))

    return Outcome(result={"sha": sha}, notice=WriteDone(job_id=ctx.job_id), record=record)
