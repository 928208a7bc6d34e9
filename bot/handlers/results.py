"""What the user has got so far: /stats pools their recent results, /export zips all their files."""

from __future__ import annotations

import asyncio

from telegram import Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.captions import numbers_caption, pooled_caption
from bot.handlers.common import me, say, send_text, svc
from bot.i18n import t
from bot.webapp import recent_results, stats_markup

TELEGRAM_FILE_LIMIT = 49 * 2**20  # bots may send documents up to 50 MB


async def cmd_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    summaries = await svc(context).db(accounts.recent_summaries, me(context).id)
    chat = update.effective_chat.id
    if not summaries:
        await say(context, chat, "stats_none")
        return
    lang = me(context).language
    recent = await svc(context).db(recent_results, me(context).id)
    markup = stats_markup(svc(context).settings, lang, recent)  # Review buttons when the Mini App is on
    metal = me(context).preferences.get("metal")  # /metal (bot.handlers.compare)
    text = "\n".join(filter(None, [pooled_caption(lang, "stats", summaries),
                                    numbers_caption(lang, summaries, metal)]))
    await send_text(context, chat, text, markup)


async def cmd_export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s, chat = svc(context), update.effective_chat.id
    data = await asyncio.to_thread(
        s.run_db, accounts.export_zip, s.store, s.settings.data_dir, me(context).id
    )
    if data is None:
        await say(context, chat, "export_none")
    elif len(data) > TELEGRAM_FILE_LIMIT:
        await say(context, chat, "export_big", size=len(data) / 2**20)
    else:
        await context.bot.send_document(
            chat, data, filename="segbot_export.zip", caption=t(me(context).language, "export_caption")
        )
