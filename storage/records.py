"""Frozen dataclasses kept in a JSON column (a job's params, a notice's payload).

`to_json()` writes one; `from_json()` reads one back and checks it: every field's type, no
unknown key, no missing required field. A misspelt key or a row the code cannot use is then one
clear RecordError where the row is read, never a KeyError deep inside a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import ConfigDict, TypeAdapter, ValidationError


class RecordError(ValueError):
    """A stored JSON value does not fit its record type; str() names the fields and why."""


@dataclass(frozen=True, kw_only=True)
class JsonRecord:
    """Base of the records: subclasses are `@dataclass(frozen=True, kw_only=True)` with typed fields
    (defaults for the optional ones) and may check values in __post_init__ (raise ValueError)."""

    # read by pydantic when it validates this (stdlib) dataclass: a key we do not know is an error
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists), every field written, defaults included; checked
        to read back (a field given a value of the wrong type is a RecordError here, not later)."""
        dumped: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json", warnings=False)
        type(self).from_json(dumped)
        return dumped

    @classmethod
    def from_json(cls, raw: object) -> Self:
        """The record in a stored JSON value; RecordError when it does not fit."""
        try:
            record: Self = _adapter(cls).validate_python(raw)
        except ValidationError as error:
            raise RecordError(f"{cls.__name__}: {describe(error)}") from None
        return record


_ADAPTERS: dict[type[JsonRecord], TypeAdapter[Any]] = {}


def _adapter(cls: type[JsonRecord]) -> TypeAdapter[Any]:
    if cls not in _ADAPTERS:  # built once per record type (a few ms)
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def describe(error: ValidationError) -> str:
    """One line: each wrong field and what is wrong with it."""
    parts = []
    for item in error.errors():
        where = ".".join(str(step) for step in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
