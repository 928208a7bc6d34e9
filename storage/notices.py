"""Outbox of messages for the bot: workers add notices in the same transaction as the results,
the bot delivers pending ones and marks them sent (a bot restart re-sends only the unsent), part
by part for a notice of several messages (parts_sent).

A notice's payload is a typed record (a NoticePayload subclass); its class names the kind, so a
notice cannot be written with a kind and a payload that do not belong together."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Job, Notice, utcnow
from storage.records import JsonRecord

KIND_MAX = 32  # Notice.kind is a String(32)


class NoticeKind(enum.StrEnum):
    """The product's notices; the bot renders each one (bot/delivery.py)."""

    TRAIN_DONE = "train_done"
    PREDICT_DONE = "predict_done"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    # written by the Mini App's server (web/), which never talks to Telegram itself
    CORRECTION_SAVED = "correction_saved"
    LABELS_SAVED = "labels_saved"


@dataclass(frozen=True, kw_only=True)
class NoticePayload(JsonRecord):
    """A notice's payload; a subclass names its kind: `class TrainDoneNotice(NoticePayload, kind=...)`.
    The product's kinds are NoticeKind members; test fakes pass their own strings the same way."""

    notice_kind: ClassVar[str]

    def __init_subclass__(cls, kind: str | None = None, **rest: Any) -> None:
        super().__init_subclass__(**rest)
        if kind is not None:
            if not kind or len(kind) > KIND_MAX:
                raise ValueError(f"notice kind {kind!r}: 1 to {KIND_MAX} characters")
            cls.notice_kind = kind


@dataclass(frozen=True, kw_only=True)
class TrainDoneNotice(NoticePayload, kind=NoticeKind.TRAIN_DONE):
    job_id: int
    model_id: int
    version: int
    classes: list[str]
    metrics: dict[str, Any]
    iterations: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class PredictDoneNotice(NoticePayload, kind=NoticeKind.PREDICT_DONE):
    job_id: int
    model_id: int
    n_images: int
    n_objects: int
    result_ids: list[int]
    set_files: dict[str, str] = field(default_factory=dict)  # the set's COCO JSON and workbook: role -> sha


@dataclass(frozen=True, kw_only=True)
class JobFailedNotice(NoticePayload, kind=NoticeKind.JOB_FAILED):
    job_id: int
    kind: str  # the job's kind
    # written for the user: a Text as core.i18n.dump_text keeps it (rows of older workers: English)
    reason: str | dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class JobCancelledNotice(NoticePayload, kind=NoticeKind.JOB_CANCELLED):
    job_id: int
    kind: str  # the job's kind


@dataclass(frozen=True, kw_only=True)
class CorrectionSavedNotice(NoticePayload, kind=NoticeKind.CORRECTION_SAVED):
    upload_id: int  # the correction (a LabelMe upload): the chat's button trains with it
    result_id: int
    image_name: str
    n_objects: int
    removed: int
    added: int
    relabelled: int


@dataclass(frozen=True, kw_only=True)
class LabelsSavedNotice(NoticePayload, kind=NoticeKind.LABELS_SAVED):
    upload_id: int  # the label set (a LabelMe upload, in the pending training set)
    image_upload_id: int  # the image it labels
    name: str
    summary: dict[str, Any]  # annotations.crops.summarize_annotation, JSON-safe
    pending_count: int


def add_notice(session: Session, job: Job, payload: NoticePayload) -> Notice:
    """Add a pending notice for `job` (not committed: it joins the caller's transaction).

    Idempotent on (job_id, kind): a second call returns the notice already there."""
    kind = str(payload.notice_kind)
    existing = session.scalar(select(Notice).where(Notice.job_id == job.id, Notice.kind == kind))
    if existing is not None:
        return existing
    notice = Notice(user_id=job.user_id, job_id=job.id, kind=kind, payload=payload.to_json())
    try:
        with session.begin_nested():  # a concurrent writer may have added it meanwhile
            session.add(notice)
    except IntegrityError:
        found = session.scalar(select(Notice).where(Notice.job_id == job.id, Notice.kind == kind))
        if found is None:
            raise
        return found
    return notice


def add_user_notice(session: Session, user_id: int, payload: NoticePayload) -> Notice:
    """A pending notice that belongs to no job (not committed: it joins the caller's transaction)."""
    notice = Notice(user_id=user_id, job_id=None, kind=str(payload.notice_kind), payload=payload.to_json())
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
    return bool(cast(CursorResult[Any], outcome).rowcount)


def mark_part_sent(session: Session, notice_id: int, parts: int) -> None:
    """Record that the notice's first `parts` messages are delivered, and commit: a restart resumes
    after them instead of sending them again."""
    session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.parts_sent < parts).values(parts_sent=parts)
    )
    session.commit()
