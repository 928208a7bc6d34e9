"""Job records: submit with per-user limits, fair claiming, progress, cancel, and the sweeper.

The database is the queue's source of truth. A broker message is only a wake-up token for a
worker of that queue: the worker then claims the next job in fair (round-robin) order inside a
serialized transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock),
so a cancelled queued job simply is never claimed, a lost or duplicated token is harmless, and
every state change of a running job is a compare-and-set on its claim token (`Job.task_id`).
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast, overload

from sqlalchemy import ColumnElement, CursorResult, func, select, text, update
from sqlalchemy.orm import Session

from core.errors import UserError
from core.i18n import N_, NP_, Text, dump_text
from core.settings import Settings
from jobqueue.celery_app import wake
from jobqueue.queues import QUEUES, queue_for
from jobs.params import JobParams
from storage.db import Db, session_factory, session_scope
from storage.models import Job, JobKind, JobState, User, utcnow
from storage.notices import JobCancelledNotice, JobFailedNotice, NoticePayload, add_notice

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5E6B0707  # PostgreSQL advisory lock serializing claims, finishes and sweeps
# A holder of that lock that stops answering inside its transaction (a frozen process or VM: its TCP
# connection stays up) would stall every claim of every host; PostgreSQL ends its session after this
# long idle in the transaction, which releases the lock. The locked sections are a few short queries.
LOCK_IDLE_TIMEOUT_S = 30
ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


class QueueLimitError(UserError):
    """A job was refused (too many jobs, quota used up); `text` is the user message, `code` says which."""

    def __init__(self, text: Text | str, code: str) -> None:
        super().__init__(text)
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.__class__, (self.text, self.code)


def _in_queue(queue: str) -> ColumnElement[bool]:
    return Job.kind == JobKind.PREDICT.value if queue == "predict" else Job.kind != JobKind.PREDICT.value


def _rowcount(outcome: Any) -> int:
    """Rows an UPDATE changed (session.execute types its result as a plain Result)."""
    return int(cast(CursorResult[Any], outcome).rowcount)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones; compare them as aware."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


# Limits


def is_admin(user: User, settings: Settings) -> bool:
    ids = settings.admin_ids
    return bool(user.is_admin) or str(user.telegram_id) in ids or (user.username or "").lower() in ids


def gpu_seconds_today(session: Session, user_id: int, now: datetime | None = None) -> float:
    """Worker time used by this user's jobs started in the last 24 hours (running ones included)."""
    since = (now or utcnow()) - timedelta(days=1)
    used = session.scalar(
        select(func.coalesce(func.sum(Job.gpu_seconds), 0.0)).where(Job.user_id == user_id,
                                                                     Job.started_at >= since)
    )
    return float(used or 0.0)


def check_limits(session: Session, user: User, settings: Settings) -> None:
    """Raise QueueLimitError when this user may not queue another job now."""
    if is_admin(user, settings):
        return
    cap = user.max_jobs or settings.max_jobs_per_user
    active = session.scalar(
        select(func.count()).select_from(Job).where(Job.user_id == user.id, Job.state.in_(ACTIVE))
    ) or 0
    if active >= cap:
        raise QueueLimitError(NP_(
            "You already have {n} job waiting or running (the limit is {cap}). Wait for it to finish or "
            "cancel it, then send it again.",
            "You already have {n} jobs waiting or running (the limit is {cap}). Wait for one to finish or "
            "cancel one, then send it again.", n=active, cap=cap), "too_many_jobs")
    reason = quota_reason(session, user, settings)
    if reason:
        raise QueueLimitError(reason, "quota")


def quota_reason(session: Session, user: User, settings: Settings) -> Text | None:
    """The user message when this user's daily compute time is used up (admins: never)."""
    if is_admin(user, settings):
        return None
    quota = user.daily_gpu_seconds or settings.daily_gpu_seconds
    used = gpu_seconds_today(session, user.id)
    if used < quota:
        return None
    return N_("You have used your compute time for today ({used:.1f} h of {quota:.1f} h). It frees up "
              "over the next 24 hours; please try again later.", used=used / 3600, quota=quota / 3600)


# Submitting, listing, cancelling


def submit_job(session: Session, user: User, params: JobParams, *, settings: Settings,
               dataset_id: int | None = None, model_id: int | None = None, chat_id: int | None = None,
               enqueue: bool = True) -> Job:
    """Check the user's limits, store a queued job of the params' kind, COMMIT, then wake a worker of
    its queue. The only way to make a job: its params are a kind's typed class (jobs/params.py).

    A broker that is down does not lose the job: it stays queued and the workers' sweeper
    wakes a worker for it later."""
    if not isinstance(params, JobParams) or not hasattr(type(params), "kind"):
        raise TypeError(f"a job's params are a JobParams subclass of one kind, not {type(params).__name__}")
    stored = params.to_json()  # RecordError for a field of the wrong type: what is written reads back
    check_limits(session, user, settings)
    job = Job(user_id=user.id, kind=str(params.kind), params=stored, dataset_id=dataset_id, model_id=model_id,
              chat_id=chat_id, state=JobState.QUEUED.value, created_at=utcnow())
    session.add(job)
    session.commit()
    if enqueue:
        try:
            wake(settings, queue_for(job.kind))
        except Exception:  # noqa: BLE001 - the sweeper wakes a worker for it later
            log.warning("could not publish a wake-up for job %s; the sweeper will", job.id, exc_info=True)
    return job


def user_jobs(session: Session, user: User, active_only: bool = False) -> list[Job]:
    """This user's jobs, newest first."""
    query = select(Job).where(Job.user_id == user.id)
    if active_only:
        query = query.where(Job.state.in_(ACTIVE))
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc())))


def request_cancel(session: Session, job: Job) -> bool:
    """Cancel a job and commit. A queued job is cancelled at once (it will never start); a running
    one is asked to stop at its next check (the worker then marks it cancelled, keeping nothing).
    False when the job had already finished."""
    now = utcnow()
    done = _rowcount(session.execute(
        update(Job).where(Job.id == job.id, Job.state == JobState.QUEUED.value)
        .values(state=JobState.CANCELLED.value, cancel_requested=True, finished_at=now, stage="cancelled")
    ))
    if not done:
        done = _rowcount(session.execute(
            update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING.value)
            .values(cancel_requested=True)
        ))
    session.commit()
    if job in session:
        session.refresh(job)
    return bool(done)


# Fair order


def _user_keys(session: Session, queue: str, user_ids: set[int]) -> dict[int, datetime]:
    """When each user last had a job of this queue started: who waited longest goes first."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(Job.user_id, func.max(Job.started_at)).where(_in_queue(queue), Job.user_id.in_(user_ids))
        .group_by(Job.user_id)
    )
    return {user_id: aware(last) for user_id, last in rows if last is not None}


def fair_order(session: Session, queue: str) -> list[Job]:
    """The queued jobs of `queue` in the order workers will take them: round-robin between users
    (the user whose last job started longest ago first), each user's own jobs oldest first."""
    queued = list(session.scalars(
        select(Job).where(Job.state == JobState.QUEUED.value, _in_queue(queue))
        .order_by(Job.created_at, Job.id)
    ))
    per_user: dict[int, deque[Job]] = {}
    for job in queued:
        per_user.setdefault(job.user_id, deque()).append(job)
    last = _user_keys(session, queue, set(per_user))
    never = datetime.min.replace(tzinfo=UTC)
    ring = deque(sorted(per_user, key=lambda uid: (last.get(uid) or never, aware(per_user[uid][0].created_at),
                                                   per_user[uid][0].id)))
    order: list[Job] = []
    while ring:
        uid = ring.popleft()
        order.append(per_user[uid].popleft())
        if per_user[uid]:
            ring.append(uid)
    return order


def queue_position(session: Session, job: Job) -> int | None:
    """1 = next to start in its queue; None when the job is not waiting."""
    if job.state != JobState.QUEUED:
        return None
    for index, waiting in enumerate(fair_order(session, queue_for(job.kind)), start=1):
        if waiting.id == job.id:
            return index
    return None


# Serialized transactions (workers side)


@contextmanager
def locked_session(db: Db) -> Iterator[Session]:
    """A session whose transaction is serialized with every other claim/finish/sweep; commits on
    success. SQLite: BEGIN IMMEDIATE (takes the write lock first, no stale snapshot);
    PostgreSQL: pg_advisory_xact_lock (released at commit; or when the holder idles in it for
    LOCK_IDLE_TIMEOUT_S, which ends its session)."""
    with session_scope(db) as session:
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            idle = f"{int(LOCK_IDLE_TIMEOUT_S * 1000)}ms"
            connection.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = '{idle}'")
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        yield session


@dataclass
class Claim:
    """A job this worker now runs; `token` proves ownership in every later update. `params` is the
    row as stored: the runner parses it with the kind's class before the body starts."""

    job_id: int
    token: str
    user_id: int
    kind: str
    params: dict[str, Any]
    attempts: int
    dataset_id: int | None = None
    model_id: int | None = None
    started: datetime = field(default_factory=utcnow)
    base_seconds: float = 0.0  # worker time of earlier attempts

    def seconds(self, now: datetime) -> float:
        return self.base_seconds + (now - self.started).total_seconds()


def claim_next(db: Db, queue: str, settings: Settings, worker: str | None = None) -> Claim | None:
    """Take the next job of `queue` in fair order whose user is under the running cap."""
    with locked_session(db) as session:
        order = fair_order(session, queue)
        if not order:
            return None
        running = dict(session.execute(
            select(Job.user_id, func.count()).where(Job.state == JobState.RUNNING.value, _in_queue(queue))
            .group_by(Job.user_id)
        ).all())
        for job in order:
            if running.get(job.user_id, 0) >= settings.max_running_per_user:
                continue
            user = session.get(User, job.user_id)
            over = quota_reason(session, user, settings) if user is not None else None
            if over:  # queued before the quota ran out: it does not start
                job.state = JobState.FAILED.value
                job.error = str(over)
                job.finished_at = utcnow()
                add_notice(session, job, JobFailedNotice(job_id=job.id, kind=job.kind,
                                                         reason=dump_text(over)))
                continue
            token = uuid.uuid4().hex
            now = utcnow()
            claim = Claim(job.id, token, job.user_id, job.kind, dict(job.params or {}),
                          (job.attempts or 0) + 1, job.dataset_id, job.model_id, now,
                          float(job.gpu_seconds or 0.0))
            session.execute(
                update(Job).where(Job.id == job.id, Job.state == JobState.QUEUED.value).values(
                    state=JobState.RUNNING.value, task_id=token, worker=(worker or worker_name())[:255],
                    attempts=Job.attempts + 1, started_at=now, heartbeat_at=now, progress=0.0,
                    stage="starting", eta_s=None, error=None)
            )
            return claim
    return None


def _owned(job_id: int, token: str) -> tuple[ColumnElement[bool], ...]:
    return (Job.id == job_id, Job.task_id == token, Job.state == JobState.RUNNING.value)


def heartbeat(db: Db, claim: Claim) -> bool:
    """Record that the job is alive; False when this worker no longer owns it."""
    now = utcnow()
    with session_scope(db) as session:
        done = _rowcount(session.execute(update(Job).where(*_owned(claim.job_id, claim.token)).values(
            heartbeat_at=now, gpu_seconds=claim.seconds(now))))
    return bool(done)


def set_progress(db: Db, claim: Claim, progress: float, stage: str, eta_s: float | None,
                 loss: float | None = None) -> bool:
    now = utcnow()
    values: dict[str, Any] = dict(progress=max(0.0, min(1.0, float(progress))), stage=stage[:64], eta_s=eta_s,
                                  heartbeat_at=now, gpu_seconds=claim.seconds(now))
    if loss is not None:
        values["result"] = {"loss": float(loss)}  # shown in the bot's progress message until the job ends
    with session_scope(db) as session:
        owned = update(Job).where(*_owned(claim.job_id, claim.token))
        done = _rowcount(session.execute(owned.values(**values)))
    return bool(done)


def should_stop(db: Db, claim: Claim) -> bool:
    """True when a cancel was requested or the job is no longer ours (swept, cancelled)."""
    with session_factory(db)() as session:  # read only: nothing to commit
        row = session.execute(select(Job.cancel_requested, Job.task_id, Job.state)
                              .where(Job.id == claim.job_id)).first()
    if row is None:
        return True
    cancel, token, state = row
    return bool(cancel) or token != claim.token or state != JobState.RUNNING.value


def finish_job(db: Db, claim: Claim, state: JobState, *, error: str | None = None,
               result: dict[str, Any] | None = None,
               notice: NoticePayload | Callable[[Job], NoticePayload] | None = None,
               hook: Callable[[Session, Job], None] | None = None) -> bool:
    """Record the end of a claimed job, its outputs (`hook` adds rows) and its notice in ONE
    transaction; nothing is written when the job is no longer ours. Returns True when recorded.
    `notice` may be made from the job row after `hook` ran (with the ids the hook gave out)."""
    with locked_session(db) as session:
        job = session.scalar(select(Job).where(*_owned(claim.job_id, claim.token)))
        if job is None:
            return False
        if result is not None:
            job.result = result
        if hook is not None:
            hook(session, job)  # may add to job.result (ids of what it stored)
        now = utcnow()
        job.state = state.value
        job.finished_at = now
        job.heartbeat_at = now
        job.gpu_seconds = claim.seconds(now)
        job.error = error
        job.eta_s = None
        job.stage = state.value
        if state == JobState.SUCCEEDED:
            job.progress = 1.0
        if notice is not None:
            add_notice(session, job, notice if isinstance(notice, NoticePayload) else notice(job))
        return True


# Sweeper


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)  # queue -> queued jobs


def dead_worker_reason(attempts: int) -> Text:
    return NP_("The worker running this job stopped {n} time (the machine restarted or ran out of memory). "
               "Try a smaller preset, fewer or smaller images, or ask the administrator.",
               "The worker running this job stopped {n} times (the machine restarted or ran out of "
               "memory). Try a smaller preset, fewer or smaller images, or ask the administrator.",
               n=attempts)


def sweep(db: Db, settings: Settings, now: datetime | None = None) -> SweepReport:
    """Requeue running jobs whose heartbeat is older than settings.stale_after_s (their worker
    died); after settings.job_max_attempts fail them with a clear reason and a notice."""
    now = now or utcnow()
    report = SweepReport()
    cutoff = now - timedelta(seconds=settings.stale_after_s)
    with locked_session(db) as session:
        stale = list(session.scalars(select(Job).where(Job.state == JobState.RUNNING.value,
                                                       Job.heartbeat_at < cutoff)))
        for job in stale:  # gpu_seconds already holds the time up to the last heartbeat
            log.warning("job %s: worker %s stopped sending heartbeats (attempt %s)", job.id, job.worker,
                        job.attempts)
            if job.attempts >= settings.job_max_attempts:
                job.state = JobState.FAILED.value
                reason = dead_worker_reason(job.attempts)
                job.error = str(reason)
                job.finished_at = now
                add_notice(session, job, JobFailedNotice(job_id=job.id, kind=job.kind,
                                                         reason=dump_text(reason)))
                report.failed.append(job.id)
            elif job.cancel_requested:
                job.state = JobState.CANCELLED.value
                job.finished_at = now
                add_notice(session, job, JobCancelledNotice(job_id=job.id, kind=job.kind))
            else:
                job.state = JobState.QUEUED.value
                job.task_id = None
                job.worker = None
                job.progress = 0.0
                job.stage = "requeued"
                job.eta_s = None
                report.requeued.append(job.id)
        for queue in QUEUES:
            report.waiting[queue] = session.scalar(
                select(func.count()).select_from(Job)
                .where(Job.state == JobState.QUEUED.value, _in_queue(queue))
            ) or 0
    return report


def refresh_queue_lengths(session: Session) -> dict[str, int]:
    """Set QUEUE_LENGTH from the jobs table (the broker's own count differs per transport)."""
    from core import metrics  # late: the worker sets PROMETHEUS_MULTIPROC_DIR before the first import

    counts = {kind.value: 0 for kind in JobKind}
    rows = session.execute(
        select(Job.kind, func.count()).where(Job.state == JobState.QUEUED).group_by(Job.kind)
    )
    for kind, count in rows:
        counts[str(kind)] = int(count)
    for kind, count in counts.items():
        metrics.QUEUE_LENGTH.labels(kind=kind).set(count)
    return counts
