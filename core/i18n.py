"""Messages for users, in their language: gettext catalogs with plural forms.

A message is a `Text`: an English msgid (the gettext key and the English text at once), an optional
plural msgid with the name of the value that picks the form, and the values to format into it. Code
below the bot (the LabelMe reader, the image reader) builds Texts and never knows the language; whoever
shows a Text to a user renders it in theirs (`render(lang, text)`); `str(text)` is English, for logs,
the CLI and tests.

Mark every message with `N_` (one form) or `NP_` (singular, plural): `pybabel extract` finds them by
these names (`make translations`; babel.cfg), the catalogs live in core/locale/<lang>/LC_MESSAGES/
segbot.po and are compiled to .mo by the install (deploy/install.sh). A Text without values is a
template: the tables of keyed messages (bot/i18n.py, web/texts.py) hold such templates and give them
their values when they are shown (`Text.with_values`).
"""

from __future__ import annotations

import gettext
import logging
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

DOMAIN = "segbot"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANG = "en"  # the msgids are English: English needs no catalog
LANGS = ("en", "ru")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Text:
    """A user-facing message not yet rendered: msgid (and plural msgid), and its values."""

    msgid: str
    values: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    count: str | None = None  # the value that picks the plural form (an int)

    def render(self, lang: str = SOURCE_LANG) -> str:
        return render(lang, self)

    def with_values(self, **values: Any) -> Text:
        """The same message with (more) values: a template of a table made ready to render."""
        return replace(self, values={**self.values, **values})

    @property
    def placeholders(self) -> set[str]:
        """The names of the values its English forms use ({n}, {size:.1f} -> n, size)."""
        return fields(self.msgid) | fields(self.plural or "")

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
    that picks the form (Russian has three: 1, 2-4, 5-20 files...). Without values it is a template
    whose count comes with the values it is shown with."""
    if values and count not in values:
        raise TypeError(f"NP_ needs the value {count!r} that picks the plural form")
    return Text(singular, values, plural, count)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (English and unknown languages: the msgids themselves)."""
    if lang == SOURCE_LANG or lang not in LANGS:
        return gettext.NullTranslations()
    try:
        return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])
    except FileNotFoundError:  # an install that skipped the compile step; tests/test_i18n.py catches it
        log.error("no compiled catalog for %r under %s (pybabel compile -d core/locale -D segbot): "
                  "its users get English", lang, LOCALE_DIR)
        return gettext.NullTranslations()


def fields(pattern: str) -> set[str]:
    """The names of the values a pattern formats: "{n} of {total:,}" -> {"n", "total"}."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(pattern) if name}


def plural_count(value: Any) -> int:
    """The number that picks a plural form. A value that is no number ("?" for a figure an old model
    lacks) takes the form of 0, the plural of "no objects"."""
    try:
        return abs(int(value))
    except (TypeError, ValueError):
        return 0


def pattern(lang: str, text: Text, count: int | None = None) -> str:
    """The translation of `text` in `lang`, not yet formatted: for a plural message, the form for
    `count` (by default the count among its values)."""
    catalog = translations(lang)
    if text.plural is None or text.count is None:
        return catalog.gettext(text.msgid)
    if count is None:
        count = plural_count(text.values[text.count])
    return catalog.ngettext(text.msgid, text.plural, count)


def render(lang: str, text: Text | str) -> str:
    """`text` in `lang`; its values are rendered first (a value may be a Text itself). A plain str is
    returned as it is: it was never a message of ours (a file name, a number)."""
    if isinstance(text, str):
        return text
    values = {key: render(lang, value) if isinstance(value, Text) else value
              for key, value in text.values.items()}
    form = pattern(lang, text)
    return form.format(**values) if values else form
