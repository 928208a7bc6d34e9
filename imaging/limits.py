"""How much a user's file may hold: bytes checked before reading, pixels from the header before any
decoding (decompression bombs)."""

from __future__ import annotations

from pathlib import Path

from imaging.errors import FileTooLarge, ImageMissing, ImageUndecodable, TooManyPixels

DEFAULT_MAX_PIXELS = 120_000_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024


def read_limited(source: Path | str | bytes, name: str, max_bytes: int, *, what: str = "File",
                 advice: str = "Send a smaller file.") -> bytes:
    """The bytes of a path or buffer; a missing file or one over `max_bytes` (checked before
    reading) raises the user-facing error, with `advice` on what to do instead."""

    def too_large(size: int) -> FileTooLarge:
        limit = max_bytes / 2**20
        return FileTooLarge(f"'{name}' is {size / 2**20:.1f} MB; the limit is {limit:.0f} MB. {advice}")

    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError:
            raise ImageMissing(f"{what} '{name}' was not found.") from None
        if size > max_bytes:
            raise too_large(size)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageMissing(f"{what} '{name}' cannot be read ({error.strerror}).") from None
    if len(data) > max_bytes:
        raise too_large(len(data))
    return data


def check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageUndecodable(f"'{name}' has an empty image ({width}x{height} pixels).")
    if width * height > max_pixels:
        raise TooManyPixels(
            f"'{name}' is {width}x{height} = {width * height / 1e6:.0f} Mpx; the limit is "
            f"{max_pixels / 1e6:.0f} Mpx. Crop or downscale the image."
        )
