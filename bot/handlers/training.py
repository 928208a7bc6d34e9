"""Training from the chat: /train, the buttons under a labels summary, the options keyboard, and
"train with this correction"; also how a queued job (train or recognition) is reported."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.handlers.common import answer, drop_keyboard, edit_or_send, me, refresh, say, svc
from bot.i18n import t
from bot.parsing import parse_id
from bot.services import UserInfo, update_preferences
from bot.training import (
    Queued,
    estimate_text,
    next_option,
    options_keyboard,
    options_text,
    queue_training,
    set_progress_message,
    training_estimate,
    wait_text,
)
from storage.models import Upload

TRAIN_PATTERN = r"^train:(go|more|opts)\Z"
OPTION_PATTERN = re.compile(r"^opt:(.*)", re.DOTALL)  # an unknown name redraws the keyboard unchanged
CORRECTION_PATTERN = r"^corr:(\d+)\Z"


async def cmd_train(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info = await refresh(context)
    if not info.pending_uploads:
        await say(context, update.effective_chat.id, "no_labels")
        return
    await _show_options(context, update.effective_chat.id, info)


# Buttons: the action first, then the answer and the cosmetic edit (which Telegram may refuse for a
# second press or an old message without that being a failure). The edit goes in the rate limiter's
# bulk lane, beside the handler (it may wait); the answer must come within seconds.


async def on_train_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat, action = update.effective_chat.id, context.match.group(1)
    if action == "go":
        # a second press hears "already queued (#id)" in the button's own answer
        await start_training(context, chat, press=update)
        await drop_keyboard(context, update)
        return
    if action == "more":
        await say(context, chat, "add_more")
    else:
        await _show_options(context, chat, await refresh(context))
    await answer(update)


async def on_option_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s, info = svc(context), me(context)
    options = next_option(info.train_options, context.match.group(1))
    await s.db(update_preferences, info.id, train_options=options)
    estimate = await s.db(training_estimate, options, s.settings.device, info.pending_uploads)
    await edit_or_send(
        context,
        update,
        options_text(options, info.language, estimate),
        options_keyboard(options, info.language),
    )
    await answer(update)


async def on_correction_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat.id
    upload_id = parse_id(context.match.group(1), Upload.id)
    plan = None
    if upload_id is not None:
        plan = await svc(context).db(accounts.correction_plan, me(context).id, upload_id)
    if plan is None:
        await say(context, chat, "stale_button")
        await answer(update)
    else:
        await start_training(
            context, chat, plan.upload_ids, plan.options, correction_of=upload_id, press=update
        )
    await drop_keyboard(context, update)


async def _show_options(context: ContextTypes.DEFAULT_TYPE, chat_id: int, info: UserInfo) -> None:
    s = svc(context)
    estimate = await s.db(training_estimate, info.train_options, s.settings.device, info.pending_uploads)
    await context.bot.send_message(
        chat_id,
        options_text(info.train_options, info.language, estimate),
        reply_markup=options_keyboard(info.train_options, info.language),
    )


async def start_training(
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    upload_ids: list[int] | None = None,
    options: dict[str, Any] | None = None,
    correction_of: int | None = None,
    press: Update | None = None,
) -> None:
    """Queue the training; `press`: the button press that asked for it, which is answered here."""
    s = svc(context)
    # not while files of this user are still stored; and one press at a time, so a second press
    # of the same button finds the job the first one queued
    async with s.locks[me(context).telegram_id]:
        queued = await asyncio.to_thread(
            queue_training, s, me(context), chat_id, upload_ids, options, correction_of=correction_of
        )
    await report_queued(context, chat_id, queued, "queued_train", press=press)


async def report_queued(
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    queued: Queued,
    key: str,
    press: Update | None = None,
    **values: Any,
) -> None:
    """Why the job was not queued, or text `key` as the job's progress message (the bot edits it).
    `press`, the button press behind it, is answered; a press that finds its job queued already
    (a double tap, mostly) hears so in that answer, a notice over the chat that costs no message:
    on a busy day messages are what Telegram's 30 a second limit counts."""
    if press is not None and queued.error in ("already_queued", "already_trained"):
        await answer(press, t(me(context).language, queued.error, job=queued.job_id))
        return
    try:
        await _report_queued(context, chat_id, queued, key, **values)
    finally:
        if press is not None:
            await answer(press)


async def _report_queued(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, queued: Queued, key: str, **values: Any
) -> None:
    if queued.error == "no_labels":
        await say(context, chat_id, "no_labels")
    elif queued.error == "no_model":
        await say(context, chat_id, "no_model_image")
    elif queued.error in ("already_queued", "already_trained"):
        await say(context, chat_id, queued.error, job=queued.job_id)
    elif queued.error:
        await say(context, chat_id, "queue_limit", reason=queued.error)
    else:
        lang = me(context).language
        if queued.estimate is not None:
            values.setdefault("estimate", estimate_text(lang, queued.estimate))
        values.setdefault("wait", wait_text(lang, queued.wait))
        message = await say(context, chat_id, key, job=queued.job_id, pos=queued.position or 1, **values)
        await asyncio.to_thread(
            set_progress_message, svc(context), queued.job_id, chat_id, message.message_id
        )
