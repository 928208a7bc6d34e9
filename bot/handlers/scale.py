"""The question asked when an image's scale comes from a scale bar read with low confidence: "Use
7.34 nm/px" / "No scale". The image is stored at once; its recognition job is queued with the answer
(bot.training.queue_scale_answer records both on the upload), so the job never runs with a scale the
user has not seen."""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot.captions import scale_question
from bot.files_in import ImageFacts
from bot.handlers.common import answer, edit_or_send, me, say, send_text, svc
from bot.handlers.training import report_queued
from bot.i18n import t
from bot.parsing import parse_id
from bot.training import SCALE_ASK, queue_scale_answer
from storage.models import Upload

SCALE_PATTERN = r"^sb:(use|no):(\d+)\Z"


def ask_summary(facts: ImageFacts) -> dict:
    """What the upload keeps of the question (Upload.summary[SCALE_ASK]) until it is answered."""
    return {
        SCALE_ASK: {
            "nm_per_px": facts.bar_nm_per_px,
            "source": f"{facts.scale_source} (confirmed by you)",
            "confidence": facts.scale_confidence,
        }
    }


def scale_keyboard(lang: str, upload_id: int, nm_per_px: float) -> InlineKeyboardMarkup:
    use = InlineKeyboardButton(t(lang, "btn_scale_use", value=f"{nm_per_px:.3g}"),
                               callback_data=f"sb:use:{upload_id}")
    no = InlineKeyboardButton(t(lang, "btn_scale_no"), callback_data=f"sb:no:{upload_id}")
    return InlineKeyboardMarkup([[use, no]])


async def ask_scale(
    context: ContextTypes.DEFAULT_TYPE, chat: int, upload_id: int, name: str, facts: ImageFacts
) -> None:
    lang = me(context).language
    markup = scale_keyboard(lang, upload_id, facts.bar_nm_per_px)
    await send_text(context, chat, scale_question(lang, name, facts), markup)


async def on_scale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Queue the held image's recognition with the answer, once; a second press only hears which
    job the first one queued."""
    s, info, chat = svc(context), me(context), update.effective_chat.id
    use = context.match.group(1) == "use"
    upload_id = parse_id(context.match.group(2), Upload.id)
    got = None
    if upload_id is not None:
        async with s.locks[info.telegram_id]:  # one press at a time: the second finds the first's job
            got = await asyncio.to_thread(queue_scale_answer, s, info, chat, upload_id, use)
    if got is None:
        await say(context, chat, "stale_button")
        await answer(update)
        return
    queued = got.queued
    if queued.error == "answered":
        await answer(update, t(info.language, "scale_answered", job=queued.job_id))
        return
    if queued.job_id is not None:  # the answer is recorded: the question gives way to it
        key = "scale_used" if use else "scale_not_used"
        text = t(info.language, key, name=got.name, value=f"{got.nm_per_px:.3g}")
        await edit_or_send(context, update, text)
    await report_queued(context, chat, queued, "queued_predict", n=1)
    await answer(update)
