"""The Review page's texts: one table of key -> English message, served as JSON (GET /api/texts).

The messages are msgids of the same gettext catalogs as the bot's (core/i18n.py, `make translations`);
the page formats them itself, so they use plain {name} placeholders. A plural message is served as its
forms keyed by CLDR plural category ("one", "few", "many", "other") and the name of the value that
counts; app.js picks the form with `new Intl.PluralRules(lang).select(n)`. A placeholder that names
another key of the table (and is not among the values) is that message, rendered with the same values.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from babel import Locale

from core.i18n import LANGS, N_, NP_, Text, pattern

# How far the integers are sampled to find each plural category's gettext form: the rules of the
# languages we ship repeat within 0..199 (Russian: by the last two digits).
PLURAL_SAMPLES = range(200)

TEXTS: dict[str, Text] = {
    "title": N_("Result review"),
    "unsaved": N_("unsaved"),
    "loading": N_("Loading…"),
    "select": N_("Select"),
    "polygon": N_("Polygon"),
    "circle": N_("Circle"),
    "undo": N_("Undo"),
    "redo": N_("Redo"),
    "ids": N_("IDs"),
    "fit": N_("Fit"),
    "done": N_("Done"),
    "cancel": N_("Cancel"),
    "delete": N_("Delete"),
    "newClass": N_("Class for new outlines"),
    "addClass": N_("+ new class…"),
    "addClassPrompt": N_("Name of the new class:"),
    "minScore": N_("Min score"),
    "hidden": NP_("({n} object hidden, not saved)", "({n} objects hidden, not saved)"),
    "save": NP_("Save correction ({n} object)", "Save correction ({n} objects)"),
    "saving": N_("Saving…"),
    "saved": N_(
        "Saved: {removed_objects}, {added_objects}. The chat has a button to train the next version."
    ),
    # the same msgids as the bot's parts of "Correction saved: ..." (bot/i18n.py)
    "removed_objects": NP_("{removed} object removed", "{removed} objects removed", count="removed"),
    "added_objects": NP_("{added} object added", "{added} objects added", count="added"),
    "counts": N_("Objects per class"),
    "histogram": N_("Size distribution"),
    "objects": N_("Objects"),
    "class": N_("class"),
    "score": N_("score"),
    "downloads": N_("Downloads"),
    "labelme": N_("LabelMe JSON"),
    "csv": N_("CSV table"),
    "hintSelect": N_("Tap an object to select it; drag to pan, pinch or scroll to zoom."),
    "hintPolygon": N_("Tap the outline's corners; tap the first point or Done to close it."),
    "hintCircle": N_("Drag from the centre outwards to draw a circle."),
    "points": NP_("{n} point", "{n} points"),
    "newObject": N_("new"),
    "more": NP_(
        "… and {n} more object (sort to see the others)", "… and {n} more objects (sort to see the others)"
    ),
    "pick": N_("Your recent results"),
    "none": N_("No results yet: send an image to the bot first."),
    "noAuth": N_("Open this page from the bot's Review button in Telegram."),
    "discard": N_("Discard the unsaved changes?"),
    "dLabel": N_("D, {unit}"),
    "areaLabel": N_("area, {unit}²"),
    # label mode (?image=<upload id>)
    "labelTitle": N_("Label an image"),
    "crop": N_("Crop"),
    "tap": N_("Tap"),
    "hintCrop": N_("Drag a rectangle around a region; you will outline every particle inside it."),
    "hintTap": N_(
        "Tap a particle: its outline is proposed (your model's, where it has one). Tap a dashed "
        "proposal, then ✓ or ✗."
    ),
    "size": N_("Size"),
    "modelProposal": N_("Model's proposal"),
    "modelUnsure": N_("Model's guess under your threshold"),
    "nothingHere": N_("✗ Nothing here"),
    "modelOutline": N_("Your model's outline. Wrong? Delete it, and a tap here outlines by contrast."),
    "otherOutline": N_("↻ Other outline"),
    "showingModel": N_("Your model's outline; the contrast outline differs: ↻ Other outline swaps them."),
    "showingContrast": N_("Contrast outline; ↻ Other outline brings your model's back."),
    "noOutline": N_("Nothing stands out here: draw this one with Polygon or Circle."),
    "crops": N_("Crops"),
    "cropCount": NP_("crop {k}: {n} object", "crop {k}: {n} objects"),
    "noCrops": N_("Draw at least one crop: only outlines inside crops are used for training."),
    "missed": NP_(
        "crop {k}: {n} particle-like spot has no outline yet (a crop must be complete)",
        "crop {k}: {n} particle-like spots have no outline yet (a crop must be complete)",
    ),
    "proposals": NP_("{n} model proposal to accept or ignore", "{n} model proposals to accept or ignore"),
    "saveLabels": NP_("Save labels ({n} object)", "Save labels ({n} objects)"),
    "savedLabels": N_("Saved. The chat has the summary and a Train now button."),
    "suggested": NP_(
        "{n} crop where the model is least sure: outline every particle inside (tap a dashed one, "
        "then ✓ or ✗).",
        "{n} crops where the model is least sure: outline every particle inside (tap a dashed one, "
        "then ✓ or ✗).",
    ),
    "acceptAll": NP_(
        "Accept the model's {n} outline in the crops", "Accept the model's {n} outlines in the crops"
    ),
    "pickImage": N_("Your recent images"),
    "noImages": N_("No images yet: send an image to the bot first."),
}


def plural_forms(lang: str, text: Text) -> dict[str, str]:
    """CLDR plural category -> the catalog's form of plural message `text` in `lang`, found by
    sampling integers; a category no integer has (Russian "other": fractions) gets the form of the
    plural msgid's numbers (5 files). The catalog's Plural-Forms and CLDR must agree: a category
    whose integers take two gettext forms is an error."""
    rule = Locale.parse(lang).plural_form
    forms: dict[str, str] = {}
    for n in PLURAL_SAMPLES:
        category, form = rule(n), pattern(lang, text, n)
        if forms.setdefault(category, form) != form:
            raise ValueError(f"{lang}: CLDR category {category!r} takes two forms of {text.msgid!r}")
    forms.setdefault("other", pattern(lang, text, 5))
    return forms


@cache
def page_texts(lang: str) -> dict[str, Any]:
    """The page's texts in `lang`: key -> the translated pattern, or for a plural message
    {"count": the value's name, "forms": {category: pattern}}."""
    texts: dict[str, Any] = {}
    for key, text in TEXTS.items():
        if text.plural is None:
            texts[key] = pattern(lang, text)
        else:
            texts[key] = {"count": text.count, "forms": plural_forms(lang, text)}
    return texts


def all_page_texts() -> dict[str, dict[str, Any]]:
    """Every language's page texts: the page picks the user's language itself."""
    return {lang: page_texts(lang) for lang in LANGS}
