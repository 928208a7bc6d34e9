"""What every handler uses: the services, the current user, and replies (with the one
"Checking…" message a file upload's first answer replaces)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from telegram import Message
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.i18n import t
from bot.services import Services, UserInfo, ensure_user

log = logging.getLogger(__name__)

# While one update's files are processed, its first answer replaces the "Checking…" message
# (a ContextVar: PTB runs each update in its own task, so other updates never see it).
_ACK: ContextVar[dict[str, Any] | None] = ContextVar("segbot_ack", default=None)


def svc(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.application.bot_data["services"]


def me(context: ContextTypes.DEFAULT_TYPE) -> UserInfo:
    """The user's row as the gate loaded it for this update."""
    return context.user_data["info"]  # type: ignore[index]


async def refresh(context: ContextTypes.DEFAULT_TYPE) -> UserInfo:
    """Reload the user's row (after a change, or where another update may have changed it)."""
    s = svc(context)
    info = me(context)
    info = await s.db(ensure_user, info.telegram_id, info.username, None, s.settings.admin_ids)
    context.user_data["info"] = info  # type: ignore[index]
    return info


@contextmanager
def first_reply_edits(chat_id: int, message_id: int) -> Iterator[dict[str, Any]]:
    """Within this block, the first send_text to chat_id edits message_id instead; the state says
    whether that happened ("used")."""
    state = {"chat": chat_id, "id": message_id, "used": False}
    token = _ACK.set(state)
    try:
        yield state
    finally:
        _ACK.reset(token)


async def send_text(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str, markup: Any = None
) -> Message:
    ack = _ACK.get()
    if ack is not None and ack["chat"] == chat_id and not ack["used"]:
        ack["used"] = True
        try:
            edited = await context.bot.edit_message_text(
                text[:4096], chat_id=chat_id, message_id=ack["id"], reply_markup=markup
            )
            if isinstance(edited, Message):
                return edited
        except BadRequest as error:
            log.info("could not edit the acknowledgement: %s", error)
    return await context.bot.send_message(chat_id, text[:4096], reply_markup=markup)


async def say(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, key: str, markup: Any = None, **values: Any
) -> Message:
    """The text `key` in the user's language."""
    return await send_text(context, chat_id, t(me(context).language, key, **values), markup)
