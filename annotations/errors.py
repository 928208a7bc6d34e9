"""One exception class per problem with a LabelMe file; `str(error)` is the message for the user, `.code` is
stable. The image file's own problems are imaging.errors; ALL_ERRORS holds both.

Messages say what is wrong and what to do about it, and never contain a traceback.
"""

from __future__ import annotations

from annotations.model import AnnotationError
from core.errors import InputError
from imaging.errors import IMAGE_ERRORS


class NotJson(AnnotationError):
    code = "not_json"


class NotLabelMe(AnnotationError):
    code = "not_labelme"


class ImageSizeMismatch(AnnotationError):
    code = "image_size_mismatch"


class BadPolygon(AnnotationError):
    code = "bad_polygon"


class BadMask(AnnotationError):
    code = "bad_mask"


class BadLabel(AnnotationError):
    code = "bad_label"


class ShapeOutsideImage(AnnotationError):
    code = "shape_outside_image"


class EmptyCrop(AnnotationError):
    code = "empty_crop"


class UnsafeImagePath(AnnotationError):
    code = "unsafe_image_path"


class UnknownShapeType(AnnotationError):
    code = "unknown_shape_type"


class DuplicateId(AnnotationError):
    code = "duplicate_id"


class BadScale(AnnotationError):
    code = "bad_scale"


class NothingToEvaluate(AnnotationError):
    code = "nothing_to_evaluate"


ALL_ERRORS: dict[str, type[InputError]] = {
    cls.code: cls
    for cls in (
        *IMAGE_ERRORS,
        NotJson,
        NotLabelMe,
        ImageSizeMismatch,
        BadPolygon,
        BadMask,
        BadLabel,
        ShapeOutsideImage,
        EmptyCrop,
        UnsafeImagePath,
        UnknownShapeType,
        DuplicateId,
        BadScale,
        NothingToEvaluate,
    )
}
