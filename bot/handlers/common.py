"""What every handler uses: the services, the current user, and replies (with the one
"Checking…" message a file upload's first answer replaces)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from telegram import Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.i18n import t
from bot.lanes import COSMETIC_ARGS
from bot.services import Services, UserInfo, ensure_user

log = logging.getLogger(__name__)
T = TypeVar("T")
# Telegram's refusals of an edit or answer that only decorates what was done: the message shows it
# already, is gone or too old to edit, or the press was answered before / has expired.
NOT_MODIFIED = "message is not modified"
GONE = ("message to edit not found", "message can't be edited", "message to delete not found")
EXPIRED = ("query is too old", "query id is invalid")

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
def first_reply_edits(chat_id: int, message_id: int | None) -> Iterator[dict[str, Any]]:
    """Within this block, the first send_text to chat_id edits message_id instead (None: the
    acknowledgement is not sent yet; state["ack"] may hold the task sending it, which the first
    answer then waits for and edits; without one the answer is a new message); the state says
    whether that happened ("used")."""
    state = {"chat": chat_id, "id": message_id, "used": False, "ack": None}
    token = _ACK.set(state)
    try:
        yield state
    finally:
        _ACK.reset(token)


async def acknowledged(state: dict[str, Any]) -> int | None:
    """The id of the acknowledgement in `state` once it is sent (None: there is none)."""
    if state["id"] is None and state["ack"] is not None:
        try:
            state["id"] = (await state["ack"]).message_id
        except TelegramError as error:
            log.info("the acknowledgement was not sent: %s", error)
        state["ack"] = None
    return state["id"]


async def send_text(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str, markup: Any = None
) -> Message:
    ack = _ACK.get()
    if ack is not None and ack["chat"] == chat_id and not ack["used"]:
        ack["used"] = True
        message_id = await acknowledged(ack)
        if message_id is not None:
            try:
                edited = await context.bot.edit_message_text(
                    text[:4096], chat_id=chat_id, message_id=message_id, reply_markup=markup
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


def harmless(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, BadRequest) and any(p in text for p in (NOT_MODIFIED, *GONE, *EXPIRED))


async def cosmetic(call: Awaitable[T]) -> T | None:
    """Await an edit or a button answer made after the action it decorates: Telegram refusing it
    as harmless (see above) is no failure, so a second press or an old message never errors."""
    try:
        return await call
    except BadRequest as error:
        if not harmless(error):
            raise
        log.info("cosmetic call refused: %s", error)
        return None


async def answer(update: Update, text: str | None = None) -> None:
    """Answer the button press (once; a late or repeated answer is harmless)."""
    if update.callback_query is not None:
        await cosmetic(update.callback_query.answer(text))


def _pressed(update: Update) -> tuple[int, int] | None:
    """(chat, message id) of the message under the pressed button; an old one arrives as an
    InaccessibleMessage, which PTB's shortcuts refuse to edit, so the ids are used directly."""
    query = update.callback_query
    message = query.message if query is not None else None
    return (message.chat.id, message.message_id) if message is not None else None


async def drop_keyboard(context: ContextTypes.DEFAULT_TYPE, update: Update) -> None:
    """Remove the buttons of the pressed message (already gone: nothing to do). In the rate
    limiter's bulk lane it may wait long on a busy day, so it runs beside the handler (which would
    otherwise hold one of the Application's concurrent-update slots), and after a few seconds'
    wait it is not sent at all (COSMETIC_ARGS); the Application awaits it on stop."""
    pressed = _pressed(update)
    if pressed is not None:
        chat, message_id = pressed
        bot: Any = context.bot
        edit = cosmetic(bot.edit_message_reply_markup(chat, message_id, reply_markup=None,
                                                      rate_limit_args=COSMETIC_ARGS))
        if context.application.running:
            context.application.create_task(edit, update=update, name=f"drop keyboard {chat}/{message_id}")
        else:  # stopping: a task would not be awaited any more
            await edit


async def edit_or_send(
    context: ContextTypes.DEFAULT_TYPE, update: Update, text: str, markup: Any = None
) -> None:
    """Show `text` in place of the pressed message; a new message when that one is gone."""
    pressed = _pressed(update)
    if pressed is not None:
        try:
            await context.bot.edit_message_text(
                text[:4096], chat_id=pressed[0], message_id=pressed[1], reply_markup=markup
            )
            return
        except BadRequest as error:
            lowered = str(error).lower()
            if NOT_MODIFIED in lowered:
                return
            if not any(p in lowered for p in GONE):
                raise
    await context.bot.send_message(update.effective_chat.id, text[:4096], reply_markup=markup)
