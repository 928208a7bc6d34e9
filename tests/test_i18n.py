"""The translations: the gettext template is what the sources mark, every message has its Russian
(with the same placeholders, not fuzzy), the compiled catalog is the .po's, plural forms are right
for 1, 2, 5, 11 and 21 in both languages, and every text of the bot and the page renders."""

from __future__ import annotations

import gettext
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.i18n import MESSAGES, PARTS, t
from core.i18n import DOMAIN, LOCALE_DIR, NP_, Text, fields, render
from tests.conftest import REPO
from web.texts import TEXTS, page_texts, plural_forms

TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
RUSSIAN = LOCALE_DIR / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"
COMPILED = RUSSIAN.with_suffix(".mo")
COUNTS = (1, 2, 5, 11, 21)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def _messages(catalog: Catalog) -> dict[str | tuple[str, ...], object]:
    return {m.id: m for m in catalog if m.id}


def _specs(text: str) -> set[tuple[str, str, str | None]]:
    """The replacement fields with their format spec and conversion: {n:.1f} -> ("n", ".1f", None)."""
    return {(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None}


def test_the_template_is_what_the_sources_mark(tmp_path: Path) -> None:
    """A message added or changed in code without `make translations` fails here."""
    fresh = tmp_path / "segbot.pot"
    proc = subprocess.run(
        ["make", "-s", "messages-template", f"POT={fresh}", f"PYBABEL={Path(sys.executable).parent}/pybabel"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    extracted, committed = set(_messages(_read(fresh))), set(_messages(_read(TEMPLATE)))
    assert extracted - committed == set(), "new messages: run `make translations` and translate them"
    assert committed - extracted == set(), "messages gone from the code: run `make translations`"
    # the tables' own messages are all in it (their keywords are the ones the Makefile extracts)
    table_ids = {(x.msgid, x.plural) if x.plural else x.msgid for x in (*MESSAGES.values(), *TEXTS.values())}
    assert table_ids <= committed


def test_every_message_has_its_russian_translation() -> None:
    template, russian = _messages(_read(TEMPLATE)), _read(RUSSIAN, "ru")
    assert russian.num_plurals == 3 and russian.plural_forms.startswith("nplurals=3;")
    translated = _messages(russian)
    assert set(translated) == set(template), "the .po is behind the template: run `make translations`"
    for msgid, message in translated.items():
        assert not message.fuzzy, f"fuzzy (review it, then remove the flag): {msgid!r}"
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(forms) == (3 if isinstance(msgid, tuple) else 1) and all(forms), f"untranslated: {msgid!r}"
    assert [error for _, errors in russian.check() for error in errors] == []  # Babel's own checks


def test_each_translation_has_the_placeholders_of_its_msgid() -> None:
    for message in _read(RUSSIAN, "ru"):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set().union(*map(_specs, ids))
        assert all(_specs(ids[0]) == _specs(msgid) for msgid in ids), f"singular and plural differ: {ids}"
        for form in forms:
            assert _specs(form) == wanted, f"{ids[0]!r}: {form!r}"


def test_the_compiled_catalog_is_the_po() -> None:
    """A checkout whose .po changed since the install compiled it (a stale .mo) fails here."""
    compile_it = "run `.venv/bin/pybabel compile -d core/locale -D segbot` (deploy/install.sh does)"
    assert COMPILED.exists(), compile_it
    with COMPILED.open("rb") as f:
        mo = gettext.GNUTranslations(f)
    russian = _read(RUSSIAN, "ru")
    assert mo.info()["plural-forms"] == russian.plural_forms
    for message in russian:
        if not message.id:
            continue
        if isinstance(message.id, tuple):
            for n, form in zip((1, 2, 5), message.string, strict=True):
                assert mo.ngettext(*message.id, n) == form, compile_it
        else:
            assert mo.gettext(message.id) == message.string, compile_it


RUSSIAN_FORMS = {  # key, values besides the count -> the rendered text for 1, 2, 5, 11 and 21
    ("downloading", "n"): ("Проверяю {} файл…", "Проверяю {} файла…", "Проверяю {} файлов…"),
    ("total_objects", "total"): ("{} объект", "{} объекта", "{} объектов"),
    ("wait_ahead_unknown", "ahead"): ("Впереди {} задача.", "Впереди {} задачи.", "Впереди {} задач."),
    ("broadcast_done", "n"): ("Отправлено {} пользователю.", "Отправлено {} пользователям.",
                              "Отправлено {} пользователям."),
    ("learned_crops", "n_crops"): ("{} области crop", "{} областях crop", "{} областях crop"),
}
ENGLISH_FORMS = {
    ("downloading", "n"): ("Checking {} file…", "Checking {} files…"),
    ("total_objects", "total"): ("{} object", "{} objects"),
    ("wait_ahead_unknown", "ahead"): ("{} job ahead.", "{} jobs ahead."),
    ("broadcast_done", "n"): ("Sent to {} user.", "Sent to {} users."),
    ("learned_crops", "n_crops"): ("{} crop", "{} crops"),
}
# which of the three Russian forms (1 файл, 2 файла, 5 файлов) each count takes
RUSSIAN_FORM_OF = {1: 0, 2: 1, 5: 2, 11: 2, 21: 0}


@pytest.mark.parametrize("n", COUNTS)
@pytest.mark.parametrize("key, count", list(RUSSIAN_FORMS))
def test_plural_forms_in_the_bot(key: str, count: str, n: int) -> None:
    assert t("ru", key, **{count: n}) == RUSSIAN_FORMS[key, count][RUSSIAN_FORM_OF[n]].format(n)
    assert t("en", key, **{count: n}) == ENGLISH_FORMS[key, count][n != 1].format(n)


@pytest.mark.parametrize(("n", "m"), [(1, 5), (2, 21), (5, 2), (11, 1), (21, 11)])
def test_a_message_with_two_counts_gives_each_its_form(n: int, m: int) -> None:
    values = {"counts": "", "mean": "1", "std": "2", "unit": "nm"}
    images = ("изображению", "изображениям", "изображениям")[RUSSIAN_FORM_OF[n]]
    objects = ("объект", "объекта", "объектов")[RUSSIAN_FORM_OF[m]]
    assert t("ru", "stats", n=n, total=m, **values).startswith(f"По {n} {images}: {m} {objects}\n")
    assert t("en", "stats", n=n, total=m, **values).startswith(
        f"Pooled over {n} image{'s' * (n != 1)}: {m} object{'s' * (m != 1)}\n"
    )
    learned = t("ru", "fig_learned", n_objects=n, n_crops=m, counts="")
    object_form = ("размеченном объекте", "размеченных объектах", "размеченных объектах")[RUSSIAN_FORM_OF[n]]
    crop_form = ("области", "областях", "областях")[RUSSIAN_FORM_OF[m]]
    assert learned == f"Обучена на {n} {object_form} в {m} {crop_form} crop: ."


@pytest.mark.parametrize("n", COUNTS)
def test_plural_forms_on_the_page(n: int) -> None:
    """What app.js does with the served forms: Intl.PluralRules(lang).select(n) is CLDR's category."""
    for lang, expected in (("ru", ("Сохранить исправление ({} объект)", "Сохранить исправление ({} объекта)",
                                   "Сохранить исправление ({} объектов)")[RUSSIAN_FORM_OF[n]]),
                           ("en", ("Save correction ({} object)", "Save correction ({} objects)")[n != 1])):
        entry = page_texts(lang)["save"]
        category = Locale.parse(lang).plural_form(n)
        assert entry["count"] == "n" and entry["forms"][category].format(n=n) == expected.format(n)


def test_the_catalog_plural_forms_agree_with_cldr() -> None:
    """The page picks forms by CLDR category: every plural message of the catalog must map each
    category to one gettext form (plural_forms raises otherwise), for every language."""
    plural_ids = [m.id for m in _read(TEMPLATE) if isinstance(m.id, tuple)]
    assert plural_ids
    for lang in ("en", "ru"):
        categories = set(Locale.parse(lang).plural_form.tags) | {"other"}
        for singular, plural in plural_ids:
            assert set(plural_forms(lang, NP_(singular, plural))) == categories


def _placeholders(key: str) -> set[str]:
    """The values message `key` needs, its parts' included."""
    names = MESSAGES[key].placeholders
    return (names - PARTS).union(*(_placeholders(part) for part in names & PARTS))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_every_bot_message_renders_with_all_its_values(lang: str) -> None:
    for key in MESSAGES:
        values = {name: 21 + k for k, name in enumerate(sorted(_placeholders(key)))}
        text = t(lang, key, **values)
        assert text and "{" not in text, (key, text)
        assert all(str(value) in text for value in values.values()), (key, text)


def test_the_parts_of_messages_are_messages() -> None:
    assert PARTS <= set(MESSAGES)
    used = set().union(*(text.placeholders for text in MESSAGES.values()))
    assert PARTS <= used
    # a value given by the caller wins over a part of the same name
    assert t("en", "start", howto="HOWTO").count("HOWTO") == 1
    assert "How to label" not in t("en", "start", howto="")
    assert "How to label" in t("en", "start") and "Как размечать" in t("ru", "start")


def test_the_page_texts() -> None:
    """Every key app.js and index.html use exists; the page formats plain {name} placeholders only."""
    static = REPO / "web" / "static"
    used = set(re.findall(r"""\bt\(\s*["'](\w+)["']""", (static / "app.js").read_text()))
    used |= set(re.findall(r'data-t(?:-title)?="(\w+)"', (static / "index.html").read_text()))
    used |= set(re.findall(r'(?:select|polygon|circle): "(hint\w+)"', (static / "app.js").read_text()))
    assert used and used <= set(TEXTS), used - set(TEXTS)
    for key, text in TEXTS.items():
        assert all(spec == "" and conv is None for _, spec, conv in _specs(text.msgid)), key
    for lang in ("en", "ru"):
        texts = page_texts(lang)
        assert set(texts) == set(TEXTS)
        assert texts["cancel"] == t(lang, "btn_cancel")  # one msgid, one translation for the bot and the page
    assert page_texts("ru")["polygon"] == "Контур" and page_texts("en")["polygon"] == "Polygon"


def test_render_of_core_texts() -> None:
    text = NP_("{n} file", "{n} files", n=21)
    assert render("ru", text) == "21 files"  # a msgid the catalog does not have stays English
    assert str(text) == "21 files" and str(Text("Done")) == "Done"
    template = MESSAGES["downloading"]
    assert template.values == {} and render("ru", template.with_values(n=3)) == "Проверяю 3 файла…"
    assert render("ru", MESSAGES["fig_holdout"].with_values(n="?", precision=1, recall=1)).startswith(
        "Проверка на области crop, отложенной от обучения (? размеченных объектов)"
    )  # a figure an old model lacks: the form of "no objects"
    assert fields("{n} of {total:,} in {crops[0]}") == {"n", "total", "crops"}
    with pytest.raises(TypeError):
        NP_("{n} file", "{n} files", count="n", total=3)
