"""Messages for users, in their language: gettext catalogs with plural forms.

A message is a `Text`: an English msgid (the gettext key and the English text at once), an optional
plural msgid with the name of the value that picks the form, and the values to format into it. Code
below the bot (the LabelMe reader, the image reader) builds Texts and never knows the language; whoever
shows a Text to a user renders it in theirs (`render(lang, text)`); `str(text)` is English, for logs,
the CLI and tests.

Mark every message with `N_` (one form) or `NP_` (singular, plural): `pybabel extract` finds them by
these names (see babel.cfg), the catalogs live in core/locale/<lang>/LC_MESSAGES/segbot.po and are
compiled to .mo by the install (deploy/install.sh).
"""

from __future__ import annotations

import gettext
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

DOMAIN = "segbot"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANG = "en"  # the msgids are English: English needs no catalog
LANGS = ("en", "ru")


@dataclass(frozen=True)
class Text:
    """A user-facing message not yet rendered: msgid (and plural msgid), and its values."""

    msgid: str
    values: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    count: str | None = None  # the value that picks the plural form (an int)

    def render(self, lang: str = SOURCE_LANG) -> str:
        return render(lang, self)

    def __str__(self) -> str:
        return self.render(SOURCE_LANG)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for a database row): nested Texts as dicts, NumPy numbers as Python's."""
        values = {key: _json_value(value) for key, value in self.values.items()}
        data: dict[str, Any] = {"msgid": self.msgid, "values": values}
        if self.plural is not None:
            data["plural"], data["count"] = self.plural, self.count
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Text:
        values = {key: _from_json_value(value) for key, value in (data.get("values") or {}).items()}
        return cls(data["msgid"], values, data.get("plural"), data.get("count"))


def _json_value(value: Any) -> Any:
    if isinstance(value, Text):
        return value.to_json()
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": str(value)}  # JSON has no NaN or Infinity (PostgreSQL refuses them)
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return float(value["float"]) if "float" in value else Text.from_json(value)
    return value


def dump_text(text: Text | str) -> dict[str, Any] | str:
    """What a database row keeps of a message: Text.to_json(), a plain str as it is."""
    return text.to_json() if isinstance(text, Text) else text


def load_text(stored: Any) -> Text | str:
    """A message as dump_text kept it; a plain str (rows written before messages were Texts: English)
    stays a str, which render() shows as it is."""
    return Text.from_json(stored) if isinstance(stored, Mapping) else str(stored)


def N_(msgid: str, /, **values: Any) -> Text:
    """A message with one form: N_("Crop #{n} is a {shape}; its bounding box is used.", n=2, shape=...)."""
    return Text(msgid, values)


def NP_(singular: str, plural: str, /, count: str = "n", **values: Any) -> Text:
    """A message whose words follow a number: NP_("{n} file", "{n} files", n=5). `count` names the value
    that picks the form (Russian has three: 1, 2-4, 5-20 files...)."""
    if count not in values:
        raise TypeError(f"NP_ needs the value {count!r} that picks the plural form")
    return Text(singular, values, plural, count)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (English and unknown languages: the msgids themselves)."""
    if lang == SOURCE_LANG or lang not in LANGS:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)


def render(lang: str, text: Text | str) -> str:
    """`text` in `lang`; its values are rendered first (a value may be a Text itself). A plain str is
    returned as it is: it was never a message of ours (a file name, a number)."""
    if isinstance(text, str):
        return text
    catalog = translations(lang)
    values = {key: render(lang, value) if isinstance(value, Text) else value
              for key, value in text.values.items()}
    if text.plural is not None and text.count is not None:
        pattern = catalog.ngettext(text.msgid, text.plural, int(text.values[text.count]))
    else:
        pattern = catalog.gettext(text.msgid)
    return pattern.format(**values) if values else pattern
