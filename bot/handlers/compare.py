"""/metal (the metal whose dispersion the numbers give) and /compare (two of the user's recent
result sets side by side: sizes, ratio of means, KS and Mann-Whitney, one picture). The comparison
reads stored tables and draws one picture: in a worker thread, never in the event loop."""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot.compare import SetRow, compare_jobs, recent_sets
from bot.handlers.common import answer, edit_or_send, me, say, send_text, svc
from bot.i18n import t
from bot.parsing import parse_id
from bot.services import update_preferences
from core.errors import InputError
from core.i18n import render
from measures.sizes import METALS, find_metal
from storage.models import Result

COMPARE_PATTERN = r"^cmp:(\d+)(?::(\d+))?\Z"  # cmp:<job A> then cmp:<job A>:<job B>
METAL_KEY = "metal"  # in the user's preferences


def user_metal(context: ContextTypes.DEFAULT_TYPE) -> str | None:
    return me(context).preferences.get(METAL_KEY)


async def cmd_metal(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/metal Pt sets it, /metal off clears it, /metal alone says which and what is known."""
    info, chat = me(context), update.effective_chat.id
    arg = " ".join(context.args or []).strip()
    known = ", ".join(sorted(METALS))
    if not arg:
        await say(context, chat, "metal_usage", value=user_metal(context) or "–", metals=known)
        return
    if arg.lower() in ("off", "none", "-"):
        await svc(context).db(update_preferences, info.id, **{METAL_KEY: None})
        await say(context, chat, "metal_off")
        return
    metal = find_metal(arg)
    if metal is None:
        await say(context, chat, "metal_unknown", value=arg[:20], metals=known)
        return
    await svc(context).db(update_preferences, info.id, **{METAL_KEY: metal.symbol})
    await say(context, chat, "metal_set", metal=metal.symbol, product=f"{metal.d_times_dispersion_nm:.2f}")


def _sets_keyboard(sets: list[SetRow], first: int | None = None) -> InlineKeyboardMarkup:
    prefix = "cmp:" if first is None else f"cmp:{first}:"
    return InlineKeyboardMarkup([[InlineKeyboardButton(row.label, callback_data=f"{prefix}{row.job_id}")]
                                 for row in sets if row.job_id != first])


async def cmd_compare(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    sets = await svc(context).db(recent_sets, me(context).id)
    chat = update.effective_chat.id
    if len(sets) < 2:
        await say(context, chat, "compare_few", n=len(sets))
        return
    await say(context, chat, "compare_choose_a", _sets_keyboard(sets))


async def on_compare_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s, info, chat = svc(context), me(context), update.effective_chat.id
    job_a = parse_id(context.match.group(1), Result.job_id)
    job_b = parse_id(context.match.group(2), Result.job_id) if context.match.group(2) else None
    lang = info.language
    if job_a is None or (context.match.group(2) and job_b is None):
        await say(context, chat, "stale_button")
        await answer(update)
        return
    if job_b is None:  # the first set chosen: now the second
        sets = await s.db(recent_sets, info.id)
        chosen = next((row for row in sets if row.job_id == job_a), None)
        if chosen is None or len(sets) < 2:
            await say(context, chat, "stale_button")
        else:
            await edit_or_send(context, update, t(lang, "compare_choose_b", a=chosen.label),
                               _sets_keyboard(sets, job_a))
        await answer(update)
        return
    await answer(update)
    await edit_or_send(context, update, t(lang, "compare_working"))
    try:
        compared = await asyncio.to_thread(s.run_db, compare_jobs, s.store, info.id, job_a, job_b,
                                           user_metal(context), lang)
    except InputError as error:  # a refusal: scaled vs unscaled, too few particles
        await send_text(context, chat, render(lang, error.text))
        return
    if compared is None:
        await say(context, chat, "stale_button")
        return
    await send_text(context, chat, compared.text)
    await context.bot.send_photo(chat, compared.picture, caption=t(lang, "compare_caption"))
    await context.bot.send_document(chat, compared.table, filename="compare.csv")
