"""/admin for admins: the queue and users at a glance; /admin broadcast <text> to every user."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot import accounts
from bot.handlers.common import me, say, svc

log = logging.getLogger(__name__)


async def cmd_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info, chat, s = me(context), update.effective_chat.id, svc(context)
    if not info.is_admin:
        await say(context, chat, "admin_only")
        return
    args = context.args or []
    text = ""
    if args and args[0].lower() == "broadcast" and len(args) > 1:
        text = update.effective_message.text.split(None, 2)[2]
    if not text.strip():  # no broadcast, or one without a text: the overview
        await say(context, chat, "admin", **await s.db(accounts.admin_overview))
        return
    sent = 0
    for telegram_id in await s.db(accounts.all_chat_ids):
        try:
            await context.bot.send_message(telegram_id, text[:4096])
            sent += 1
        except TelegramError as error:
            log.info("broadcast to %s failed: %s", telegram_id, error)
    await say(context, chat, "broadcast_done", n=sent)
