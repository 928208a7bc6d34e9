"""Which weights a correction round starts from: the version whose result the user corrected.

Why: on a real series (docs/benchmarks.md, "A correction round") v2 trained from scratch on v1's
labels plus the correction bought nothing (F1 0.913 -> 0.913), while v2 fine-tuned from v1 with the
same iteration budget gained F1 +0.028 and mask AP +0.19. So a correction job starts from that
version's bundle (fetched from the store like any bundle; the trainer loads its weights only, never
unpickles), unless it cannot: another class set or preset gets today's start, and the job says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from storage.models import Job, ModelStatus, Result, TrainedModel, Upload, User

if TYPE_CHECKING:
    from annotations.model import AnnotatedImage
    from segmodel.options import TrainOptions


@dataclass(frozen=True)
class Previous:
    """The version a correction was made for, as the decision needs it."""

    model_id: int
    version: int
    classes: tuple[str, ...]
    arch: str
    path: str  # TrainedModel.path: the bundle, relative to the data dir


@dataclass(frozen=True)
class Start:
    """Where a training starts. `init`: a local bundle to fine-tune (None: the options' own init);
    `note`: what the model's metrics keep and the chat shows ({} when nothing was corrected)."""

    init: str | None = None
    note: dict[str, Any] = field(default_factory=dict)


def previous_model(session: Session, user_id: int, correction_of: int) -> Previous | None:
    """The model whose result the correction upload corrects, else the user's active model; only a
    ready model of this user."""
    upload = session.get(Upload, correction_of)
    model: TrainedModel | None = None
    if upload is not None and upload.user_id == user_id and upload.corrects_result_id is not None:
        result = session.get(Result, upload.corrects_result_id)
        job = session.get(Job, result.job_id) if result is not None else None
        model = session.get(TrainedModel, job.model_id) if job is not None and job.model_id else None
    if model is None:
        user = session.get(User, user_id)
        model = session.get(TrainedModel, user.active_model_id) if user and user.active_model_id else None
    if model is None or model.user_id != user_id or model.status != ModelStatus.READY.value or not model.path:
        return None
    return Previous(model.id, model.version, tuple(model.classes or ()), model.arch, model.path)


def classes_of(sources: list[AnnotatedImage]) -> list[str]:
    """The classes a training on `sources` learns (the trainer sorts them the same way)."""
    return sorted({inst.label for ann in sources for inst in ann.instances})


def choose_start(previous: Previous | None, classes: list[str], options: TrainOptions,
                 bundle: Path | None) -> Start:
    """Fine-tune `previous` when the new set has its classes and preset and its bundle is here.
    Only for init 'auto' (segbot's choice): an explicit 'random', 'base' or 'coco' is the user's."""
    if previous is None or options.init != "auto":
        return Start()
    note: dict[str, Any] = {"from_version": previous.version, "from_model_id": previous.model_id}
    if sorted(previous.classes) != classes:
        added = sorted(set(classes) - set(previous.classes))
        dropped = sorted(set(previous.classes) - set(classes))
        return Start(None, {**note, "skipped": "classes", "added": added, "dropped": dropped})
    if previous.arch != options.arch:
        return Start(None, {**note, "skipped": "arch"})
    if bundle is None or not bundle.is_dir():
        return Start(None, {**note, "skipped": "missing"})
    return Start(str(bundle), note)
