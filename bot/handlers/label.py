"""/label: a Label button (the Mini App's label mode) for each of the user's recent images."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers.common import me, say, svc
from bot.webapp import images_markup, recent_images


async def cmd_label(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s, chat, info = svc(context), update.effective_chat.id, me(context)
    if not s.settings.webapp_url:
        await say(context, chat, "label_off")
        return
    recent = await s.db(recent_images, info.id)
    markup = images_markup(s.settings, info.language, recent)
    await say(context, chat, "label_pick" if markup else "label_none", markup)
