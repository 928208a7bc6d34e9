"""Label mode, blocking (database + file store; the handlers run it in threads): an image the user
sent, outlines proposed around her taps, and the crops and outlines she drew saved as a LabelMe
training file through the same intake and validator as a file sent in the chat.

The page works on an image upload (kind "image"): one she sent without labels, or the image of one
of her results (then the model's outlines come along as proposals). Ids from the page are never
trusted: every function takes the caller's user id; another user's upload, or one that is no
image, is NoSuchImage (HTTP 404, the same as one that does not exist)."""

from __future__ import annotations

import base64
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from annotations.labelme import read_labelme
from annotations.model import Instance
from annotations.proposer import propose_outline, spots, to_gray
from annotations.suggest import read_unsure, suggest_crops
from core.settings import Settings
from imaging.images import read_image
from intake.labels import NotTheirs, keep_labels
from storage.db import session_scope
from storage.files import FileStore, StoreError
from storage.models import Job, Result, Upload
from storage.notices import LabelsSavedNotice, add_user_notice
from web.review import CROP_LABEL, MAX_IMAGE_SIDE, MAX_OBJECTS, EditError, Gone, new_shape, number

MAX_CROPS = 50
MAX_BLOBS = 5000
MAX_UNSURE_SHOWN = 2000  # the model's guesses under her threshold sent to the page
CACHE_IMAGES = 8  # decoded images kept for taps (a tap must answer in a fraction of a second)
LABELS_KEY = "labels_upload_id"  # in the image upload's summary: its newest saved label set


class NoSuchImage(Exception):
    """No image upload of this user with that id (HTTP 404)."""


@dataclass(frozen=True)
class _Image:
    upload_id: int
    name: str
    sha256: str
    labels_upload_id: int | None
    result_id: int | None  # her model's result on this image (_model_result): its outlines as proposals


def _own_image(settings: Settings, user_id: int, upload_id: int) -> _Image:
    with session_scope(settings.database_url) as session:
        upload = session.get(Upload, upload_id)
        if upload is None or upload.user_id != user_id or upload.kind != "image":
            raise NoSuchImage(upload_id)
        result_id = _model_result(session, user_id, upload)
        labels = (upload.summary or {}).get(LABELS_KEY)
        return _Image(upload.id, upload.original_name, upload.sha256,
                      int(labels) if isinstance(labels, int) else None, result_id)


def _model_result(session: Session, user_id: int, upload: Upload) -> int | None:
    """Her model's recognition of this image, whose outlines the page offers: her active model's if
    it recognised the image, else the newest one (the result whose Label button opened the page).
    The same picture sent again (another upload, the same sha256) counts: it is the same image."""
    same = select(Upload.id).where(Upload.user_id == user_id, Upload.sha256 == upload.sha256)
    found = session.execute(
        select(Result.id, Job.model_id).join(Job, Job.id == Result.job_id)
        .where(Result.user_id == user_id,
               or_(Result.upload_id.in_(same), Result.image_sha256 == upload.sha256))
        .order_by(Result.id.desc())
    ).all()
    active = upload.user.active_model_id
    return next((r for r, m in found if active is not None and m == active), found[0][0] if found else None)


def list_images(settings: Settings, user_id: int, limit: int = 30) -> list[dict[str, Any]]:
    """Her newest image uploads (what /label and the page's list offer)."""
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(Upload).where(Upload.user_id == user_id, Upload.kind == "image")
            .order_by(Upload.id.desc()).limit(limit)
        )
        return [{"id": u.id, "name": u.original_name, "labelled": LABELS_KEY in (u.summary or {}),
                 "created_at": u.created_at.isoformat() if u.created_at else None} for u in rows]


_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_cache_lock = Lock()


def _pixels(settings: Settings, store: FileStore, image: _Image) -> np.ndarray:
    """The image's RGB pixels, decoded once per process for the taps that follow."""
    with _cache_lock:
        if image.sha256 in _cache:
            _cache.move_to_end(image.sha256)
            return _cache[image.sha256]
    try:
        data = store.read_bytes(image.sha256)
    except StoreError:
        raise Gone(image.upload_id) from None
    rgb = read_image(data, name=image.name, max_pixels=settings.max_image_pixels).image
    with _cache_lock:
        _cache[image.sha256] = rgb
        while len(_cache) > CACHE_IMAGES:
            _cache.popitem(last=False)
    return rgb


def _shapes_of(store: FileStore, sha: str | None, name: str, max_pixels: int) -> tuple[list, list]:
    """(crops [x0, y0, x1, y1], objects {label, points, score}) of a stored LabelMe file."""
    if sha is None:
        return [], []
    try:
        ann = read_labelme(store.read_bytes(sha), name=name, max_pixels=max_pixels)
    except (StoreError, ValueError):
        return [], []
    crops = [[c.x0, c.y0, c.x1, c.y1] for c in ann.crops]
    objects = [{"label": i.label, "points": np.round(i.polygon, 2).tolist(),
                "score": None if i.score is None else round(float(i.score), 4)} for i in ann.instances]
    return crops, objects


def image_view(settings: Settings, store: FileStore, user_id: int, upload_id: int) -> dict[str, Any]:
    """The page's data: the image's size, her saved crops and outlines (to extend), the model's
    outlines as proposals when the image was recognised, the classes she can pick."""
    image = _own_image(settings, user_id, upload_id)
    with session_scope(settings.database_url) as session:
        labels = session.get(Upload, image.labels_upload_id) if image.labels_upload_id else None
        labels_sha = labels.sha256 if labels is not None and labels.user_id == user_id else None
        result = session.get(Result, image.result_id) if image.result_id else None
        files = (result.files or {}) if result is not None else {}
        result_sha, unsure_sha = files.get("labelme"), files.get("unsure")
    crops, objects = _shapes_of(store, labels_sha, image.name, settings.max_image_pixels)
    _, proposals = _shapes_of(store, result_sha, image.name, settings.max_image_pixels)
    classes = sorted({o["label"] for o in objects + proposals} | {"particle"})
    rgb = _pixels(settings, store, image)
    model = [Instance(o["label"], np.asarray(o["points"], float), o["score"]) for o in proposals]
    unsure = _unsure(store, unsure_sha)
    return {
        "image": {"id": image.upload_id, "name": image.name, "width": rgb.shape[1], "height": rgb.shape[0]},
        "crops": crops,
        "objects": objects,
        "proposals": proposals,
        # its guesses under her threshold, offered only inside crops, the most doubtful first
        "unsure": [{"label": i.label, "points": np.round(i.polygon, 2).tolist(), "score": i.score}
                   for i in unsure[:MAX_UNSURE_SHOWN]],
        "classes": classes,
        "blobs": blobs(rgb),
        # "Label where the model is least sure": crops around the model's least certain outlines and
        # what it found under her threshold
        "suggested": suggest_crops(model, rgb.shape[1], rgb.shape[0], unsure=unsure),
    }


def _unsure(store: FileStore, sha: str | None) -> list[Instance]:
    """The model's detections under the threshold stored with the result ([] for a result from
    before they were kept, or one whose file is gone)."""
    try:
        return read_unsure(store.read_bytes(sha)) if sha else []
    except StoreError:
        return []


def blobs(rgb: np.ndarray) -> list[list[float]]:
    """[x, y, D] of particle-like spots (annotations.proposer.spots): the page warns of a crop
    holding one that no outline covers, since a crop must be labelled completely."""
    return spots(to_gray(rgb), MAX_BLOBS).round(1).tolist()


def image_png(settings: Settings, store: FileStore, user_id: int, upload_id: int) -> bytes:
    """The image as PNG, at most MAX_IMAGE_SIDE px a side (the page scales it to the real size)."""
    from PIL import Image

    picture = Image.fromarray(_pixels(settings, store, _own_image(settings, user_id, upload_id)))
    if max(picture.size) > MAX_IMAGE_SIDE:
        picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def propose(settings: Settings, store: FileStore, user_id: int, upload_id: int, body: Any) -> dict[str, Any]:
    """The outline around a tap {"x", "y"} (image pixels): {"points": [[x, y], ...] or None}."""
    if not isinstance(body, dict):
        raise EditError('The body must be a JSON object {"x": ..., "y": ...}.')
    try:
        x, y = number(body.get("x")), number(body.get("y"))
    except ValueError:
        raise EditError("x and y must be finite numbers (image pixels).") from None
    rgb = _pixels(settings, store, _own_image(settings, user_id, upload_id))
    found = propose_outline(to_gray(rgb), x, y)
    if found is None:
        return {"points": None}
    return {"points": np.round(found.polygon, 2).tolist(), "area_px": round(found.area_px, 1)}


def _crop_shapes(crops: Any, width: int, height: int) -> list[dict[str, Any]]:
    if not isinstance(crops, list) or len(crops) > MAX_CROPS:
        raise EditError(f"crops must be a list of at most {MAX_CROPS} [x0, y0, x1, y1] rectangles.")
    shapes: list[dict[str, Any]] = []
    for k, crop in enumerate(crops, 1):
        try:
            if not isinstance(crop, list) or len(crop) != 4:
                raise ValueError
            x0, y0, x1, y1 = (number(v) for v in crop)
        except ValueError:
            raise EditError(f"crop #{k} must be [x0, y0, x1, y1], four finite numbers.") from None
        x0, x1 = sorted((max(0.0, x0), min(float(width), x1)))
        y0, y1 = sorted((max(0.0, y0), min(float(height), y1)))
        shapes.append({"label": CROP_LABEL, "points": [[x0, y0], [x1, y1]], "group_id": None,
                       "description": "", "shape_type": "rectangle", "flags": {}, "mask": None})
    return shapes


def save_labels(
    settings: Settings, store: FileStore, user_id: int, upload_id: int, body: Any
) -> dict[str, Any]:
    """Keep {"crops": [[x0, y0, x1, y1], ...], "objects": [{label, shape_type, points}, ...]} as a
    LabelMe file with the image embedded (intake.labels.keep_labels: the validator, the upload, the
    pending training set; a label set saved before for this image leaves the pending set), and the
    chat's upload summary with Train now (a notice), in one transaction. Nothing is stored on bad input."""
    from PIL import Image

    image = _own_image(settings, user_id, upload_id)
    rgb = _pixels(settings, store, image)
    h, w = rgb.shape[:2]
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise EditError('The body must be a JSON object {"crops": [...], "objects": [...]}.')
    if len(body["objects"]) > MAX_OBJECTS:
        raise EditError(f"At most {MAX_OBJECTS} objects can be saved at once.")
    shapes = _crop_shapes(body.get("crops", []), w, h)
    for k, entry in enumerate(body["objects"], 1):
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise EditError(f"object #{k} has no class name.")
        if label.strip().casefold() == CROP_LABEL:
            raise EditError(f"object #{k}: '{CROP_LABEL}' is kept for crop rectangles; use another class.")
        shapes.append(new_shape(entry, f"object #{k}"))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    stem = image.name.rsplit(".", 1)[0] or f"image_{image.upload_id}"
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{stem}.png",
           "imageData": encoded, "imageHeight": h, "imageWidth": w}
    name = f"{stem}_labels.json"

    def link(session: Session, labels_id: int) -> None:
        """The image points at its newest label set, which replaces the one before in the pending set."""
        upload, labels = session.get(Upload, image.upload_id), session.get(Upload, labels_id)
        assert upload is not None and labels is not None  # written in this transaction / checked above
        old = (upload.summary or {}).get(LABELS_KEY)
        upload.summary = {**(upload.summary or {}), LABELS_KEY: labels_id}  # a new dict: seen
        user = upload.user
        pending = [u for u in (user.preferences or {}).get("pending_uploads") or [] if u != old]
        user.preferences = {**(user.preferences or {}), "pending_uploads": pending}
        add_user_notice(session, user_id, LabelsSavedNotice(
            upload_id=labels_id, image_upload_id=image.upload_id, name=name, summary=labels.summary,
            pending_count=len(pending)))

    try:
        kept = keep_labels(settings, store, user_id, name, json.dumps(doc).encode("utf-8"),
                           find_result=False, then=link)
    except NotTheirs:
        raise NoSuchImage(upload_id) from None
    counts = {key: int(kept.summary.get(key, 0)) for key in ("n_crops", "n_objects")}
    return {"upload_id": kept.upload_id, "image_id": image.upload_id, **counts}
