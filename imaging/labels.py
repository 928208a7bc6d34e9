"""Scale-bar labels and printed values as OCR gives them: "200 nm", "0.5 um", "lum" (1 µm), "S00 pm"
(500 µm); the unit in nm and whether the number is one a bar is labelled with."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import NamedTuple

UNITS_NM = {"nm": 1.0, "µm": 1e3, "mm": 1e6, "Å": 0.1}
# Tesseract's English model reads the micro sign as u, p, y, yu, ju, j, w, H, fi ...; and "1" as l or I
_MICRO_READS = {"u", "µ", "p", "y", "yu", "ju", "j", "ji", "w", "H", "fi", "U", "pu", "jj", "lu", "Lu", "Li"}
_LABEL = re.compile(r"([0-9lI|TOoS.,]*[0-9lI|TS][0-9lIOoS.,]*)\s*([A-Za-zµμÅ]{1,4})")
_NUM_FIX = str.maketrans({"l": "1", "I": "1", "|": "1", "T": "1", "O": "0", "o": "0", "S": "5", ",": "."})


class Word(NamedTuple):
    """A word as OCR read it: text, confidence 0..1, and its box in the page it came from."""

    text: str
    conf: float
    x: int = 0
    y: int = 0
    w: int = 0
    h: int = 0


def _unit(text: str) -> tuple[str, bool] | None:
    """(unit, read exactly) of a label's unit as OCR gave it; None when it is no length unit."""
    t = text.replace("μ", "µ")
    exact = {"nm": "nm", "µm": "µm", "um": "µm", "mm": "mm", "Å": "Å"}
    if t in exact:
        return exact[t], True
    if t in ("nrn", "rim", "nn"):
        return "nm", False
    if t.endswith("rn"):  # "rn" is how a small m often reads: "urn" = µm
        t = t[:-2] + "m"
    if t == "mm":
        return "mm", False
    if t.endswith("m") and t[:-1] in _MICRO_READS:
        return "µm", False
    return None


def nice(value: float) -> bool:
    """1, 2, 2.5, 3 ... 9 x 10^k: what scale bars are labelled with."""
    if value <= 0:
        return False
    mantissa = value / 10 ** math.floor(math.log10(value))
    return any(abs(mantissa - m) < 1e-6 for m in (1, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))


def find_label(words: list[Word]) -> tuple[float, str, bool, float] | None:
    """(value, unit, read exactly, confidence) of the scale-bar label among a line's words: one word
    ("300um") or two ("300", "um"), the first with a value bars are labelled with (1, 2, 2.5, 5 ...
    x 10^k) or else the first at all. A value after "=" or ":" is another field's (WD = 2.8 mm,
    Aperture Size = 30.00 µm), never the bar's; so is Hitachi's unnamed working distance "14.9mm"
    beside a "2.00um" bar, which the nice value tells apart."""
    got = find_label_words(words)
    return got[0] if got else None


def find_label_words(words: list[Word]) -> tuple[tuple[float, str, bool, float], list[Word]] | None:
    """find_label() and the words it read the label from."""
    found = list(_labels(words))
    return next((f for f in found if nice(f[0][0])), found[0] if found else None)


def _labels(words: list[Word]) -> Iterator[tuple[tuple[float, str, bool, float], list[Word]]]:
    for k in range(len(words)):
        before = words[k - 1][0] if k else ""
        if before.endswith(("=", ":")) or words[k][0].startswith(("=", ":")) or "=" in words[k][0]:
            continue
        for span in (1, 2):
            group = words[k : k + span]
            if len(group) < span:
                continue
            parsed = parse_label(" ".join(g.text for g in group).rstrip(".,;:'\"“”"))
            if parsed is not None:
                yield (*parsed, min(g.conf for g in group)), group
                break


def parse_label(text: str) -> tuple[float, str, bool] | None:
    """(value, unit, read exactly) of a scale-bar label as OCR gives it: "200 nm", "0.5 um", "lum"..."""
    cleaned = text.strip().replace(" .", ".").replace(". ", ".")
    for candidate in (cleaned, cleaned.replace(" ", "")):
        m = _LABEL.fullmatch(candidate)
        unit = _unit(m.group(2)) if m else None
        if unit is None:
            continue
        number = m.group(1).translate(_NUM_FIX).strip(".")
        try:
            value = float(number)
        except ValueError:
            continue
        exact = unit[1] and number == m.group(1).replace(",", ".")
        return value, unit[0], exact
    return None
