"""The user's jobs: /status lists them, /cancel [#id] stops one (the newest active by default)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.handlers.common import me, say, svc
from bot.i18n import t


async def cmd_status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lines = await svc(context).db(accounts.status_lines, me(context).id)
    text = "\n".join(lines) if lines else t(me(context).language, "no_jobs")
    await context.bot.send_message(update.effective_chat.id, text[:4096])


async def cmd_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    wanted = None
    if context.args and context.args[0].lstrip("#").isdigit():
        wanted = int(context.args[0].lstrip("#"))
    job_id, ok = await svc(context).db(accounts.cancel_job, me(context).id, wanted)
    chat = update.effective_chat.id
    if job_id is None:
        await say(context, chat, "cancel_none")
    else:
        await say(context, chat, "cancel_ok" if ok else "cancel_fail", job=job_id)
