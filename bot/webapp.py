"""The Mini App in the chat: the Review button under a result and in /stats, the Label button under
an image sent without labels, a result and in /label, and the messages about a correction or a
label set saved on the page (an outbox notice written by web/, sent here with the same
`corr:<upload id>` button as a corrected LabelMe file sent back). Without SEGBOT_WEBAPP_URL there
is no button and the chat works as before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from annotations.crops import format_summary
from bot.i18n import t
from bot.training import after_labels_keyboard
from core.settings import Settings
from storage.models import Result, Upload

STATS_BUTTONS = 5  # Review buttons under /stats: the newest results


def page_button(settings: Settings, text: str, query: str) -> InlineKeyboardButton | None:
    """A web_app button opening the page at ?<query> (Telegram appends #tgWebAppData=...); None
    without the Mini App."""
    if not settings.webapp_url:
        return None
    return InlineKeyboardButton(text[:64], web_app=WebAppInfo(f"{settings.webapp_url}/?{query}"))


def review_button(settings: Settings, text: str, result_id: int) -> InlineKeyboardButton | None:
    return page_button(settings, text, f"result={int(result_id)}")


def label_button(settings: Settings, text: str, image_upload_id: int) -> InlineKeyboardButton | None:
    return page_button(settings, text, f"image={int(image_upload_id)}")


def _one_per_row(buttons: list[InlineKeyboardButton | None]) -> InlineKeyboardMarkup | None:
    rows = [[b] for b in buttons if b is not None]
    return InlineKeyboardMarkup(rows) if rows else None


def result_markup(
    settings: Settings, lang: str, result_id: int, image_upload_id: int | None
) -> InlineKeyboardMarkup | None:
    """Review, and Label (to add crops of this image to the training data) when its image is kept,
    with "Label where the model is least sure" below (the page opens with crops where the model doubts)."""
    buttons = [review_button(settings, t(lang, "btn_review"), result_id)]
    if image_upload_id is not None:
        buttons.append(label_button(settings, t(lang, "btn_label"), image_upload_id))
    row = [b for b in buttons if b is not None]
    if not row:
        return None
    rows = [row]
    if image_upload_id is not None:  # crops around the model's least certain outlines, prefilled
        query = f"image={int(image_upload_id)}&suggest=1"
        rows.append([page_button(settings, t(lang, "btn_label_suggest"), query)])
    return InlineKeyboardMarkup(rows)


def images_markup(
    settings: Settings, lang: str, images: list[tuple[int, str]]
) -> InlineKeyboardMarkup | None:
    """A Label button per image (upload id, name): under images sent without a model, and in /label."""
    return _one_per_row(
        [label_button(settings, t(lang, "btn_label_named", name=name), uid) for uid, name in images]
    )


def stats_markup(
    settings: Settings, lang: str, results: list[tuple[int, str]]
) -> InlineKeyboardMarkup | None:
    return _one_per_row(
        [review_button(settings, t(lang, "btn_review_named", name=name), rid) for rid, name in results]
    )


def _recent(session: Session, columns: tuple[Any, Any], *where: Any, limit: int) -> list[tuple[int, str]]:
    """(id, name) of the newest rows: her results or her images."""
    rows = session.execute(select(*columns).where(*where).order_by(columns[0].desc()).limit(limit))
    return [(rid, name or f"#{rid}") for rid, name in rows]


def recent_results(session: Session, user_id: int, limit: int = STATS_BUTTONS) -> list[tuple[int, str]]:
    return _recent(session, (Result.id, Result.image_name), Result.user_id == user_id, limit=limit)


def recent_images(session: Session, user_id: int, limit: int = STATS_BUTTONS) -> list[tuple[int, str]]:
    return _recent(
        session,
        (Upload.id, Upload.original_name),
        Upload.user_id == user_id,
        Upload.kind == "image",
        limit=limit,
    )


def correction_saved(lang: str, payload: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    changed = int(payload.get("relabelled") or 0)
    text = t(
        lang,
        "correction_saved",
        removed=int(payload.get("removed") or 0),
        added=int(payload.get("added") or 0),
        relabelled=t(lang, "relabelled", n=changed) if changed else "",
        name=payload.get("image_name") or "?",
        n=int(payload.get("n_objects") or 0),
    )
    button = InlineKeyboardButton(
        t(lang, "btn_train_correction"), callback_data=f"corr:{int(payload['upload_id'])}"
    )
    return text, InlineKeyboardMarkup([[button]])


def labels_saved(lang: str, payload: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    """The usual upload summary for a label set saved on the page, with Train now."""
    parts = [t(lang, "summary_head", n=int(payload.get("pending_count") or 1))]
    parts.append(f"• {payload.get('name') or '?'}: {format_summary(payload.get('summary') or {}, lang=lang)}")
    parts.append(t(lang, "summary_buttons_hint"))
    return "\n".join(parts), after_labels_keyboard(lang)
