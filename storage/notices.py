"""Outbox of messages for the bot: workers add notices in the same transaction as the results,
the bot delivers pending ones and marks them sent (a bot restart re-sends only the unsent), part
by part for a notice of several messages (parts_sent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Job, Notice, utcnow

# Kinds written by the queue; the bot renders each one.
TRAIN_DONE = "train_done"
PREDICT_DONE = "predict_done"
JOB_FAILED = "job_failed"
JOB_CANCELLED = "job_cancelled"
# Written by the Mini App's server (web/), which never talks to Telegram itself.
CORRECTION_SAVED = "correction_saved"


def add_notice(session: Session, job: Job, kind: str, payload: dict[str, Any]) -> Notice:
    """Add a pending notice for `job` (not committed: it joins the caller's transaction).

    Idempotent on (job_id, kind): a second call returns the notice already there."""
    existing = session.scalar(select(Notice).where(Notice.job_id == job.id, Notice.kind == kind))
    if existing is not None:
        return existing
    notice = Notice(user_id=job.user_id, job_id=job.id, kind=kind, payload=dict(payload))
    try:
        with session.begin_nested():  # a concurrent writer may have added it meanwhile
            session.add(notice)
    except IntegrityError:
        found = session.scalar(select(Notice).where(Notice.job_id == job.id, Notice.kind == kind))
        if found is None:
            raise
        return found
    return notice


def add_user_notice(session: Session, user_id: int, kind: str, payload: dict[str, Any]) -> Notice:
    """A pending notice that belongs to no job (not committed: it joins the caller's transaction)."""
    notice = Notice(user_id=user_id, job_id=None, kind=kind, payload=dict(payload))
    session.add(notice)
    session.flush()
    return notice


def pending_notices(session: Session, limit: int = 50) -> list[Notice]:
    """Unsent notices, oldest first."""
    query = select(Notice).where(Notice.sent_at.is_(None)).order_by(Notice.id).limit(limit)
    return list(session.scalars(query))


def mark_sent(session: Session, notice_id: int) -> bool:
    """Mark a notice delivered and commit; False when it was already marked (or is gone)."""
    outcome = session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.sent_at.is_(None)).values(sent_at=utcnow())
    )
    session.commit()
    return bool(outcome.rowcount)


def mark_part_sent(session: Session, notice_id: int, parts: int) -> None:
    """Record that the notice's first `parts` messages are delivered, and commit: a restart resumes
    after them instead of sending them again."""
    session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.parts_sent < parts).values(parts_sent=parts)
    )
    session.commit()
