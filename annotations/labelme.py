"""LabelMe JSON (3.x .. 5.x) in and out.

Reading checks everything a user can get wrong and raises one typed AnnotationError per problem (see
annotations.errors); nothing is written anywhere. An object shape no outline can be made from (too few
points, no area, a broken mask, outside the image, an unknown type) is skipped with a note naming it,
as long as something usable is left: one slip among hundreds of traced outlines does not refuse the
file. Crops are never skipped (without one the whole image would count as labelled).

The image comes from `imageData` (base64) or from `imagePath`, resolved only inside `base_dir` or in
the `files` the user sent along: no absolute paths, no '..', no symlink leading out.

Errors and notes are core.i18n Texts (English msgids, rendered in the user's language by whoever shows
them); str() of either is the English. A shape's problem reads "'a.json': {shape} {problem}", so the
note that skips the shape can say the same problem again: "{Shape} {problem} Skipped: ...".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from annotations import geometry
from annotations.errors import (
    BadLabel,
    BadMask,
    BadPolygon,
    BadScale,
    DuplicateId,
    EmptyCrop,
    ImageSizeMismatch,
    NotJson,
    NotLabelMe,
    ShapeOutsideImage,
    UnknownShapeType,
    UnsafeImagePath,
)
from annotations.model import AnnotatedImage, AnnotationError, Crop, Instance
from core.i18n import N_, NP_, Text
from imaging.errors import ImageMissing, ImageUndecodable
from imaging.images import LoadedImage, encode_png, read_image, sniff_kind
from imaging.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, read_limited

LABELME_VERSION = "5.5.0"
SKIPPED_TYPES = {"point", "points", "line", "linestrip"}
OBJECT_TYPES = {"polygon", "rectangle", "circle", "ellipse", "mask", "oriented_rectangle"}
MAX_LABEL_LENGTH = 100
NOTED_ONE_BY_ONE = 5  # unusable shapes named in a note each; the rest share one note
NUMBERS_SHOWN = 8  # shape numbers a note lists before "and 12 more"
_SCORE = re.compile(r"score\s*[=:]\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)")


# ------------------------------------------------------------------ naming shapes in messages


def _shape(
    index: int, label: str | None = None, shape_type: str | None = None, *, mask: bool = False
) -> Text:
    """A shape as a message names it inside a sentence: "shape #3 ('particle', polygon)"."""
    if mask:
        return N_("mask shape #{n} ('{label}')", n=index + 1, label=label)
    if label is None:
        return N_("shape #{n}", n=index + 1)
    if shape_type is None:
        return N_("shape #{n} ('{label}')", n=index + 1, label=label)
    return N_("shape #{n} ('{label}', {type})", n=index + 1, label=label, type=shape_type)


_OPENING = {  # each of _shape's names as it opens a sentence (the note that skips the shape)
    "mask shape #{n} ('{label}')": N_("Mask shape #{n} ('{label}')").msgid,
    "shape #{n}": N_("Shape #{n}").msgid,
    "shape #{n} ('{label}')": N_("Shape #{n} ('{label}')").msgid,
    "shape #{n} ('{label}', {type})": N_("Shape #{n} ('{label}', {type})").msgid,
}


def _shape_error(cls: type[AnnotationError], name: str, shape: Text, problem: Text) -> AnnotationError:
    """One shape's problem: "'a.json': shape #3 ('particle', circle) has zero radius; redraw it."."""
    return cls(N_("'{name}': {shape} {problem}", name=name, shape=shape, problem=problem))


def _note_on_shapes(numbers: list[int], one: Text, several: Text) -> list[Text]:
    """The note on these shapes, if any: `one` (a template with {number}) names a single shape, `several`
    (a plural template with {n} and {numbers}) counts them."""
    if not numbers:
        return []
    if len(numbers) == 1:
        return [one.with_values(number=numbers[0])]
    return [several.with_values(n=len(numbers), numbers=_numbers(numbers))]


def _numbers(numbers: list[int]) -> str | Text:
    """'#3, #7' for a note on several shapes; past NUMBERS_SHOWN, "... and 12 more". (A note on one
    shape has a message of its own: "Shape #3 crosses itself", where Russian's form for 1 is also 21's.)"""
    shown = ", ".join(f"#{n}" for n in numbers[:NUMBERS_SHOWN])
    if len(numbers) <= NUMBERS_SHOWN:
        return shown
    return N_("{shown} and {more} more", shown=shown, more=len(numbers) - NUMBERS_SHOWN)


# ------------------------------------------------------------------ the file, the document, the image


def _load_json(source: Path | str | bytes, name: str, max_bytes: int) -> Any:
    data = read_limited(
        source, name, max_bytes, what=N_("File"),
        advice=N_("Save it without image data (and send the image separately) or split the image."),
    )
    if not data.strip():
        raise NotJson(N_("'{name}' is empty; send the .json file that LabelMe saved.", name=name))
    if sniff_kind(data[:64]) in ("png", "jpeg", "bmp", "tiff"):
        raise NotJson(N_(
            "'{name}' is an image, not a LabelMe .json file. Outline the particles in LabelMe and send "
            "the .json it saves.", name=name,
        ))
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise NotJson(N_("'{name}' is not UTF-8 text; send the .json file exactly as LabelMe saved it.",
                         name=name)) from None
    except json.JSONDecodeError as error:
        raise NotJson(N_(
            "'{name}' is not valid JSON (line {line}, column {column}: {reason}); send the .json file "
            "exactly as LabelMe saved it.",
            name=name, line=error.lineno, column=error.colno, reason=error.msg,
        )) from None
    except RecursionError:
        raise NotJson(N_("'{name}' nests too deeply to be a LabelMe file.", name=name)) from None


def _check_is_labelme(doc: Any, name: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise NotLabelMe(N_(
            "'{name}' is JSON but not a LabelMe annotation (no 'shapes' list). Open the image in LabelMe, "
            "outline the particles and save; send that .json file.", name=name,
        ))
    if "imageData" not in doc and "imagePath" not in doc:
        raise NotLabelMe(N_("'{name}' is not a LabelMe annotation (neither 'imageData' nor 'imagePath').",
                            name=name))


def _image_name(doc: dict, name: str) -> str:
    return PurePosixPath(str(doc.get("imagePath") or name).replace("\\", "/")).name or name


def _safe_relative(image_path: str, name: str) -> PurePosixPath:
    normalized = image_path.replace("\\", "/")
    if (
        normalized.startswith("/")
        or re.match(r"^[A-Za-z]:", normalized)
        or normalized.startswith("~")
        or "\x00" in normalized
    ):
        raise UnsafeImagePath(N_(
            "'{name}': imagePath '{path}' is absolute. Embed the image (LabelMe: File > Save With Image "
            "Data) or send the image file together with the JSON.", name=name, path=image_path,
        ))
    rel = PurePosixPath(normalized)
    if ".." in rel.parts:
        raise UnsafeImagePath(N_(
            "'{name}': imagePath '{path}' points outside the folder. Embed the image (LabelMe: File > Save "
            "With Image Data) or put the image next to the JSON.", name=name, path=image_path,
        ))
    return rel


def _find_image(
    image_path: str, name: str, base_dir: Path | None, files: Mapping[str, bytes] | None
) -> tuple[bytes | Path, str]:
    basename = PurePosixPath(image_path.replace("\\", "/")).name
    if files is not None:
        # the files the user sent: exact relative path, then the bare file name (harmless: nothing
        # on disk is touched, so even a '..' path may match a file that came along)
        normalized = image_path.replace("\\", "/").lstrip("./")
        for key in (image_path, normalized, basename):
            if key in files:
                return files[key], key
        by_name = {PurePosixPath(k.replace("\\", "/")).name: k for k in files}
        if basename in by_name:
            return files[by_name[basename]], basename
    rel = _safe_relative(image_path, name)
    if base_dir is not None:
        root = Path(base_dir).resolve()
        candidate = (root / rel).resolve()
        if not candidate.is_relative_to(root):
            raise UnsafeImagePath(N_(
                "'{name}': imagePath '{path}' leads outside the folder (through a link). Embed the image "
                "or put the file itself next to the JSON.", name=name, path=image_path,
            ))
        if candidate.is_file():
            return candidate, str(rel)
    raise ImageMissing(N_(
        "'{name}' does not embed its image and '{path}' was not sent along. Send the image file too, or "
        "save the JSON in LabelMe with File > Save With Image Data.", name=name, path=image_path,
    ))


def _embedded_bytes(image_data: Any, name: str) -> bytes:
    if not isinstance(image_data, str):
        raise ImageUndecodable(N_("'{name}': imageData is not base64 text.", name=name))
    try:
        return base64.b64decode(image_data, validate=False)
    except (binascii.Error, ValueError):
        raise ImageUndecodable(N_("'{name}': the embedded image (imageData) is not valid base64.",
                                  name=name)) from None


def _read_its_image(doc: dict, name: str, base_dir: Path | None, files: Mapping[str, bytes] | None,
                    max_pixels: int, max_bytes: int) -> LoadedImage:
    """The image the document labels: embedded (imageData), else found by its imagePath. Its info bar
    is looked for too: a scale from its scale bar when the file carries none."""
    limits: dict[str, Any] = {"max_pixels": max_pixels, "max_bytes": max_bytes, "info_bar": True}
    image_data, image_path = doc.get("imageData"), doc.get("imagePath")
    if image_data:
        embedded = N_("{name} (embedded image)", name=name)
        return read_image(_embedded_bytes(image_data, name), name=embedded, **limits)
    if isinstance(image_path, str) and image_path.strip():
        source, _found = _find_image(image_path, name, base_dir, files)
        return read_image(source, name=_image_name(doc, name), **limits)
    raise ImageMissing(N_(
        "'{name}' has neither embedded image data nor an image path. Save it in LabelMe with File > Save "
        "With Image Data.", name=name,
    ))


def _check_declared_size(doc: dict, width: int, height: int, name: str) -> None:
    declared = (doc.get("imageHeight"), doc.get("imageWidth"))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in declared):
        return
    if (int(declared[0]), int(declared[1])) != (height, width):
        raise ImageSizeMismatch(N_(
            "'{name}' says the image is {declared_width}x{declared_height} px but the image is "
            "{width}x{height} px. Is it the right image? Re-open and save it in LabelMe.",
            name=name, declared_width=int(declared[1]), declared_height=int(declared[0]), width=width,
            height=height,
        ))


def _scale_of(doc: dict, name: str, from_image: float | None) -> float | None:
    """nm per pixel: our own writer stores it in the document; else the image's (metadata, scale bar)."""
    declared = doc.get("nm_per_px")
    if declared is None:
        return from_image
    if (
        not isinstance(declared, int | float)
        or isinstance(declared, bool)
        or not math.isfinite(declared)
        or declared <= 0
    ):
        raise BadScale(N_("'{name}': nm_per_px must be a positive number, not {value}.",
                          name=name, value=repr(declared)))
    return float(declared)


# ------------------------------------------------------------------ one shape -> one outline


def _points(shape: dict, index: int, name: str, label: str) -> np.ndarray:
    raw = shape.get("points")
    if not isinstance(raw, list):
        raise _shape_error(NotLabelMe, name, _shape(index), N_("has no list of points."))
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise _shape_error(BadPolygon, name, _shape(index, label),
                           N_("has points that are not number pairs.")) from None
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    shape = _shape(index, label)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise _shape_error(BadPolygon, name, shape, N_("has points that are not [x, y] pairs."))
    if not np.isfinite(pts).all():
        raise _shape_error(BadPolygon, name, shape, N_("has NaN or infinite points."))
    return pts


def _decode_mask(shape: dict, pts: np.ndarray, index: int, name: str, label: str) -> np.ndarray:
    import cv2

    where = _shape(index, label, mask=True)
    encoded = shape.get("mask")
    if not isinstance(encoded, str) or not encoded:
        raise _shape_error(BadMask, name, where, N_("has no mask data."))
    try:
        raw = base64.b64decode(encoded, validate=False)
        buf = np.frombuffer(raw, dtype=np.uint8)
        mask = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except (binascii.Error, ValueError, cv2.error):
        mask = None
    if mask is None:
        raise _shape_error(BadMask, name, where, N_("holds no readable PNG mask."))
    if mask.ndim == 3:
        mask = mask[..., 0] if mask.shape[2] < 4 else mask[..., 3]
    if len(pts) != 2:
        raise _shape_error(BadMask, name, where, N_("needs 2 corner points, has {n}.", n=len(pts)))
    (x1, y1), (x2, y2) = pts.astype(int)
    if mask.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise _shape_error(BadMask, name, where, N_(
            "is {mask_width}x{mask_height} px but its box is {box_width}x{box_height} px.",
            mask_width=int(mask.shape[1]), mask_height=int(mask.shape[0]), box_width=int(x2 - x1 + 1),
            box_height=int(y2 - y1 + 1),
        ))
    polygon = geometry.mask_to_polygon(mask > 0, offset=(x1, y1))
    if polygon is None:
        raise _shape_error(BadMask, name, where, N_("is empty."))
    return polygon


_Fault = Callable[[Text], AnnotationError]  # a shape's problem -> the error that names the shape


def _rectangle(pts: np.ndarray, fault: _Fault) -> np.ndarray:
    if len(pts) not in (2, 4):  # some writers store all four corners
        raise fault(N_("needs 2 corner points, has {n}.", n=len(pts)))
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise fault(N_("has zero width or height; redraw it."))
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _circle(pts: np.ndarray, fault: _Fault) -> np.ndarray:
    if len(pts) != 2:
        raise fault(NP_("needs a centre and a rim point, has {n} point.",
                        "needs a centre and a rim point, has {n} points.", n=len(pts)))
    r = float(np.hypot(*(pts[1] - pts[0])))
    if r <= 0:
        raise fault(N_("has zero radius; redraw it."))
    return geometry.circle_polygon(pts[0, 0], pts[0, 1], r)


def _ellipse(pts: np.ndarray, fault: _Fault) -> np.ndarray:
    (x0, y0), (x1, y1) = pts
    if abs(x1 - x0) <= 0 or abs(y1 - y0) <= 0:
        raise fault(N_("has zero width or height; redraw it."))
    return geometry.ellipse_polygon(x0, y0, x1, y1)


def _polygon(pts: np.ndarray, fault: _Fault) -> np.ndarray:
    if len(pts) < 3:
        raise fault(NP_("has {n} point; an outline needs at least 3. Redraw or delete it.",
                        "has {n} points; an outline needs at least 3. Redraw or delete it.", n=len(pts)))
    if len(pts) > 3 and abs(pts[0, 0] - pts[-1, 0]) < 1e-9 and abs(pts[0, 1] - pts[-1, 1]) < 1e-9:
        pts = pts[:-1]  # closed ring written with the first point repeated
    return pts


def _outline(shape: dict, shape_type: str, index: int, name: str, label: str) -> np.ndarray:
    """The polygon of an object or crop shape; raises BadPolygon, BadMask or UnknownShapeType (the
    shape is then skipped, unless it is a crop) or NotLabelMe."""
    if shape_type not in OBJECT_TYPES:
        raise _shape_error(UnknownShapeType, name, _shape(index, label), N_(
            "has unknown type '{type}'. Use polygons, rectangles, circles or masks.", type=shape_type,
        ))
    pts = _points(shape, index, name, label)
    if shape_type == "mask":
        return _decode_mask(shape, pts, index, name, label)

    def fault(problem: Text) -> AnnotationError:
        return _shape_error(BadPolygon, name, _shape(index, label, shape_type), problem)

    if shape_type == "rectangle":
        return _rectangle(pts, fault)
    if shape_type == "circle":
        return _circle(pts, fault)
    if shape_type == "ellipse" and len(pts) == 2:
        return _ellipse(pts, fault)
    return _polygon(pts, fault)  # polygon, oriented_rectangle, ellipse stored as a polygon


def _score_of(shape: dict) -> float | None:
    flags = shape.get("flags")
    if (
        isinstance(flags, dict)
        and isinstance(flags.get("score"), int | float)
        and not isinstance(flags.get("score"), bool)
    ):
        return float(flags["score"])
    if isinstance(shape.get("score"), int | float) and not isinstance(shape.get("score"), bool):
        return float(shape["score"])
    description = shape.get("description")
    if isinstance(description, str):
        m = _SCORE.search(description)
        if m:
            return float(m.group(1))
    return None


# ------------------------------------------------------------------ all shapes, one by one


@dataclass
class _Outline:
    """An object shape read into an outline, before the checks made on all outlines together."""

    index: int  # the shape's position in the file, from 0
    label: str
    polygon: np.ndarray
    score: float | None
    group_id: Any


@dataclass
class _Unusable:
    """An object shape no outline could be made from: skipped, and named in a note."""

    index: int
    error: AnnotationError  # made by _shape_error: its text names the shape and the problem
    centre: tuple[float, float] | None  # rough position, to tell whether a crop loses a label


@dataclass
class _Shapes:
    """What a document's shapes hold, read one by one."""

    objects: list[_Outline] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # point and line shapes, by type: no outline
    unusable: list[_Unusable] = field(default_factory=list)
    notes: list[Text] = field(default_factory=list)


def _label_of(shape: dict, index: int, name: str) -> str:
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise _shape_error(BadLabel, name, _shape(index),
                           N_("has no label; give every outline a class name."))
    label = label.strip()
    if len(label) > MAX_LABEL_LENGTH or any(ord(c) < 32 for c in label):
        raise _shape_error(BadLabel, name, _shape(index),
                           N_("has an unusable label; use a short class name."))
    return label


def _type_of(shape: dict, index: int, name: str) -> str:
    shape_type = shape.get("shape_type") or "polygon"  # labelme 3.x wrote no shape_type
    if not isinstance(shape_type, str):
        raise _shape_error(UnknownShapeType, name, _shape(index), N_("has a shape_type that is not text."))
    return shape_type.lower()


def _rough_centre(points: Any) -> tuple[float, float] | None:
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return None
    pts = pts[np.isfinite(pts).all(axis=1)]
    return (float(pts[:, 0].mean()), float(pts[:, 1].mean())) if len(pts) else None


def _add_crop(read: _Shapes, polygon: np.ndarray, shape_type: str, shape: Text, name: str, width: int,
              height: int) -> None:
    """A crop: its bounding box within the image (a note when it was not drawn as a rectangle)."""
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    if shape_type != "rectangle":
        read.notes.append(N_("Crop #{n} is a {shape}; its bounding box is used.",
                             n=len(read.crops) + 1, shape=shape_type))
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise _shape_error(ShapeOutsideImage, name, shape, N_(
            "lies outside the {width}x{height} image; redraw the crop on the image.",
            width=width, height=height,
        ))
    read.crops.append(Crop(float(x0), float(y0), float(x1), float(y1)))


def _read_shapes(shapes: list, name: str, crop_label: str, width: int, height: int) -> _Shapes:
    """Every shape read on its own: crops, object outlines, and the shapes skipped or unusable."""
    read = _Shapes()
    crop_key = crop_label.casefold()
    for index, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise _shape_error(NotLabelMe, name, _shape(index), N_("is not an object."))
        label = _label_of(shape, index, name)
        shape_type = _type_of(shape, index, name)
        if shape_type in SKIPPED_TYPES:
            read.skipped[shape_type] = read.skipped.get(shape_type, 0) + 1
            continue
        is_crop = label.casefold() == crop_key
        try:
            polygon = _outline(shape, shape_type, index, name, label)
        except (BadPolygon, BadMask, UnknownShapeType) as error:
            if is_crop:  # a crop left out would make the whole image count as labelled
                raise
            read.unusable.append(_Unusable(index, error, _rough_centre(shape.get("points"))))
            continue
        if is_crop:
            _add_crop(read, polygon, shape_type, _shape(index, label), name, width, height)
        else:
            read.objects.append(_Outline(index, label, polygon, _score_of(shape), shape.get("group_id")))
    return read


# ------------------------------------------------------------------ the document


def parse_labelme(
    doc: Any,
    *,
    name: str = "annotation.json",
    base_dir: Path | None = None,
    files: Mapping[str, bytes] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    crop_label: str = "crop",
) -> AnnotatedImage:
    """An already-parsed LabelMe document -> AnnotatedImage (see read_labelme)."""
    _check_is_labelme(doc, name)
    loaded = _read_its_image(doc, name, base_dir, files, max_pixels, max_bytes)
    height, width = loaded.image.shape[:2]
    _check_declared_size(doc, width, height, name)
    nm_per_px = _scale_of(doc, name, loaded.nm_per_px)
    read = _read_shapes(doc["shapes"], name, crop_label, width, height)
    notes = [*loaded.notes, *read.notes]
    instances = _finish_objects(read.objects, name, width, height, notes, read.unusable)
    notes += _left_out_notes(read, instances)
    if read.crops:
        _check_crops(read.crops, instances, name, read.unusable)
    return AnnotatedImage(name=_image_name(doc, name), image=loaded.image, instances=instances,
                          crops=read.crops, nm_per_px=nm_per_px, notes=notes)


def _left_out_notes(read: _Shapes, instances: list[Instance]) -> list[Text]:
    """Notes on the shapes left out; when nothing usable is left, the first unusable shape's error is
    raised instead, as for a file holding only that shape."""
    read.unusable.sort(key=lambda u: u.index)  # some are found while reading shapes, some in bulk after
    notes = []
    if read.unusable:
        if not instances:
            raise read.unusable[0].error
        notes += _unusable_notes(read.unusable, read.crops)
    for kind, count in sorted(read.skipped.items()):
        notes.append(NP_(
            "{n} {kind} shape skipped: only outlines (polygon, rectangle, circle, mask) count.",
            "{n} {kind} shapes skipped: only outlines (polygon, rectangle, circle, mask) count.",
            n=count, kind=kind,
        ))
    return notes


def _unusable_note(u: _Unusable, crops: list[Crop]) -> Text:
    """The skipped shape's problem again, and whether a crop lost a label with it."""
    said = u.error.text
    assert isinstance(said, Text), "unusable shapes' errors are made by _shape_error"
    named = said.values["shape"]
    values = {"shape": Text(_OPENING[named.msgid], named.values), "problem": said.values["problem"]}
    if not crops:
        return N_("{shape} {problem} Skipped: with no crops the whole image counts as labelled, so that "
                  "object is unlabelled there (training would learn it as background).", **values)
    if u.centre is None:
        return N_("{shape} {problem} Skipped; if it lies inside a crop, that object is unlabelled there "
                  "(training would learn it as background).", **values)
    inside = [k for k, c in enumerate(crops, 1) if c.contains(*u.centre)]
    if not inside:
        return N_("{shape} {problem} Skipped; it lies outside every crop, so nothing is lost.", **values)
    return N_("{shape} {problem} Skipped: it lies inside crop #{crop}, so that object is unlabelled there "
              "(training would learn it as background).", crop=inside[0], **values)


def _unusable_notes(unusable: list[_Unusable], crops: list[Crop]) -> list[Text]:
    """One note per skipped shape (the first few), then one for the rest."""
    notes = [_unusable_note(u, crops) for u in unusable[:NOTED_ONE_BY_ONE]]
    rest = unusable[NOTED_ONE_BY_ONE:]
    if not rest:
        return notes
    numbers = [u.index + 1 for u in rest]
    inside = sum(1 for u in rest
                 if not crops or u.centre is None or any(c.contains(*u.centre) for c in crops))
    if len(rest) == 1 and inside:
        notes.append(N_("Shape #{number} could not be used either and was skipped; it may leave an object "
                        "unlabelled.", number=numbers[0]))
    elif len(rest) == 1:
        notes.append(N_("Shape #{number} could not be used either and was skipped.", number=numbers[0]))
    elif inside:
        notes.append(NP_(
            "{n} shape ({numbers}) could not be used either and was skipped; {inside} of them may leave an "
            "object unlabelled.",
            "{n} shapes ({numbers}) could not be used either and were skipped; {inside} of them may leave "
            "an object unlabelled.", n=len(numbers), numbers=_numbers(numbers), inside=inside,
        ))
    else:
        notes.append(NP_("{n} shape ({numbers}) could not be used either and was skipped.",
                         "{n} shapes ({numbers}) could not be used either and were skipped.",
                         n=len(numbers), numbers=_numbers(numbers)))
    return notes


# ------------------------------------------------------------------ all object outlines together


def _polygons_in(geom) -> Iterator[Any]:
    """Every polygon inside a geometry, through nested collections (make_valid can return a
    GeometryCollection holding a MultiPolygon and the lines of a spur)."""
    if geom.geom_type == "Polygon":
        yield geom
    for part in getattr(geom, "geoms", ()):
        yield from _polygons_in(part)


def _largest_part(geom) -> np.ndarray | None:
    parts = [g for g in _polygons_in(geom) if g.area > 0]
    if not parts:
        return None
    return np.asarray(max(parts, key=lambda g: g.area).exterior.coords)[:-1]


@dataclass
class _Batch:
    """The object outlines checked together: their polygons as repaired so far, and which are kept."""

    outlines: list[_Outline]
    unusable: list[_Unusable]  # where a dropped outline goes
    name: str
    polygons: list[np.ndarray] = field(init=False)
    keep: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.polygons = [o.polygon for o in self.outlines]
        self.keep = np.ones(len(self.outlines), dtype=bool)

    def drop(self, k: int, cls: type[AnnotationError], problem: Text, *, with_label: bool = True) -> None:
        outline = self.outlines[k]
        shape = _shape(outline.index, outline.label) if with_label else _shape(outline.index)
        self.keep[k] = False
        error = _shape_error(cls, self.name, shape, problem)
        self.unusable.append(_Unusable(outline.index, error, _rough_centre(self.polygons[k])))

    def number(self, k: int) -> int:
        return self.outlines[k].index + 1

    def kept(self) -> list[tuple[_Outline, np.ndarray]]:
        return [(o, p) for o, p, kept in zip(self.outlines, self.polygons, self.keep.tolist(), strict=True)
                if kept]


def _finish_objects(
    outlines: list[_Outline],
    name: str,
    width: int,
    height: int,
    notes: list[Text],
    unusable: list[_Unusable],
) -> list[Instance]:
    """Validity, area, position, duplicates and groups of all object outlines, checked in bulk.

    An outline with no usable area (or wholly outside the image) goes to `unusable` and is left out.
    """
    if not outlines:
        return []
    batch = _Batch(outlines, unusable, name)
    notes += _repair_crossings(batch)
    areas, centroids, _ = geometry.area_centroid_perimeter(batch.polygons)
    boxes = geometry.bboxes(batch.polygons)  # before clipping: a note says which reached past the border
    for k in np.nonzero((areas <= 1e-9) & batch.keep)[0].tolist():
        batch.drop(k, BadPolygon, N_("has zero area; redraw or delete it."))
    _drop_outside(batch, centroids, width, height)
    notes += _clip_to_image(batch, boxes, width, height)
    return _instances(batch.kept(), name, notes)


def _repair_crossings(batch: _Batch) -> list[Text]:
    """A self-crossing outline keeps its largest valid part; one with no area at all is dropped."""
    import shapely

    valid = shapely.is_valid(geometry.to_shapely(batch.polygons))
    crossing = []
    for k in np.nonzero(~valid)[0].tolist():
        fixed = _largest_part(shapely.make_valid(shapely.Polygon(batch.polygons[k])))
        if fixed is None:
            batch.drop(k, BadPolygon, N_("has zero area (its points lie on a line); redraw or delete it."))
            continue
        batch.polygons[k] = fixed
        crossing.append(batch.number(k))
    return _note_on_shapes(crossing, N_("Shape #{number} crosses itself; the largest part was kept."),
                           NP_("{n} shape ({numbers}) crosses itself; the largest part was kept.",
                               "{n} shapes ({numbers}) cross themselves; the largest part was kept."))


def _frames(width: int, height: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(the area the pixels cover, that area with half a pixel of slack: some tools put the image at
    [0, W] x [0, H] instead)."""
    fx0, fy0, fx1, fy1 = geometry.image_frame(width, height)  # pixel centres at integers
    return (fx0, fy0, fx1, fy1), (fx0 - 0.5, fy0 - 0.5, fx1 + 0.5, fy1 + 0.5)


def _drop_outside(batch: _Batch, centroids: np.ndarray, width: int, height: int) -> None:
    _, (sx0, sy0, sx1, sy1) = _frames(width, height)
    outside = (
        (centroids[:, 0] < sx0) | (centroids[:, 0] > sx1) | (centroids[:, 1] < sy0) | (centroids[:, 1] > sy1)
    )
    for k in np.nonzero(outside & batch.keep)[0].tolist():
        cx, cy = centroids[k]
        batch.drop(k, ShapeOutsideImage, N_(
            "lies outside the {width}x{height} image (centre at {x:.0f}, {y:.0f}). Was it drawn on another "
            "image?", width=width, height=height, x=float(cx), y=float(cy),
        ))


def _clip_to_image(batch: _Batch, boxes: np.ndarray, width: int, height: int) -> list[Text]:
    """Outlines reaching past the image are clipped to it (a note names them, past the slack)."""
    import shapely

    (fx0, fy0, fx1, fy1), (sx0, sy0, sx1, sy1) = _frames(width, height)
    over = (boxes[:, 0] < fx0) | (boxes[:, 1] < fy0) | (boxes[:, 2] > fx1) | (boxes[:, 3] > fy1)
    for k in np.nonzero(over & batch.keep)[0].tolist():
        clipped = _largest_part(shapely.clip_by_rect(shapely.Polygon(batch.polygons[k]), fx0, fy0, fx1, fy1))
        if clipped is None:
            batch.drop(k, ShapeOutsideImage, N_("lies outside the {width}x{height} image.", width=width,
                                                height=height), with_label=False)
            continue
        batch.polygons[k] = clipped
    noted = (boxes[:, 0] < sx0) | (boxes[:, 1] < sy0) | (boxes[:, 2] > sx1) | (boxes[:, 3] > sy1)
    past = [batch.number(k) for k in np.nonzero(noted & batch.keep)[0].tolist()]
    return _note_on_shapes(past, N_("Shape #{number} reached past the image border; clipped to it."),
                           NP_("{n} shape ({numbers}) reached past the image border; clipped to it.",
                               "{n} shapes ({numbers}) reached past the image border; clipped to it."))


def _instances(kept: list[tuple[_Outline, np.ndarray]], name: str, notes: list[Text]) -> list[Instance]:
    """One Instance per outline; an exact copy (a double paste, say) labels nothing new and is skipped,
    and the parts of a group become one object."""
    seen: dict[bytes, int] = {}  # label and outline -> the shape's index
    copies: list[tuple[int, int]] = []  # (shape number, the number of the shape it copies)
    groups: dict[Any, tuple[str, int]] = {}  # group_id -> (label, position in instances)
    instances: list[Instance] = []
    for outline, polygon in kept:
        key = outline.label.encode() + b"|" + (np.round(polygon, 6) + 0.0).tobytes()
        if key in seen:
            copies.append((outline.index + 1, seen[key] + 1))
            continue
        seen[key] = outline.index
        if outline.group_id is None:
            instances.append(Instance(outline.label, polygon, outline.score))
        elif (note := _add_grouped(instances, groups, outline, polygon, name)) is not None:
            notes.append(note)
    notes += _copy_notes(copies)
    return instances


def _add_grouped(instances: list[Instance], groups: dict[Any, tuple[str, int]], outline: _Outline,
                 polygon: np.ndarray, name: str) -> Text | None:
    """A shape with a group_id: the group's first part becomes an instance, a later part of the same
    label is joined to it (labelme's convention: their union). A note when the parts do not touch."""
    import shapely

    group_id = outline.group_id
    if not isinstance(group_id, int | str) or isinstance(group_id, bool):
        raise _shape_error(DuplicateId, name, _shape(outline.index),
                           N_("has a group_id that is neither a number nor text."))
    if group_id not in groups:
        groups[group_id] = (outline.label, len(instances))
        instances.append(Instance(outline.label, polygon, outline.score))
        return None
    other_label, pos = groups[group_id]
    if other_label != outline.label:
        raise _shape_error(DuplicateId, name, _shape(outline.index, outline.label), N_(
            "has group_id {group}, already used by a '{other}' shape. A group is one object of one class; "
            "give the shapes different group ids.", group=repr(group_id), other=other_label,
        ))
    merged = shapely.union_all([shapely.Polygon(instances[pos].polygon), shapely.Polygon(polygon)])
    old = instances[pos]
    instances[pos] = Instance(old.label, _largest_part(merged), old.score)
    if getattr(merged, "geoms", None) is not None and len(merged.geoms) > 1:
        return N_("Group {group} has separate parts; the largest is used.", group=repr(group_id))
    return None


def _copy_notes(copies: list[tuple[int, int]]) -> list[Text]:
    if len(copies) == 1:
        copy, original = copies[0]
        return [N_("Shape #{copy} is an exact copy of shape #{original}; the copy was skipped.",
                   copy=copy, original=original)]
    if not copies:
        return []
    numbers = [c for c, _ in copies]
    return [NP_("{n} shape ({numbers}) is an exact copy of an earlier shape; the copy was skipped.",
                "{n} shapes ({numbers}) are exact copies of earlier shapes; the copies were skipped.",
                n=len(numbers), numbers=_numbers(numbers))]


def _check_crops(crops: list[Crop], instances: list[Instance], name: str, unusable: list[_Unusable]) -> None:
    _, centroids, _ = geometry.area_centroid_perimeter([i.polygon for i in instances])
    for number, crop in enumerate(crops, 1):
        inside = (
            (
                (centroids[:, 0] >= crop.x0)
                & (centroids[:, 0] < crop.x1)
                & (centroids[:, 1] >= crop.y0)
                & (centroids[:, 1] < crop.y1)
            )
            if len(instances)
            else np.zeros(0, dtype=bool)
        )
        if not inside.any():
            for u in unusable:  # the crop is empty because its shapes were skipped: say why
                if u.centre is not None and crop.contains(*u.centre):
                    raise u.error
            raise EmptyCrop(N_(
                "'{name}': crop #{n} ({width:.0f}x{height:.0f} px at {x:.0f}, {y:.0f}) contains no labelled "
                "object. A crop must be fully labelled: outline its particles or delete the crop.",
                name=name, n=number, width=crop.width, height=crop.height, x=crop.x0, y=crop.y0,
            ))


def read_labelme(
    source: Path | str | bytes,
    *,
    name: str | None = None,
    base_dir: Path | None = None,
    files: Mapping[str, bytes] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    crop_label: str = "crop",
) -> AnnotatedImage:
    """Read a LabelMe file (path or bytes). For a path, `base_dir` defaults to the file's folder.

    Raises an AnnotationError subclass with a user-facing message on any bad input.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        name = name or path.name
        if base_dir is None:
            base_dir = path.parent
    name = name or "annotation.json"
    doc = _load_json(source, name, max_bytes)
    try:
        return parse_labelme(
            doc,
            name=name,
            base_dir=base_dir,
            files=files,
            max_pixels=max_pixels,
            max_bytes=max_bytes,
            crop_label=crop_label,
        )
    except RecursionError:  # JSON that parsed just under the limit can still nest too deep for us
        raise NotJson(N_("'{name}' nests too deeply to be a LabelMe file.", name=name)) from None


def _shape_dict(
    label: str, points: np.ndarray, shape_type: str = "polygon", score: float | None = None
) -> dict:
    return {
        "label": label,
        "points": np.asarray(points, dtype=np.float64).tolist(),
        "group_id": None,
        "description": "" if score is None else f"score={score:.4f}",
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
    }


def to_labelme(
    image: np.ndarray,
    instances: list[Instance],
    image_name: str,
    embed_image: bool = True,
    *,
    crops: list[Crop] | None = None,
    nm_per_px: float | None = None,
    crop_label: str = "crop",
) -> dict:
    """A LabelMe 5.x document; scores go to each shape's `description` as `score=0.9530`."""
    height, width = image.shape[:2]
    shapes = [
        _shape_dict(crop_label, np.array([[c.x0, c.y0], [c.x1, c.y1]]), "rectangle") for c in crops or []
    ]
    shapes += [_shape_dict(inst.label, inst.polygon, "polygon", inst.score) for inst in instances]
    doc: dict[str, Any] = {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": PurePosixPath(image_name.replace("\\", "/")).name,
        "imageData": base64.b64encode(encode_png(image)).decode("ascii") if embed_image else None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }
    if nm_per_px is not None:
        doc["nm_per_px"] = float(nm_per_px)  # labelme keeps unknown top-level keys when it re-saves
    return doc


def write_labelme(
    path: Path,
    image: np.ndarray,
    instances: list[Instance],
    image_name: str,
    embed_image: bool = True,
    **kwargs: Any,
) -> Path:
    """Write to_labelme(...) to `path` (UTF-8, labels kept readable)."""
    path = Path(path)
    doc = to_labelme(image, instances, image_name, embed_image, **kwargs)
    # compact: json's C encoder only runs without indent (5,000 shapes: ~10x faster)
    path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return path
