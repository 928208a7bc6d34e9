"""One exception class per problem with an image file; `str(error)` is the message for the user,
`.code` is stable. Messages say what is wrong and what to do about it, never a traceback."""

from __future__ import annotations

from core.errors import InputError


class ImageError(InputError):
    """An image file (or its bytes) that cannot be used."""

    code = "bad_image"


class EmptyFile(ImageError):
    code = "empty_file"


class ImageMissing(ImageError):
    code = "image_missing"


class ImageUndecodable(ImageError):
    code = "image_undecodable"


class TooManyPixels(ImageError):
    code = "too_many_pixels"


class FileTooLarge(ImageError):
    code = "file_too_large"


class UnknownFileType(ImageError):
    code = "unknown_file_type"


class BadHeightMap(ImageError):
    code = "bad_height_map"


IMAGE_ERRORS: tuple[type[ImageError], ...] = (EmptyFile, ImageMissing, ImageUndecodable, TooManyPixels,
                                              FileTooLarge, UnknownFileType, BadHeightMap)
