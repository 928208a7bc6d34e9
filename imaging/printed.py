"""The field width or pixel size an info bar prints, read from the words OCR found in the band.

Instruments print the width of the whole image ("HFW 1.73 mm" in an FEI/Thermo cell with the value
under its name, Zeiss "Width = 7.520 µm", TESCAN "View field: 6.97 µm") or the pixel size ("Pixel
Size = 5.825 nm"). Either gives the scale without measuring a bar, and more precisely: instruments
round their bars (Zeiss bars imply 1.3-6 % less nm/px than the file's own metadata). A printed pixel
size may describe the acquisition before the file was downsampled; the caller checks it against the
bar. Magnification is not used: what "x 50 000" means depends on a display size each vendor (and
version) sets differently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imaging.labels import UNITS_NM, Word, parse_label

# the name of the field (lower case, ":" and "=" stripped) -> a width of the image, or one pixel
_KEYS = {"hfw": "width", "width": "width", "fov": "width", "vf": "width", "view field": "width",
         "field width": "width", "field of view": "width", "pixel size": "pixel"}


@dataclass(frozen=True)
class Printed:
    nm_per_px: float
    name: str  # "HFW", "Width", "Pixel size"
    value: float
    unit: str
    kind: str  # "width" | "pixel"
    confidence: float  # the OCR's, 0..1

    @property
    def text(self) -> str:
        """As printed, normalised: "HFW 1.73 mm"."""
        return f"{self.name} {self.value:g} {self.unit}"

    def shifted(self, power: int) -> Printed:
        """The value with its decimal point moved (OCR loses small points: "1.73" read "173")."""
        value = float(f"{self.value * 10.0**power:.6g}")
        return replace(self, nm_per_px=self.nm_per_px * 10.0**power, value=value)


def _same_line(a: Word, b: Word) -> bool:
    return abs((a.y + a.h / 2) - (b.y + b.h / 2)) < 0.5 * max(a.h, b.h)


def _value(words: list[Word]) -> tuple[float, str, float] | None:
    """(value, unit, confidence) from the first one or two value words ("1.73 mm", "7.520µm")."""
    for span in (2, 1):
        group = words[:span]
        if len(group) < span:
            continue
        text = " ".join(w.text for w in group)
        parsed = parse_label(text)
        if parsed is not None:
            return parsed[0], parsed[1], min(w.conf for w in group)
    return None


def _split(words: list[Word]) -> list[Word]:
    """Words with the separators taken out: "Width=7.520" -> "Width", "7.520"; "HFW:" -> "HFW"."""
    out = []
    for w in words:
        parts = [p for p in w.text.replace(":", "=").split("=") if p]
        out += [Word(p, w.conf, w.x, w.y, w.w, w.h) for p in parts]
    return out


def _keys(words: list[Word]) -> list[tuple[str, str, Word, int]]:
    """(field name, kind, the name's last word, its index) for each field name among the words."""
    found = []
    for i in range(len(words)):
        for span in (3, 2, 1):
            group = words[i : i + span]
            if len(group) < span or not all(_same_line(group[0], g) for g in group):
                continue
            name = " ".join(g.text.strip().lower() for g in group)
            if name in _KEYS:
                found.append((name, _KEYS[name], group[-1], i + span - 1))
                break
    return found


def read_printed(words: list[Word], image_width: int) -> Printed | None:
    """The scale a band's words print: the value right of a field's name on its line ("Width = 7.520
    µm") or under it in the next row of cells (FEI: "HFW" over "1.73 mm")."""
    words = _split(words)
    for name, kind, key, at in _keys(words):
        right = [w for w in words[at + 1 : at + 3] if _same_line(key, w)]
        below = sorted((w for w in words if key.y + key.h <= w.y <= key.y + 3 * key.h
                        and w.x < key.x + 1.5 * key.w and w.x + w.w > key.x - 0.5 * key.w),
                       key=lambda w: (w.y, w.x))  # the cell under the name
        below = [w for w in below if _same_line(below[0], w)] if below else []
        for candidates in (right, below):
            got = _value(candidates)
            if got is None:
                continue
            value, unit, conf = got
            nm = value * UNITS_NM[unit] / (image_width if kind == "width" else 1)
            label = name.upper() if name in ("hfw", "fov", "vf") else name.capitalize()
            return Printed(nm, label, value, unit, kind, min(conf, key.conf))
    return None
