"""Tiny job bodies for the queue tests and benchmark, loaded by real workers through
`python -m tests.fake_worker` (tests/fake_worker.py): real processes and broker, fake work."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from jobs import register
from jobs.context import JobContext, JobError, Outcome
from storage.models import Job, Result


def _result_row(session: Session, job: Job) -> None:
    session.add(Result(job_id=job.id, user_id=job.user_id, image_name=f"job{job.id}", summary={"fake": 1}))


@register("sleep")
def sleep_job(ctx: JobContext) -> Outcome:
    """Sleep params['seconds'] in small steps, reporting progress and honouring cancel."""
    seconds = float(ctx.params.get("seconds", 0.0))
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        ctx.progress(elapsed / seconds, "sleeping", seconds - elapsed)
        ctx.check()
        time.sleep(min(0.05, seconds - elapsed))
    return Outcome(result={"slept": seconds, "t_end": time.time()}, notice_kind="sleep_done",
                   notice_payload={"job_id": ctx.job_id}, record=_result_row)


@register("noop")
def noop_job(ctx: JobContext) -> Outcome:
    return Outcome(result={"t_end": time.time()}, notice_kind="noop_done",
                   notice_payload={"job_id": ctx.job_id})


@register("fail")
def fail_job(ctx: JobContext) -> Outcome:
    raise JobError(str(ctx.params.get("message", "bad input")))


@register("oom")
def oom_job(ctx: JobContext) -> Outcome:
    hog: list[Any] = [bytearray(1024) for _ in range(100)]
    raise MemoryError(f"could not allocate ({len(hog)} blocks held)")


@register("crash")
def crash_job(ctx: JobContext) -> Outcome:
    raise RuntimeError("a bug")


@register("write")
def write_job(ctx: JobContext) -> Outcome:
    """Store a blob of params['blob_bytes'] and a bundle dir of params['bundle_bytes'] (the
    disk-full tests); params['inject_enospc']: the store's writes fail as on a full disk."""
    import contextlib
    import errno
    from unittest import mock

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    with contextlib.ExitStack() as stack:
        if ctx.params.get("inject_enospc"):
            stack.enter_context(mock.patch("storage.files.os.fsync", full))
            stack.enter_context(mock.patch("storage.files.shutil.copytree", full))
        return _write(ctx)


def _write(ctx: JobContext) -> Outcome:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    store = ctx.store
    size = int(ctx.params.get("blob_bytes", 0))
    sha = store.put_bytes(os.urandom(size)) if size else None
    relative = f"models/u{ctx.claim.user_id}/write{ctx.job_id}"
    if ctx.params.get("bundle_bytes"):
        source = Path(tempfile.mkdtemp(prefix="fake-bundle-"))  # off the store's disk
        try:
            (source / "weights.pt").write_bytes(os.urandom(int(ctx.params["bundle_bytes"])))
            store.install_dir(source, relative)
        finally:
            shutil.rmtree(source, ignore_errors=True)

    def record(session: Session, job: Job) -> None:
        session.add(Result(job_id=job.id, user_id=job.user_id, image_name=relative, files={"blob": sha}))

    return Outcome(result={"sha": sha}, notice_kind="write_done", notice_payload={"job_id": ctx.job_id},
                   record=record)
