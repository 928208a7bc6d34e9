"""A LabelMe file kept as training data: validated by annotations.labelme (the one validator, for
files sent in the chat and for corrections saved on the Mini App page alike), made self-contained,
stored as an upload and added to the user's pending training set.

Blocking (database + file store): call it in a thread. Nothing is stored when validation fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotations.crops import summarize_annotation
from annotations.labelme import read_labelme
from core.settings import Settings
from storage.db import session_scope
from storage.files import FileStore
from storage.models import Result, Upload, User


class NotTheirs(LookupError):
    """The result to correct is not this user's (or the user is gone)."""


@dataclass(frozen=True)
class Kept:
    upload_id: int
    summary: dict[str, Any]  # annotations.crops.summarize_annotation, JSON-safe (notes: Text.to_json())
    used_image: str | None  # lower-cased name of a separately sent image now embedded in the file
    correction_of: dict[str, Any] | None  # {"result_id", "image_name", "n"} when it corrects a result
    pending_count: int


def basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def keep_labels(
    settings: Settings,
    store: FileStore,
    user_id: int,
    name: str,
    data: bytes,
    images: Mapping[str, bytes] | None = None,
    *,
    corrects_result_id: int | None = None,
    find_result: bool = True,
    then: Callable[[Session, int], None] | None = None,
) -> Kept:
    """Validate `data` (raises annotations' AnnotationError with the user-facing reason) and keep it.

    The result it corrects is `corrects_result_id` when given (it must be the user's: NotTheirs
    otherwise), else found by the image's digest or name among the user's results (unless not
    `find_result`: a label set drawn on the page is new training data, never a correction). `then(session,
    upload_id)` runs in the same transaction (e.g. to add a notice)."""
    images = dict(images or {})
    ann = read_labelme(data, name=name, files=images, max_pixels=settings.max_image_pixels)
    labels = _self_contained(data, images)
    summary = _json_safe(summarize_annotation(ann))  # notes: Texts as JSON, shown in the user's language
    with session_scope(settings.database_url) as session:
        result = _corrected_result(session, user_id, corrects_result_id, labels.image_sha256,
                                   labels.image_path) if find_result or corrects_result_id else None
        sha = store.put_bytes(labels.stored)  # only once the row will be written too
        upload = Upload(user_id=user_id, kind="correction" if result else "labelme", original_name=name[:255],
                        sha256=sha, size=len(labels.stored), summary=summary,
                        corrects_result_id=result.id if result else None)
        session.add(upload)
        session.flush()
        pending = _add_to_pending(session, user_id, upload.id)
        if then is not None:
            then(session, upload.id)
        return Kept(upload.id, summary, labels.used_image, _correction_of(result), pending)


@dataclass(frozen=True)
class _Labels:
    """The LabelMe file as it is kept: with its image embedded when that was sent separately."""

    stored: bytes
    image_sha256: str | None  # of the image it labels, when known: finds the result it corrects
    image_path: str | None  # its imagePath, else
    used_image: str | None  # lower-cased name of the separately sent image now embedded


def _self_contained(data: bytes, images: Mapping[str, bytes]) -> _Labels:
    """The file with its image inside, so the trainer needs nothing else (read_labelme accepted it)."""
    doc = json.loads(data)
    stored, image_bytes, used = data, None, None
    if doc.get("imageData"):
        try:
            image_bytes = base64.b64decode(doc["imageData"])
        except (binascii.Error, ValueError):
            image_bytes = None
    else:
        wanted = basename(str(doc.get("imagePath") or ""))
        image_bytes = {k.lower(): v for k, v in images.items()}.get(wanted.lower())
        if image_bytes is not None:
            encoded = base64.b64encode(image_bytes).decode("ascii")
            stored = json.dumps({**doc, "imagePath": wanted, "imageData": encoded}).encode("utf-8")
            used = wanted.lower()
    image_sha = hashlib.sha256(image_bytes).hexdigest() if image_bytes else None
    image_path = doc.get("imagePath") if isinstance(doc.get("imagePath"), str) else None
    return _Labels(stored, image_sha, image_path, used)


def _add_to_pending(session: Session, user_id: int, upload_id: int) -> int:
    """The upload joins the user's pending training set; how many uploads it holds now."""
    user = session.get(User, user_id)
    if user is None:
        raise NotTheirs(f"user {user_id} is gone")
    pending = [*((user.preferences or {}).get("pending_uploads") or []), upload_id]
    user.preferences = {**(user.preferences or {}), "pending_uploads": pending}  # a new dict: seen
    return len(pending)


def _correction_of(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"result_id": result.id, "image_name": result.image_name,
            "n": int((result.summary or {}).get("n_objects", 0))}


def _corrected_result(
    session: Session, user_id: int, result_id: int | None, image_sha: str | None, image_path: str | None
) -> Result | None:
    if result_id is not None:
        result = session.get(Result, result_id)
        if result is None or result.user_id != user_id:
            raise NotTheirs(f"result {result_id} is not this user's")
        return result
    if image_sha:
        result = session.scalar(
            select(Result)
            .where(Result.user_id == user_id, Result.image_sha256 == image_sha)
            .order_by(Result.id.desc())
        )
        if result is not None:
            return result
    if image_path:
        stem = basename(image_path).rsplit(".", 1)[0]
        candidates = session.scalars(
            select(Result).where(Result.user_id == user_id).order_by(Result.id.desc()).limit(200)
        )
        return next((r for r in candidates if r.image_name and r.image_name.rsplit(".", 1)[0] == stem), None)
    return None
