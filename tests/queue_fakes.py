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
