"""The user's models: /models with a row of buttons per model (use, rename, delete), and the new
name typed after "rename"."""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import accounts
from bot.captions import model_line_figures
from bot.handlers.common import answer, me, refresh, say, svc
from bot.i18n import t
from bot.parsing import parse_id
from bot.state import RENAME, TTL
from storage.models import TrainedModel
from storage.pending import put_state, take_state

MODEL_PATTERN = r"^m:(use|ren|del):(\d+)\Z"
BUTTON_ROWS = 8  # Telegram keyboards get unwieldy beyond this


async def cmd_models(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info = await refresh(context)
    models = await svc(context).db(accounts.list_models, info.id)
    lang = info.language
    if not models:
        await say(context, update.effective_chat.id, "no_models")
        return
    lines, rows = [], []
    for m in models:
        lines.append(
            t(
                lang,
                "model_line",
                version=m["version"],
                name=f"'{m['name']}' " if m["name"] else "",
                status=m["status"],
                date=m["date"],
                metrics=model_line_figures(lang, m["metrics"]),
                active=t(lang, "active_mark") if m["id"] == info.active_model_id else "",
            )
        )
        if len(rows) < BUTTON_ROWS:
            rows.append(
                [
                    InlineKeyboardButton(
                        t(lang, "btn_use", version=m["version"]), callback_data=f"m:use:{m['id']}"
                    ),
                    InlineKeyboardButton(
                        t(lang, "btn_rename", version=m["version"]), callback_data=f"m:ren:{m['id']}"
                    ),
                    InlineKeyboardButton(
                        t(lang, "btn_delete", version=m["version"]), callback_data=f"m:del:{m['id']}"
                    ),
                ]
            )
    await context.bot.send_message(
        update.effective_chat.id, "\n".join(lines)[:4096], reply_markup=InlineKeyboardMarkup(rows)
    )


async def on_model_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Use, rename or delete one of the user's models; another user's model id is "missing"."""
    await _model_action(context, update.effective_chat.id)
    await answer(update)  # after the action: answering may fail, the action must not


async def _model_action(context: ContextTypes.DEFAULT_TYPE, chat: int) -> None:
    s, info = svc(context), me(context)
    action, model_id = context.match.group(1), parse_id(context.match.group(2), TrainedModel.id)
    if model_id is None:  # more digits than any id: forged or garbled
        await say(context, chat, "stale_button")
    elif action == "use":
        version, ready = await s.db(accounts.use_model, info.id, model_id)
        if version is None:
            await say(context, chat, "model_missing")
        else:
            await say(context, chat, "model_used" if ready else "model_not_ready", version=version)
    elif action == "ren":
        version = await s.db(accounts.model_version, info.id, model_id)
        if version is None:
            await say(context, chat, "model_missing")
        else:
            await s.db(put_state, info.id, RENAME, "", {"model_id": model_id}, TTL[RENAME])
            await say(context, chat, "rename_prompt", version=version)
    else:
        version = await asyncio.to_thread(s.run_db, accounts.delete_model, s.store, info.id, model_id)
        await say(context, chat, "model_missing" if version is None else "model_deleted", version=version)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text: the new name when a rename is pending, else a hint what to send."""
    chat = update.effective_chat.id
    pending = await svc(context).db(take_state, me(context).id, RENAME)  # kept across restarts
    model_id = (pending or {}).get("model_id")
    if model_id is None:
        await say(context, chat, "text_hint")
        return
    name = (update.effective_message.text or "").strip()[:60]
    version = await svc(context).db(accounts.rename_model, me(context).id, model_id, name)
    if version is None:
        await say(context, chat, "model_missing")
    else:
        await say(context, chat, "model_renamed", version=version, name=name)
