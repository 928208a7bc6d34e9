"""One exception class per bad-input problem; `str(error)` is the message for the user, `.code` is stable.

Messages say what is wrong and what to do about it, and never contain a traceback.
"""

from __future__ import annotations

from annotations.model import AnnotationError


class NotJson(AnnotationError):
    code = "not_json"


class NotLabelMe(AnnotationError):
    code = "not_labelme"


class EmptyFile(AnnotationError):
    code = "empty_file"


class ImageMissing(AnnotationError):
    code = "image_missing"


class ImageUndecodable(AnnotationError):
    code = "image_undecodable"


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


class TooManyPixels(AnnotationError):
    code = "too_many_pixels"


class FileTooLarge(AnnotationError):
    code = "file_too_large"


class UnsafeImagePath(AnnotationError):
    code = "unsafe_image_path"


class UnknownShapeType(AnnotationError):
    code = "unknown_shape_type"


class DuplicateId(AnnotationError):
    code = "duplicate_id"


class UnknownFileType(AnnotationError):
    code = "unknown_file_type"


class BadHeightMap(AnnotationError):
    code = "bad_height_map"


class BadScale(AnnotationError):
    code = "bad_scale"


class NothingToEvaluate(AnnotationError):
    code = "nothing_to_evaluate"


ALL_ERRORS: dict[str, type[AnnotationError]] = {
    cls.code: cls
    for cls in (
        NotJson,
        NotLabelMe,
        EmptyFile,
        ImageMissing,
        ImageUndecodable,
        ImageSizeMismatch,
        BadPolygon,
        BadMask,
        BadLabel,
        ShapeOutsideImage,
        EmptyCrop,
        TooManyPixels,
        FileTooLarge,
        UnsafeImagePath,
        UnknownShapeType,
        DuplicateId,
        UnknownFileType,
        BadHeightMap,
        BadScale,
        NothingToEvaluate,
    )
}
