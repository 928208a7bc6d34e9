"""What the API does, blocking (database + file store; the handlers run it in threads): the user's
results, one result's objects and image, and an edited object set saved as a correction.

Ids from the page are never trusted: every function takes the caller's user id and looks the result
up as hers (NotYours otherwise, the same for a result that does not exist)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from annotations.labelme import read_labelme
from annotations.model import AnnotatedImage
from core.settings import Settings
from intake.labels import NotTheirs, keep_labels
from measures.objects import measure_arrays
from storage.db import session_scope
from storage.files import FileStore, StoreError
from storage.models import Result, User
from storage.notices import CorrectionSavedNotice, add_user_notice

MAX_OBJECTS = 20_000
MAX_POINTS = 2_000  # vertices of one outline drawn on the page
MAX_IMAGE_SIDE = 4096  # the page gets a smaller copy of bigger images (phones cap canvas sizes)
CROP_LABEL = "crop"


class NotYours(Exception):
    """No such result of this user (HTTP 403, whether it exists or not)."""


class Gone(Exception):
    """The result's files were deleted (retention)."""


class EditError(ValueError):
    """The edited object set is malformed (HTTP 400 with this message)."""


@dataclass(frozen=True)
class Caller:
    user_id: int
    telegram_id: int
    language: str


def find_user(settings: Settings, telegram_id: int) -> Caller | None:
    with session_scope(settings.database_url) as session:
        user = session.scalar(select(User).where(User.telegram_id == telegram_id))
        return Caller(user.id, user.telegram_id, user.language or "en") if user else None


def list_results(settings: Settings, user_id: int, limit: int = 30) -> list[dict[str, Any]]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(Result).where(Result.user_id == user_id).order_by(Result.id.desc()).limit(limit)
        )
        return [
            {
                "id": r.id,
                "name": r.image_name or f"#{r.id}",
                "n_objects": int((r.summary or {}).get("n_objects", 0)),
                "created_at": r.created_at.isoformat() if r.created_at else None,
            }
            for r in rows
        ]


def _own(settings: Settings, user_id: int, result_id: int) -> tuple[str, dict[str, Any]]:
    with session_scope(settings.database_url) as session:
        result = session.get(Result, result_id)
        if result is None or result.user_id != user_id:
            raise NotYours(result_id)
        return result.image_name or f"result_{result.id}.png", dict(result.files or {})


def stored_file(
    settings: Settings, store: FileStore, user_id: int, result_id: int, role: str
) -> tuple[str, bytes]:
    """(image name, bytes) of one of the result's files."""
    name, files = _own(settings, user_id, result_id)
    try:
        return name, store.read_bytes(files[role])
    except (KeyError, StoreError):
        raise Gone(result_id) from None


def _load(
    settings: Settings, store: FileStore, user_id: int, result_id: int
) -> tuple[str, bytes, AnnotatedImage]:
    name, data = stored_file(settings, store, user_id, result_id, "labelme")
    ann = read_labelme(data, name=f"{name} (result)", max_pixels=settings.max_image_pixels)
    return name, data, ann


def result_view(settings: Settings, store: FileStore, user_id: int, result_id: int) -> dict[str, Any]:
    """The page's data: image size and scale, every object with its outline and measurements."""
    name, _, ann = _load(settings, store, user_id, result_id)
    a = measure_arrays(ann.instances)
    objects = [
        {
            "id": k + 1,  # the CSV's and the overlay's id
            "label": inst.label,
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in inst.polygon],
            "score": None if inst.score is None else round(float(inst.score), 4),
            "area_px": round(float(a.area_px[k]), 2),
            "d_px": round(float(a.d_px[k]), 3),
        }
        for k, inst in enumerate(ann.instances)
    ]
    return {
        "result": {
            "id": result_id,
            "name": name,
            "width": ann.width,
            "height": ann.height,
            "nm_per_px": ann.nm_per_px,
        },
        "objects": objects,
        "classes": sorted({o["label"] for o in objects}),
        "ids_fit": ids_fit(ann),
    }


def ids_fit(ann: AnnotatedImage) -> bool:
    """Whether the chat's overlay numbered the objects: it does only when every id fits beside its
    object (outputs.overlay_layout), and the page starts with ids on exactly then, so 168 dense
    particles are not hidden under a cloud of numbers."""
    from outputs.overlay import render_pictures

    if not ann.instances:
        return True
    return render_pictures(ann.image, ann.instances, ann.nm_per_px, inset=False).overlay.ids_shown


def image_bytes(settings: Settings, store: FileStore, user_id: int, result_id: int) -> bytes:
    """The image as PNG, at most MAX_IMAGE_SIDE px a side (the page scales it to the real size)."""
    from PIL import Image

    _, _, ann = _load(settings, store, user_id, result_id)
    picture = Image.fromarray(ann.image)
    if max(picture.size) > MAX_IMAGE_SIDE:
        picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


# The correction


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    return float(value)


def new_shape(entry: dict[str, Any], where: str) -> dict[str, Any]:
    shape_type = entry.get("shape_type", "polygon")
    points = entry.get("points")
    if shape_type not in ("polygon", "circle"):
        raise EditError(f"{where}: shape_type must be 'polygon' or 'circle'.")
    if not isinstance(points, list) or len(points) > MAX_POINTS:
        raise EditError(f"{where}: points must be a list of at most {MAX_POINTS} [x, y] pairs.")
    try:
        pts = [[number(p[0]), number(p[1])] for p in points if isinstance(p, list) and len(p) == 2]
    except ValueError:
        pts = []
    if len(pts) != len(points):
        raise EditError(f"{where}: every point must be a pair of finite numbers [x, y].")
    if shape_type == "polygon" and len(pts) < 3:
        raise EditError(f"{where}: an outline needs at least 3 points.")
    if shape_type == "circle" and len(pts) != 2:
        raise EditError(f"{where}: a circle is [centre, a point on its edge].")
    return {
        "label": entry["label"].strip(),
        "points": pts,
        "group_id": None,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
    }


def parse_edits(body: Any, ann: AnnotatedImage) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """LabelMe shapes for the edited set and what changed ({"removed", "added", "relabelled"}).

    An entry {"id": k, "label": ...} keeps object k (its outline and score) with that class; one
    without "id" is a new outline {"label", "shape_type": "polygon"|"circle", "points"}."""
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise EditError('The body must be a JSON object {"objects": [...]}.')
    entries = body["objects"]
    if len(entries) > MAX_OBJECTS:
        raise EditError(f"At most {MAX_OBJECTS} objects can be saved at once.")
    shapes: list[dict[str, Any]] = []
    kept: set[int] = set()
    drawn: dict[tuple[str, str, str], int] = {}  # new outlines: (label, type, points) -> object number
    added = relabelled = 0
    for number, entry in enumerate(entries, 1):
        where = f"object #{number}"
        if not isinstance(entry, dict):
            raise EditError(f"{where} is not a JSON object.")
        label = entry.get("label")
        if not isinstance(label, str) or not label.strip():
            raise EditError(f"{where} has no class name.")
        label = label.strip()
        if label.casefold() == CROP_LABEL:
            raise EditError(f"{where}: '{CROP_LABEL}' is kept for crop rectangles; use another class name.")
        if "id" in entry:
            k = entry["id"]
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(ann.instances):
                raise EditError(f"{where}: id {k!r} is not an object of this result.")
            if k in kept:
                raise EditError(f"{where}: object {k} is listed twice.")
            if "points" in entry:
                raise EditError(f"{where}: an object of the result keeps its outline; send no points for it.")
            kept.add(k)
            inst = ann.instances[k - 1]
            relabelled += label != inst.label
            shapes.append(
                {
                    "label": label,
                    "points": inst.polygon.tolist(),
                    "group_id": None,
                    "description": "" if inst.score is None else f"score={inst.score:.4f}",
                    "shape_type": "polygon",
                    "flags": {},
                    "mask": None,
                }
            )
        else:
            shape = new_shape(entry, where)
            # A LabelMe file's copy is skipped with a note; here it is a double tap: say so, store nothing.
            key = (shape["label"], shape["shape_type"], json.dumps(shape["points"]))
            if key in drawn:
                raise EditError(f"{where} is an exact copy of object #{drawn[key]}; send it once.")
            drawn[key] = number
            shapes.append(shape)
            added += 1
    delta = {"removed": len(ann.instances) - len(kept), "added": added, "relabelled": relabelled}
    return shapes, delta


def save_correction(
    settings: Settings, store: FileStore, user_id: int, result_id: int, body: Any
) -> dict[str, Any]:
    """Keep the edited set as a correction of the result (intake.labels: the LabelMe validator, the
    pending training set) and, in the same transaction, the chat's "Correction saved" notice.
    EditError or AnnotationError on bad input; nothing is stored then."""
    name, data, ann = _load(settings, store, user_id, result_id)
    shapes, delta = parse_edits(body, ann)
    doc = json.loads(data)
    crops = [s for s in doc.get("shapes", []) if str(s.get("label", "")).strip().casefold() == CROP_LABEL]
    doc["shapes"] = crops + shapes
    stem = name.rsplit(".", 1)[0]
    payload = {"result_id": result_id, "image_name": name, "n_objects": len(shapes), **delta}

    def notice(session, upload_id: int) -> None:
        saved = CorrectionSavedNotice(upload_id=upload_id, result_id=result_id, image_name=name,
                                      n_objects=len(shapes), removed=delta["removed"], added=delta["added"],
                                      relabelled=delta["relabelled"])
        add_user_notice(session, user_id, saved)

    data = json.dumps(doc).encode("utf-8")
    try:
        kept = keep_labels(
            settings, store, user_id, f"{stem}_reviewed.json", data, corrects_result_id=result_id, then=notice
        )
    except NotTheirs:  # deleted meanwhile (retention, /forget_me)
        raise NotYours(result_id) from None
    return {"upload_id": kept.upload_id, **payload}
