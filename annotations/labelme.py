"""LabelMe JSON (3.x .. 5.x) in and out.

Reading checks everything a user can get wrong and raises one typed AnnotationError per problem (see
annotations.errors); nothing is written anywhere. An object shape no outline can be made from (too few
points, no area, a broken mask, outside the image, an unknown type) is skipped with a note naming it,
as long as something usable is left: one slip among hundreds of traced outlines does not refuse the
file. Crops are never skipped (without one the whole image would count as labelled).

The image comes from `imageData` (base64) or from `imagePath`, resolved only inside `base_dir` or in
the `files` the user sent along: no absolute paths, no '..', no symlink leading out.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
from imaging.errors import ImageMissing, ImageUndecodable
from imaging.images import encode_png, read_image, sniff_kind
from imaging.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, read_limited

LABELME_VERSION = "5.5.0"
SKIPPED_TYPES = {"point", "points", "line", "linestrip"}
OBJECT_TYPES = {"polygon", "rectangle", "circle", "ellipse", "mask", "oriented_rectangle"}
MAX_LABEL_LENGTH = 100
NOTED_ONE_BY_ONE = 5  # unusable shapes named in a note each; the rest share one note
_SCORE = re.compile(r"score\s*[=:]\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)")


def _load_json(source: Path | str | bytes, name: str, max_bytes: int) -> Any:
    data = read_limited(
        source, name, max_bytes, what="File",
        advice="Save it without image data (and send the image separately) or split the image.",
    )
    if not data.strip():
        raise NotJson(f"'{name}' is empty; send the .json file that LabelMe saved.")
    if sniff_kind(data[:64]) in ("png", "jpeg", "bmp", "tiff"):
        raise NotJson(
            f"'{name}' is an image, not a LabelMe .json file. Outline the particles in LabelMe and send "
            "the .json it saves."
        )
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise NotJson(
            f"'{name}' is not UTF-8 text; send the .json file exactly as LabelMe saved it."
        ) from None
    except json.JSONDecodeError as error:
        raise NotJson(
            f"'{name}' is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "send the .json file exactly as LabelMe saved it."
        ) from None
    except RecursionError:
        raise NotJson(f"'{name}' nests too deeply to be a LabelMe file.") from None


def _safe_relative(image_path: str, name: str) -> PurePosixPath:
    normalized = image_path.replace("\\", "/")
    if (
        normalized.startswith("/")
        or re.match(r"^[A-Za-z]:", normalized)
        or normalized.startswith("~")
        or "\x00" in normalized
    ):
        raise UnsafeImagePath(
            f"'{name}': imagePath '{image_path}' is absolute. Embed the image (LabelMe: File > Save "
            "With Image Data) or send the image file together with the JSON."
        )
    rel = PurePosixPath(normalized)
    if ".." in rel.parts:
        raise UnsafeImagePath(
            f"'{name}': imagePath '{image_path}' points outside the folder. Embed the image (LabelMe: "
            "File > Save With Image Data) or put the image next to the JSON."
        )
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
            raise UnsafeImagePath(
                f"'{name}': imagePath '{image_path}' leads outside the folder (through a link). "
                "Embed the image or put the file itself next to the JSON."
            )
        if candidate.is_file():
            return candidate, str(rel)
    raise ImageMissing(
        f"'{name}' does not embed its image and '{image_path}' was not sent along. Send the image file "
        "too, or save the JSON in LabelMe with File > Save With Image Data."
    )


def _points(shape: dict, index: int, name: str) -> np.ndarray:
    raw = shape.get("points")
    if not isinstance(raw, list):
        raise NotLabelMe(f"'{name}': shape #{index + 1} has no list of points.")
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadPolygon(
            f"'{name}': shape #{index + 1} ('{shape.get('label')}') has points that are not number pairs."
        ) from None
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise BadPolygon(
            f"'{name}': shape #{index + 1} ('{shape.get('label')}') has points that are not [x, y] pairs."
        )
    if not np.isfinite(pts).all():
        raise BadPolygon(f"'{name}': shape #{index + 1} ('{shape.get('label')}') has NaN or infinite points.")
    return pts


def _decode_mask(shape: dict, pts: np.ndarray, index: int, name: str, label: str) -> np.ndarray:
    import cv2

    encoded = shape.get("mask")
    if not isinstance(encoded, str) or not encoded:
        raise BadMask(f"'{name}': mask shape #{index + 1} ('{label}') has no mask data.")
    try:
        raw = base64.b64decode(encoded, validate=False)
        buf = np.frombuffer(raw, dtype=np.uint8)
        mask = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except (binascii.Error, ValueError, cv2.error):
        mask = None
    if mask is None:
        raise BadMask(f"'{name}': mask shape #{index + 1} ('{label}') holds no readable PNG mask.")
    if mask.ndim == 3:
        mask = mask[..., 0] if mask.shape[2] < 4 else mask[..., 3]
    if len(pts) != 2:
        raise BadMask(f"'{name}': mask shape #{index + 1} ('{label}') needs 2 corner points, has {len(pts)}.")
    (x1, y1), (x2, y2) = pts.astype(int)
    if mask.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise BadMask(
            f"'{name}': mask shape #{index + 1} ('{label}') is {mask.shape[1]}x{mask.shape[0]} px but its "
            f"box is {x2 - x1 + 1}x{y2 - y1 + 1} px."
        )
    polygon = geometry.mask_to_polygon(mask > 0, offset=(x1, y1))
    if polygon is None:
        raise BadMask(f"'{name}': mask shape #{index + 1} ('{label}') is empty.")
    return polygon


def _shape_polygon(
    shape: dict, shape_type: str, pts: np.ndarray, index: int, name: str, label: str
) -> np.ndarray:
    where = f"'{name}': shape #{index + 1} ('{label}', {shape_type})"
    if shape_type == "mask":
        return _decode_mask(shape, pts, index, name, label)
    if shape_type == "rectangle":
        if len(pts) == 4:  # some writers store all four corners
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
        elif len(pts) == 2:
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        else:
            raise BadPolygon(f"{where} needs 2 corner points, has {len(pts)}.")
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise BadPolygon(f"{where} has zero width or height; redraw it.")
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    if shape_type == "circle":
        if len(pts) != 2:
            raise BadPolygon(f"{where} needs a centre and a rim point, has {len(pts)} points.")
        r = float(np.hypot(*(pts[1] - pts[0])))
        if r <= 0:
            raise BadPolygon(f"{where} has zero radius; redraw it.")
        return geometry.circle_polygon(pts[0, 0], pts[0, 1], r)
    if shape_type == "ellipse" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts
        if abs(x1 - x0) <= 0 or abs(y1 - y0) <= 0:
            raise BadPolygon(f"{where} has zero width or height; redraw it.")
        return geometry.ellipse_polygon(x0, y0, x1, y1)
    # polygon, oriented_rectangle, ellipse stored as a polygon
    if len(pts) < 3:
        raise BadPolygon(
            f"{where} has {len(pts)} point(s); an outline needs at least 3. Redraw or delete it."
        )
    if len(pts) > 3 and abs(pts[0, 0] - pts[-1, 0]) < 1e-9 and abs(pts[0, 1] - pts[-1, 1]) < 1e-9:
        pts = pts[:-1]  # closed ring written with the first point repeated
    return pts


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
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise NotLabelMe(
            f"'{name}' is JSON but not a LabelMe annotation (no 'shapes' list). Open the image in LabelMe, "
            "outline the particles and save; send that .json file."
        )
    if "imageData" not in doc and "imagePath" not in doc:
        raise NotLabelMe(f"'{name}' is not a LabelMe annotation (neither 'imageData' nor 'imagePath').")
    notes: list[str] = []

    # -- the image
    image_data = doc.get("imageData")
    image_path = doc.get("imagePath")
    image_name = PurePosixPath(str(image_path or name).replace("\\", "/")).name or name
    if image_data:
        if not isinstance(image_data, str):
            raise ImageUndecodable(f"'{name}': imageData is not base64 text.")
        try:
            image_bytes = base64.b64decode(image_data, validate=False)
        except (binascii.Error, ValueError):
            raise ImageUndecodable(f"'{name}': the embedded image (imageData) is not valid base64.") from None
        loaded = read_image(
            image_bytes, name=f"{name} (embedded image)", max_pixels=max_pixels, max_bytes=max_bytes,
            info_bar=True,  # a scale from its scale bar when the file has none
        )
    elif isinstance(image_path, str) and image_path.strip():
        source, _found = _find_image(image_path, name, base_dir, files)
        loaded = read_image(source, name=image_name, max_pixels=max_pixels, max_bytes=max_bytes,
                            info_bar=True)
    else:
        raise ImageMissing(
            f"'{name}' has neither embedded image data nor an image path. Save it in LabelMe with "
            "File > Save With Image Data."
        )
    notes.extend(loaded.notes)
    image = loaded.image
    height, width = image.shape[:2]
    declared = (doc.get("imageHeight"), doc.get("imageWidth"))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in declared):
        if (int(declared[0]), int(declared[1])) != (height, width):
            raise ImageSizeMismatch(
                f"'{name}' says the image is {int(declared[1])}x{int(declared[0])} px but the image is "
                f"{width}x{height} px. Is it the right image? Re-open and save it in LabelMe."
            )

    # -- scale: our own writer stores it; a value in the image metadata otherwise
    nm_per_px = loaded.nm_per_px
    declared_scale = doc.get("nm_per_px")
    if declared_scale is not None:
        if (
            not isinstance(declared_scale, int | float)
            or isinstance(declared_scale, bool)
            or not math.isfinite(declared_scale)
            or declared_scale <= 0
        ):
            raise BadScale(f"'{name}': nm_per_px must be a positive number, not {declared_scale!r}.")
        nm_per_px = float(declared_scale)

    # -- shapes
    crop_key = crop_label.casefold()
    raw: list[tuple[int, str, np.ndarray, float | None, Any]] = []
    crops: list[Crop] = []
    skipped: dict[str, int] = {}
    unusable: list[_Unusable] = []
    for index, shape in enumerate(doc["shapes"]):
        if not isinstance(shape, dict):
            raise NotLabelMe(f"'{name}': shape #{index + 1} is not an object.")
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise BadLabel(f"'{name}': shape #{index + 1} has no label; give every outline a class name.")
        label = label.strip()
        if len(label) > MAX_LABEL_LENGTH or any(ord(c) < 32 for c in label):
            raise BadLabel(f"'{name}': shape #{index + 1} has an unusable label; use a short class name.")
        shape_type = shape.get("shape_type") or "polygon"  # labelme 3.x wrote no shape_type
        if not isinstance(shape_type, str):
            raise UnknownShapeType(f"'{name}': shape #{index + 1} has a shape_type that is not text.")
        shape_type = shape_type.lower()
        if shape_type in SKIPPED_TYPES:
            skipped[shape_type] = skipped.get(shape_type, 0) + 1
            continue
        is_crop = label.casefold() == crop_key
        try:
            if shape_type not in OBJECT_TYPES:
                raise UnknownShapeType(
                    f"'{name}': shape #{index + 1} ('{label}') has unknown type '{shape_type}'. Use "
                    "polygons, rectangles, circles or masks."
                )
            pts = _points(shape, index, name)
            polygon = _shape_polygon(shape, shape_type, pts, index, name, label)
        except (BadPolygon, BadMask, UnknownShapeType) as error:
            if is_crop:  # a crop left out would make the whole image count as labelled
                raise
            unusable.append(_Unusable(index, label, error, _rough_centre(shape.get("points"))))
            continue
        where = f"'{name}': shape #{index + 1} ('{label}')"

        if is_crop:
            x0, y0 = polygon.min(axis=0)
            x1, y1 = polygon.max(axis=0)
            if shape_type != "rectangle":
                notes.append(f"Crop #{len(crops) + 1} is a {shape_type}; its bounding box is used.")
            x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                raise ShapeOutsideImage(
                    f"{where} lies outside the {width}x{height} image; redraw the crop on the image."
                )
            crops.append(Crop(float(x0), float(y0), float(x1), float(y1)))
            continue

        raw.append((index, label, polygon, _score_of(shape), shape.get("group_id")))

    instances = _finish_objects(raw, name, width, height, notes, unusable)
    unusable.sort(key=lambda u: u.index)  # some are found while reading shapes, some in bulk after
    if unusable:
        if not instances:  # nothing usable left: refuse, as for a file holding only that shape
            raise unusable[0].error
        notes.extend(_unusable_notes(unusable, crops, name))
    for kind, count in sorted(skipped.items()):
        notes.append(
            f"{count} {kind} shape(s) skipped: only outlines (polygon, rectangle, circle, mask) count."
        )

    if crops:
        _check_crops(crops, instances, name, unusable)
    return AnnotatedImage(
        name=image_name, image=image, instances=instances, crops=crops, nm_per_px=nm_per_px, notes=notes
    )


def _shape_list(numbers: list[int], show: int = 8) -> str:
    """'Shape #3' / 'Shapes #3, #7 and 12 more' for one short note instead of thousands."""
    if len(numbers) == 1:
        return f"Shape #{numbers[0]}"
    shown = ", ".join(f"#{n}" for n in numbers[:show])
    more = f" and {len(numbers) - show} more" if len(numbers) > show else ""
    return f"{len(numbers)} shapes ({shown}{more})"


@dataclass
class _Unusable:
    """An object shape no outline could be made from: skipped, and named in a note."""

    index: int
    label: str
    error: AnnotationError
    centre: tuple[float, float] | None  # rough position, to tell whether a crop loses a label


def _rough_centre(points: Any) -> tuple[float, float] | None:
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return None
    pts = pts[np.isfinite(pts).all(axis=1)]
    return (float(pts[:, 0].mean()), float(pts[:, 1].mean())) if len(pts) else None


def _unusable_notes(unusable: list[_Unusable], crops: list[Crop], name: str) -> list[str]:
    """One note per skipped shape (the first few): what is wrong and whether a crop lost a label."""
    lost = "that object is unlabelled there (training would learn it as background)"

    def where(u: _Unusable) -> str:
        if not crops:
            return f": with no crops the whole image counts as labelled, so {lost}"
        if u.centre is None:
            return f"; if it lies inside a crop, {lost}"
        inside = [k for k, c in enumerate(crops, 1) if c.contains(*u.centre)]
        if not inside:
            return "; it lies outside every crop, so nothing is lost"
        return f": it lies inside crop #{inside[0]}, so {lost}"

    notes = []
    for u in unusable[:NOTED_ONE_BY_ONE]:
        text = str(u.error).removeprefix(f"'{name}': ")
        notes.append(f"{text[:1].upper()}{text[1:]} Skipped{where(u)}.")
    rest = unusable[NOTED_ONE_BY_ONE:]
    if rest:
        inside = sum(
            1 for u in rest if not crops or u.centre is None or any(c.contains(*u.centre) for c in crops)
        )
        notes.append(
            f"{_shape_list([u.index + 1 for u in rest])} could not be used either and were skipped"
            + (f"; {inside} of them may leave an object unlabelled." if inside else ".")
        )
    return notes


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


def _finish_objects(
    raw: list[tuple[int, str, np.ndarray, float | None, Any]],
    name: str,
    width: int,
    height: int,
    notes: list[str],
    unusable: list[_Unusable],
) -> list[Instance]:
    """Validity, area, position, duplicates and groups of all object outlines, checked in bulk.

    An outline with no usable area (or wholly outside the image) goes to `unusable` and is left out.
    """
    import shapely

    if not raw:
        return []
    polys = [r[2] for r in raw]
    keep = np.ones(len(raw), dtype=bool)

    def drop(k: int, error: AnnotationError) -> None:
        keep[k] = False
        unusable.append(_Unusable(raw[k][0], raw[k][1], error, _rough_centre(polys[k])))

    valid = shapely.is_valid(geometry.to_shapely(polys))
    crossing = []
    for k in np.nonzero(~valid)[0].tolist():
        index, label = raw[k][0], raw[k][1]
        fixed = _largest_part(shapely.make_valid(shapely.Polygon(polys[k])))
        if fixed is None:
            drop(k, BadPolygon(
                f"'{name}': shape #{index + 1} ('{label}') has zero area (its points lie on a line); "
                "redraw or delete it."
            ))
            continue
        polys[k] = fixed
        crossing.append(index + 1)
    if crossing:
        verb = "crosses itself" if len(crossing) == 1 else "cross themselves"
        notes.append(f"{_shape_list(crossing)} {verb}; the largest part was kept.")
    areas, centroids, _ = geometry.area_centroid_perimeter(polys)
    boxes = geometry.bboxes(polys)
    for k in np.nonzero((areas <= 1e-9) & keep)[0].tolist():
        what = f"'{name}': shape #{raw[k][0] + 1} ('{raw[k][1]}')"
        drop(k, BadPolygon(f"{what} has zero area; redraw or delete it."))
    fx0, fy0, fx1, fy1 = geometry.image_frame(width, height)  # pixel centres at integers
    # half a pixel of slack: some tools put the image at [0, W] x [0, H] instead
    sx0, sy0, sx1, sy1 = fx0 - 0.5, fy0 - 0.5, fx1 + 0.5, fy1 + 0.5
    outside = (
        (centroids[:, 0] < sx0) | (centroids[:, 0] > sx1) | (centroids[:, 1] < sy0) | (centroids[:, 1] > sy1)
    )
    for k in np.nonzero(outside & keep)[0].tolist():
        cx, cy = centroids[k]
        drop(k, ShapeOutsideImage(
            f"'{name}': shape #{raw[k][0] + 1} ('{raw[k][1]}') lies outside the {width}x{height} image "
            f"(centre at {cx:.0f}, {cy:.0f}). Was it drawn on another image?"
        ))
    over = (boxes[:, 0] < fx0) | (boxes[:, 1] < fy0) | (boxes[:, 2] > fx1) | (boxes[:, 3] > fy1)
    for k in np.nonzero(over & keep)[0].tolist():
        clipped = _largest_part(shapely.clip_by_rect(shapely.Polygon(polys[k]), fx0, fy0, fx1, fy1))
        if clipped is None:
            what = f"'{name}': shape #{raw[k][0] + 1}"
            drop(k, ShapeOutsideImage(f"{what} lies outside the {width}x{height} image."))
            continue
        polys[k] = clipped
    noted = (boxes[:, 0] < sx0) | (boxes[:, 1] < sy0) | (boxes[:, 2] > sx1) | (boxes[:, 3] > sy1)
    if (noted & keep).any():
        clipped_ids = [raw[k][0] + 1 for k in np.nonzero(noted & keep)[0].tolist()]
        notes.append(f"{_shape_list(clipped_ids)} reached past the image border; clipped to it.")
    raw = [r for r, kept in zip(raw, keep.tolist(), strict=True) if kept]
    polys = [p for p, kept in zip(polys, keep.tolist(), strict=True) if kept]

    seen: dict[bytes, int] = {}
    copies: list[tuple[int, int]] = []  # (shape number, the number of the shape it copies)
    groups: dict[Any, tuple[str, int]] = {}  # group_id -> (label, position in instances)
    instances: list[Instance] = []
    for k, (index, label, _, score, group_id) in enumerate(raw):
        polygon = polys[k]
        key = label.encode() + b"|" + (np.round(polygon, 6) + 0.0).tobytes()
        if key in seen:  # a copy (a double paste, say) labels nothing new: keep the first
            copies.append((index + 1, seen[key] + 1))
            continue
        seen[key] = index
        if group_id is not None:
            if not isinstance(group_id, int | str) or isinstance(group_id, bool):
                raise DuplicateId(
                    f"'{name}': shape #{index + 1} has a group_id that is neither a number nor text."
                )
            if group_id in groups:
                other_label, pos = groups[group_id]
                if other_label != label:
                    raise DuplicateId(
                        f"'{name}': shape #{index + 1} ('{label}') has group_id {group_id!r}, already used "
                        f"by a '{other_label}' shape. A group is one object of one class; give the shapes "
                        "different group ids."
                    )
                # same label and group: parts of one object (labelme's convention) -> their union
                merged = shapely.union_all(
                    [shapely.Polygon(instances[pos].polygon), shapely.Polygon(polygon)]
                )
                if getattr(merged, "geoms", None) is not None and len(merged.geoms) > 1:
                    notes.append(f"Group {group_id!r} has separate parts; the largest is used.")
                old = instances[pos]
                instances[pos] = Instance(old.label, _largest_part(merged), old.score)
                continue
            groups[group_id] = (label, len(instances))
        instances.append(Instance(label, polygon, score))
    if len(copies) == 1:
        copy, original = copies[0]
        notes.append(f"Shape #{copy} is an exact copy of shape #{original}; the copy was skipped.")
    elif copies:
        notes.append(f"{_shape_list([c for c, _ in copies])} are exact copies of earlier shapes; "
                     "the copies were skipped.")
    return instances


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
            raise EmptyCrop(
                f"'{name}': crop #{number} ({crop.width:.0f}x{crop.height:.0f} px at {crop.x0:.0f}, "
                f"{crop.y0:.0f}) contains no labelled object. A crop must be fully labelled: outline its "
                "particles or delete the crop."
            )


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
        raise NotJson(f"'{name}' nests too deeply to be a LabelMe file.") from None


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
