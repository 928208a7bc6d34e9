"""The Mini App in the chat: the Review button under a result and in /stats, and the message about
a correction saved on the page (an outbox notice written by web/, sent here with the same
`corr:<upload id>` button as a corrected LabelMe file sent back). Without SEGBOT_WEBAPP_URL there
is no button and the chat works as before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot.i18n import t
from core.settings import Settings
from storage.models import Result

STATS_BUTTONS = 5  # Review buttons under /stats: the newest results


def review_url(settings: Settings, result_id: int) -> str | None:
    if not settings.webapp_url:
        return None
    return f"{settings.webapp_url}/?result={int(result_id)}"  # Telegram appends #tgWebAppData=...


def review_button(settings: Settings, text: str, result_id: int) -> InlineKeyboardButton | None:
    url = review_url(settings, result_id)
    return InlineKeyboardButton(text[:64], web_app=WebAppInfo(url)) if url else None


def review_markup(settings: Settings, lang: str, result_id: int) -> InlineKeyboardMarkup | None:
    button = review_button(settings, t(lang, "btn_review"), result_id)
    return InlineKeyboardMarkup([[button]]) if button else None


def recent_results(session: Session, user_id: int, limit: int = STATS_BUTTONS) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Result.id, Result.image_name)
        .where(Result.user_id == user_id)
        .order_by(Result.id.desc())
        .limit(limit)
    )
    return [(rid, name or f"#{rid}") for rid, name in rows]


def stats_markup(
    settings: Settings, lang: str, results: list[tuple[int, str]]
) -> InlineKeyboardMarkup | None:
    buttons = [review_button(settings, t(lang, "btn_review_named", name=name), rid) for rid, name in results]
    rows = [[b] for b in buttons if b is not None]
    return InlineKeyboardMarkup(rows) if rows else None


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
