"""Length units as files write them -> nanometres."""

from __future__ import annotations

_UNIT_NM = {
    "m": 1e9,
    "meter": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "nm": 1.0,
    "nanometer": 1.0,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
    "inch": 2.54e7,
}


def unit_factor(unit: str) -> float | None:
    # ImageJ writes the micro sign escaped ("\\u00B5m")
    return _UNIT_NM.get(unit.strip().lower().replace("\\u00b5", "µ"))
