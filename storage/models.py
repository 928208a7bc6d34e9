"""SQLAlchemy 2 models: who the users are, what they sent, what was trained, what ran.

Schema changes go with an Alembic migration in migrations/versions (a test compares the two).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class JobKind(enum.StrEnum):
    TRAIN = "train"
    PREDICT = "predict"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class ModelStatus(enum.StrEnum):
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="en")
    nm_per_px: Mapped[float | None] = mapped_column(Float)
    score_threshold: Mapped[float | None] = mapped_column(Float)  # NULL: segbot's default (segmodel.options)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Per-user overrides of the global limits; NULL means "the settings' value".
    max_jobs: Mapped[int | None] = mapped_column(Integer)
    daily_gpu_seconds: Mapped[float | None] = mapped_column(Float)
    active_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL", use_alter=True, name="fk_users_active_model")
    )
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    uploads: Mapped[list[Upload]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                 passive_deletes=True)
    models: Mapped[list[TrainedModel]] = relationship(
        back_populates="user", cascade="all, delete-orphan", foreign_keys="TrainedModel.user_id",
        passive_deletes=True,
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                           passive_deletes=True)


class Upload(Base):
    """One file a user sent, kept in the content-addressed store under its sha256."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # labelme | image | zip | correction
    original_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # For a correction: the result it corrects.
    corrects_result_id: Mapped[int | None] = mapped_column(
        ForeignKey("results.id", ondelete="SET NULL", use_alter=True, name="fk_uploads_corrects_result")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    user: Mapped[User] = relationship(back_populates="uploads")


dataset_uploads = Table(
    "dataset_uploads",
    Base.metadata,
    Column("dataset_id", ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("upload_id", ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
)


class Dataset(Base):
    """The uploads that together form one training set."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    uploads: Mapped[list[Upload]] = relationship(secondary=dataset_uploads)


class TrainedModel(Base):
    """A user's model version; the bundle (weights, config, card) lives in the file store."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("user_id", "version", name="uq_models_user_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128), default="")
    classes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.TRAINING)
    path: Mapped[str | None] = mapped_column(String(512))  # bundle dir, relative to the data dir
    arch: Mapped[str] = mapped_column(String(16), default="tiny")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="models", foreign_keys=[user_id])


class SpeedProbe(Base):
    """A worker machine's measured training speed (jobqueue/probe.py, at worker start-up): the time
    estimates use it until trained jobs of that kind have finished."""

    __tablename__ = "speed_probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    device_kind: Mapped[str] = mapped_column(String(16))  # cpu | cuda
    timing: Mapped[dict[str, Any]] = mapped_column(default=dict)  # as a train job's result["timing"]
    measured_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """A training or recognition job; its state lives here, not only in the broker."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    stage: Mapped[str] = mapped_column(String(64), default="")
    eta_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)  # user-facing reason
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(64))
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL",
                                                            use_alter=True, name="fk_jobs_model"))
    # Telegram message that shows this job's progress (edited in place by the bot).
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="jobs")


class Result(Base):
    """What a recognition produced for one image: files in the store and the summary numbers."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id", ondelete="SET NULL"))
    image_name: Mapped[str] = mapped_column(String(255), default="")
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)  # role -> sha256 (overlay, labelme, csv, ...)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Notice(Base):
    """Outbox: a message the bot must deliver once (job finished, failed, ...)."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("job_id", "kind", name="uq_notices_job_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    # How many of the notice's messages Telegram accepted: a restart resumes after them.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PendingState(Base):
    """What the bot waits for from a user (a JSON's image, the rest of an album, a model's new
    name): here, not in memory, so a bot restart loses nothing; past expires_at it is ignored."""

    __tablename__ = "pending_states"
    __table_args__ = (UniqueConstraint("user_id", "kind", "key", name="uq_pending_states_user_kind_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
