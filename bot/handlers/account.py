"""The user's settings (language, scale, score threshold) and /forget_me."""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.handlers.common import answer, drop_keyboard, edit_or_send, me, refresh, say, svc
from bot.i18n import t
from bot.parsing import parse_number
from bot.scale import parse_scale
from bot.services import set_user_fields

LANG_PATTERN = r"^lang:(en|ru)\Z"
FORGET_PATTERN = r"^forget:(yes|no)\Z"


def _lang_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("English", callback_data="lang:en"),
                InlineKeyboardButton("Русский", callback_data="lang:ru"),
            ]
        ]
    )


async def _set_lang(context: ContextTypes.DEFAULT_TYPE, lang: str) -> None:
    await svc(context).db(set_user_fields, me(context).id, language=lang)
    await refresh(context)


async def cmd_lang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    args = [a.lower() for a in context.args or []]
    if args and args[0] in ("en", "ru"):
        await _set_lang(context, args[0])
        await say(context, update.effective_chat.id, "lang_set")
        return
    await say(context, update.effective_chat.id, "lang_choose", _lang_keyboard())


async def on_lang_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lang = context.match.group(1)
    await _set_lang(context, lang)
    await edit_or_send(context, update, t(lang, "lang_set"))
    await answer(update)


async def cmd_scale(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info, chat = me(context), update.effective_chat.id
    arg = " ".join(context.args or []).strip()
    if arg.lower() in ("off", "none", "0", "px"):
        await svc(context).db(set_user_fields, info.id, nm_per_px=None)
        await say(context, chat, "scale_off")
        return
    value = parse_scale(arg) if arg else None
    if value is None:
        await say(context, chat, "scale_usage", value=f"{info.nm_per_px:g} nm/px" if info.nm_per_px else "px")
        return
    await svc(context).db(set_user_fields, info.id, nm_per_px=value)
    await say(context, chat, "scale_set", value=f"{value:g}")


async def cmd_threshold(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info, chat = me(context), update.effective_chat.id
    value = parse_number((context.args or [""])[0], 0.05, 0.95)
    if value is None:
        await say(context, chat, "threshold_usage", value=f"{info.threshold:g}")
        return
    await svc(context).db(set_user_fields, info.id, score_threshold=value)
    await say(context, chat, "threshold_set", value=f"{value:g}")


async def cmd_forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    lang = me(context).language
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t(lang, "btn_forget_yes"), callback_data="forget:yes"),
                InlineKeyboardButton(t(lang, "btn_cancel"), callback_data="forget:no"),
            ]
        ]
    )
    await say(context, update.effective_chat.id, "forget_confirm", markup)


async def on_forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Delete first, then tidy the message. A second press hears that all was deleted already:
    the first one deleted the row meanwhile, or before it (the gate made this row anew: deleted)."""
    s, info = svc(context), me(context)
    if context.match.group(1) == "no":
        await edit_or_send(context, update, t(info.language, "cancelled"))
        await answer(update)
        return
    async with s.locks[info.telegram_id]:  # not while this user's files are being stored
        deleted = await asyncio.to_thread(
            s.run_db, accounts.forget_user, s.store, s.settings.data_dir, info.id
        )
    context.user_data.clear()  # type: ignore[union-attr]
    key = "forgotten" if deleted and not info.created else "forgotten_already"
    await context.bot.send_message(update.effective_chat.id, t(info.language, key))
    await answer(update)
    await drop_keyboard(context, update)
