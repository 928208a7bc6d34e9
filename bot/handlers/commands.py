"""The informational commands, and the answers to whatever no feature handles: an unknown command,
a sticker or voice message, a stale or unknown button."""

from __future__ import annotations

import asyncio

from telegram import Update
from telegram.ext import ContextTypes

from bot.example import example_labelme
from bot.handlers.common import answer, me, say
from bot.i18n import t

OTHER_KINDS = ("sticker", "video", "voice", "audio", "animation", "video_note", "location", "contact", "poll")


async def cmd_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "start")


async def cmd_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "help")


async def cmd_example(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    data, n = await asyncio.to_thread(example_labelme)  # drawn once, off the event loop
    await context.bot.send_document(
        update.effective_chat.id,
        data,
        filename="segbot_example.json",
        caption=t(me(context).language, "example_caption", n=n),
    )


async def cmd_unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "unknown_command")


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    kind = next((k for k in OTHER_KINDS if getattr(message, k, None)), "message")
    await say(context, update.effective_chat.id, "unknown_type", name=kind)


async def on_stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button no pattern matches: from an old message, or forged."""
    await say(context, update.effective_chat.id, "stale_button")
    await answer(update)
