"""The user's jobs: /status lists them, /cancel [#id] stops one (the newest active by default)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.handlers.common import me, say, svc
from bot.i18n import t
from bot.parsing import parse_id
from storage.models import Job


async def cmd_status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lines = await svc(context).db(accounts.status_lines, me(context).id)
    text = "\n".join(lines) if lines else t(me(context).language, "no_jobs")
    await context.bot.send_message(update.effective_chat.id, text[:4096])


async def cmd_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat.id
    wanted = parse_id(context.args[0], Job.id) if context.args else None
    if context.args and wanted is None:  # not a job number: cancel nothing rather than the newest
        await say(context, chat, "cancel_usage")
        return
    job_id, ok = await svc(context).db(accounts.cancel_job, me(context).id, wanted)
    if job_id is None:
        await say(context, chat, "cancel_none")
    else:
        await say(context, chat, "cancel_ok" if ok else "cancel_fail", job=job_id)
