"""The image scale a user types (/scale 7.34, 'scale=0.5um' in a caption), in nm per pixel."""

from __future__ import annotations

import re

SCALE_RE = re.compile(r"scale\s*=\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?", re.IGNORECASE)


def parse_scale(text: str) -> float | None:
    """'7.34', '7,34nm', '0.5um' -> nm per pixel; None when not a positive number."""
    match = re.fullmatch(r"\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?(/px)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    if (match.group(2) or "nm").lower() in ("µm", "um"):
        value *= 1000.0
    return value if 0 < value < 1e7 else None


def scale_from_caption(caption: str | None) -> float | None:
    match = SCALE_RE.search(caption or "")
    if not match:
        return None
    return parse_scale(match.group(1) + (match.group(2) or ""))
