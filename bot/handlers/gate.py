"""Around every update: the gate before (access, spam, the user's row), the latency after, and the
error handler (an id the user can quote, the traceback redacted in the log)."""

from __future__ import annotations

import logging
import time
import traceback
from contextvars import ContextVar

from sqlalchemy.exc import IntegrityError
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.handlers.common import answer, svc
from bot.i18n import lang_of, t
from bot.logsafe import error_id, redact
from bot.services import UserInfo, ensure_user
from core.metrics import ERRORS_TOTAL, UPDATE_LATENCY

log = logging.getLogger(__name__)
_ARRIVED: ContextVar[float | None] = ContextVar("segbot_arrived", default=None)


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """First group: refuse strangers and floods (stopping the update), else load the user's row."""
    _ARRIVED.set(time.monotonic())
    user = update.effective_user
    if user is None or user.is_bot:
        raise ApplicationHandlerStop
    s = svc(context)
    chat = update.effective_chat
    if not s.allowed(user.id, user.username):
        log.info("refused user %s (allowlist)", user.id)
        await answer(update)
        if chat is not None:
            await context.bot.send_message(chat.id, t(lang_of(user.language_code), "denied", id=user.id))
        raise ApplicationHandlerStop
    if s.too_fast(user.id):
        if chat is not None and s.should_warn(user.id):
            await context.bot.send_message(chat.id, t(lang_of(user.language_code), "slow_down"))
        raise ApplicationHandlerStop
    try:
        info = await s.db(ensure_user, user.id, user.username, user.language_code, s.settings.admin_ids)
    except IntegrityError:  # a concurrent update of the same new user created the row first
        info = await s.db(ensure_user, user.id, user.username, user.language_code, s.settings.admin_ids)
    context.user_data["info"] = info  # type: ignore[index]


async def handled(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Last group: how long the update took to handle (its replies are sent by then)."""
    arrived = _ARRIVED.get()
    if arrived is not None:
        UPDATE_LATENCY.observe(time.monotonic() - arrived)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    eid = error_id()
    error = context.error
    ERRORS_TOTAL.labels(service="bot").inc()
    detail = "".join(traceback.format_exception(error)) if error else "unknown"
    log.error("error %s while handling an update: %s", eid, redact(detail))
    if isinstance(update, Update) and update.effective_chat is not None:
        info = context.user_data.get("info") if context.user_data is not None else None
        lang = info.language if isinstance(info, UserInfo) else "en"
        try:
            await context.bot.send_message(update.effective_chat.id, t(lang, "error", id=eid))
            await answer(update)  # a press whose handler failed before answering stops spinning
        except TelegramError:
            log.warning("could not tell chat about error %s", eid)
