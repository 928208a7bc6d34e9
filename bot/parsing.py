"""Numbers a user types or a button carries: accepted only when they fit where they go, so a
'/cancel 99999999999999999999' or a forged button gets an answer, never a database overflow."""

from __future__ import annotations

import math
import re
from typing import Any

from sqlalchemy import BigInteger

INT32_MAX = 2**31 - 1  # INTEGER columns: ids of jobs, models, uploads
INT64_MAX = 2**63 - 1  # BIGINT columns: Telegram's ids
_DECIMAL = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)")


def id_limit(column: Any) -> int:
    """The largest value the integer `column` (e.g. Job.id) can hold."""
    return INT64_MAX if isinstance(column.type, BigInteger) else INT32_MAX


def parse_id(text: str | None, column: Any) -> int | None:
    """'12' or '#12' -> 12 when it is a positive id `column` can hold; else None."""
    digits = (text or "").strip().removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:  # '²' and '٣' are digits too
        return None
    value = int(digits)
    return value if 1 <= value <= id_limit(column) else None


def parse_number(text: str | None, low: float, high: float) -> float | None:
    """A plain decimal ('0.3', '0,3') within [low, high]; None for anything else (1e999, nan, 1_0)."""
    text = (text or "").strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text.replace(",", "."))
    return value if math.isfinite(value) and low <= value <= high else None
