"""The compiled catalogs (core/locale/*/LC_MESSAGES/segbot.mo) for tests that render Russian: the
install compiles them (pybabel compile); a fresh checkout has only the .po files."""

from __future__ import annotations

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core import i18n


def compile_catalogs() -> None:
    """Compile each .po whose .mo is missing or older, and forget the catalogs loaded before."""
    for po in i18n.LOCALE_DIR.glob(f"*/LC_MESSAGES/{i18n.DOMAIN}.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source)
        with mo.open("wb") as target:
            write_mo(target, catalog, use_fuzzy=False)
    i18n.translations.cache_clear()
