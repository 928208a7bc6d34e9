"""The image scale a user types (/scale 7.34, 'scale=0.5um' in a caption), in nm per pixel."""

from __future__ import annotations

import re

MIN_NM_PER_PX, MAX_NM_PER_PX = 1e-3, 1e7  # beyond these a typo, not a microscope
SCALE_RE = re.compile(r"scale\s*=\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?", re.IGNORECASE)


def parse_scale(text: str) -> float | None:
    """'7.34', '7,34nm', '0.5um' -> nm per pixel; None when not a number a microscope could give."""
    match = re.fullmatch(r"\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?(/px)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    if (match.group(2) or "nm").lower() in ("µm", "um"):
        value *= 1000.0
    return value if MIN_NM_PER_PX <= value < MAX_NM_PER_PX else None


def scale_from_caption(caption: str | None) -> float | None:
    match = SCALE_RE.search(caption or "")
    if not match:
        return None
    return parse_scale(match.group(1) + (match.group(2) or ""))
