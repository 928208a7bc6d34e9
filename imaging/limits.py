"""How much a user's file may hold: bytes checked before reading, pixels from the header before any
decoding (decompression bombs)."""

from __future__ import annotations

from pathlib import Path

from core.i18n import N_, Text
from imaging.errors import FileTooLarge, ImageMissing, ImageUndecodable, TooManyPixels

DEFAULT_MAX_PIXELS = 120_000_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024


def read_limited(source: Path | str | bytes, name: str | Text, max_bytes: int, *, what: Text | None = None,
                 advice: Text | None = None) -> bytes:
    """The bytes of a path or buffer; a missing file or one over `max_bytes` (checked before
    reading) raises the user-facing error, with `advice` on what to do instead. `name` is the file as
    messages show it."""
    what = what or N_("File")
    advice = advice or N_("Send a smaller file.")

    def too_large(size: int) -> FileTooLarge:
        return FileTooLarge(N_("'{name}' is {size:.1f} MB; the limit is {limit:.0f} MB. {advice}",
                               name=name, size=size / 2**20, limit=max_bytes / 2**20, advice=advice))

    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError:
            raise ImageMissing(N_("{what} '{name}' was not found.", what=what, name=name)) from None
        if size > max_bytes:
            raise too_large(size)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageMissing(N_("{what} '{name}' cannot be read ({reason}).", what=what, name=name,
                                  reason=str(error.strerror))) from None
    if len(data) > max_bytes:
        raise too_large(len(data))
    return data


def check_pixels(width: int, height: int, max_pixels: int, name: str | Text) -> None:
    if width <= 0 or height <= 0:
        raise ImageUndecodable(N_("'{name}' has an empty image ({width}x{height} pixels).",
                                  name=name, width=int(width), height=int(height)))
    if width * height > max_pixels:
        raise TooManyPixels(N_(
            "'{name}' is {width}x{height} = {mpx:.0f} Mpx; the limit is {limit:.0f} Mpx. "
            "Crop or downscale the image.",
            name=name, width=int(width), height=int(height), mpx=width * height / 1e6, limit=max_pixels / 1e6,
        ))
