"""The bot's only doors into other areas (annotations, queue, outbox), named as in CONTRACTS.md.

Imports happen on first use so the bot starts even while an area is being built; blocking calls are
made from threads by the callers (asyncio.to_thread), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Job, Notice, User


class QueueUnavailable(Exception):
    """The queue module is missing or the broker refused the job."""


# annotations


def read_labelme(data: bytes, name: str, files: Mapping[str, bytes] | None, max_pixels: int):
    from annotations.labelme import read_labelme as _read

    return _read(data, name=name, files=dict(files or {}), max_pixels=max_pixels)


def summarize(ann) -> dict[str, Any]:
    from annotations.crops import summarize_annotation

    return summarize_annotation(ann)


def format_summary(summary: dict[str, Any], lang: str) -> str:
    from annotations.crops import format_summary as _format

    return _format(summary, lang=lang)


def annotation_error_types() -> tuple[type[BaseException], ...]:
    from annotations.model import AnnotationError

    return (AnnotationError,)


# queue


def submit_job(
    session: Session,
    user: User,
    kind: str,
    params: dict[str, Any],
    *,
    settings,
    dataset_id: int | None = None,
    model_id: int | None = None,
    chat_id: int | None = None,
) -> Job:
    try:
        from jobqueue.store import submit_job as _submit
    except ImportError as error:
        raise QueueUnavailable(str(error)) from None
    return _submit(
        session,
        user,
        kind,
        params,
        settings=settings,
        dataset_id=dataset_id,
        model_id=model_id,
        chat_id=chat_id,
    )


def queue_limit_errors() -> tuple[type[BaseException], ...]:
    try:
        from jobqueue.store import QueueLimitError
    except ImportError:
        return ()
    return (QueueLimitError,)


def queue_position(session: Session, job: Job) -> int | None:
    try:
        from jobqueue.store import queue_position as _position
    except ImportError:
        return None
    return _position(session, job)


def request_cancel(session: Session, job: Job) -> bool:
    try:
        from jobqueue.store import request_cancel as _cancel
    except ImportError:
        if job.state in ("queued", "running"):
            job.cancel_requested = True
            return True
        return False
    return _cancel(session, job)


# outbox


def pending_notices(session: Session, limit: int = 20) -> list[Notice]:
    try:
        from storage.notices import pending_notices as _pending
    except ImportError:
        stmt = select(Notice).where(Notice.sent_at.is_(None)).order_by(Notice.id).limit(limit)
        return list(session.scalars(stmt))
    return list(_pending(session, limit))


def mark_sent(session: Session, notice_id: int) -> None:
    try:
        from storage.notices import mark_sent as _mark
    except ImportError:
        notice = session.get(Notice, notice_id)
        if notice is not None and notice.sent_at is None:
            notice.sent_at = datetime.now(UTC)
        return
    _mark(session, notice_id)
