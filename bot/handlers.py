"""Telegram handlers: thin adapters from updates to the services, the queue and the texts."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
import traceback
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import accounts, files_in
from bot.example import example_labelme
from bot.i18n import lang_of, t
from bot.logsafe import error_id, redact
from bot.services import Services, UserInfo, ensure_user, set_user_fields, update_preferences
from bot.training import (
    Queued,
    after_labels_keyboard,
    next_option,
    options_keyboard,
    options_text,
    queue_recognition,
    queue_training,
    set_progress_message,
)
from core.metrics import ERRORS_TOTAL, UPDATE_LATENCY

log = logging.getLogger(__name__)
SCALE_RE = re.compile(r"scale\s*=\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?", re.IGNORECASE)
ALBUM_WAIT_S = 0.8


def svc(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.application.bot_data["services"]


def me(context: ContextTypes.DEFAULT_TYPE) -> UserInfo:
    return context.user_data["info"]  # type: ignore[index]


async def refresh(context: ContextTypes.DEFAULT_TYPE, update: Update | None = None) -> UserInfo:
    s = svc(context)
    info = me(context)
    info = await s.db(ensure_user, info.telegram_id, info.username, None, s.settings.admin_ids)
    context.user_data["info"] = info  # type: ignore[index]
    return info


# While one update's files are processed, its first answer replaces the "Checking…" message
# (a ContextVar: PTB runs each update in its own task, so other updates never see it).
_ACK: ContextVar[dict[str, Any] | None] = ContextVar("segbot_ack", default=None)


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
    return await send_text(context, chat_id, t(me(context).language, key, **values), markup)


# Before every handler: access, spam, the user row.


_ARRIVED: ContextVar[float | None] = ContextVar("segbot_arrived", default=None)


async def handled(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Last group: how long the update took to handle (its replies are sent by then)."""
    arrived = _ARRIVED.get()
    if arrived is not None:
        UPDATE_LATENCY.observe(time.monotonic() - arrived)


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    _ARRIVED.set(time.monotonic())
    user = update.effective_user
    if user is None or user.is_bot:
        raise ApplicationHandlerStop
    s = svc(context)
    chat = update.effective_chat
    if not s.allowed(user.id, user.username):
        log.info("refused user %s (allowlist)", user.id)
        if update.callback_query:
            await update.callback_query.answer()
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
        except TelegramError:
            log.warning("could not tell chat about error %s", eid)


# Commands


async def cmd_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "start")


async def cmd_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "help")


async def cmd_example(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    data, n = await asyncio.to_thread(example_labelme)
    await context.bot.send_document(
        update.effective_chat.id,
        data,
        filename="segbot_example.json",
        caption=t(me(context).language, "example_caption", n=n),
    )


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
    s = svc(context)
    await s.db(set_user_fields, me(context).id, language=lang)
    await refresh(context)


async def cmd_lang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    args = [a.lower() for a in context.args or []]
    if args and args[0] in ("en", "ru"):
        await _set_lang(context, args[0])
        await say(context, update.effective_chat.id, "lang_set")
        return
    await say(context, update.effective_chat.id, "lang_choose", _lang_keyboard())


async def cmd_train(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info = await refresh(context)
    if not info.pending_uploads:
        await say(context, update.effective_chat.id, "no_labels")
        return
    await _show_options(context, update.effective_chat.id, info)


async def _show_options(context: ContextTypes.DEFAULT_TYPE, chat_id: int, info: UserInfo) -> None:
    device = svc(context).settings.device
    await context.bot.send_message(
        chat_id,
        options_text(info.train_options, info.language, device),
        reply_markup=options_keyboard(info.train_options, info.language),
    )


async def _report_queued(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, queued: Queued, key: str, **values: Any
) -> None:
    if queued.error == "no_labels":
        await say(context, chat_id, "no_labels")
    elif queued.error == "no_model":
        await say(context, chat_id, "no_model_image")
    elif queued.error == "unavailable":
        await say(context, chat_id, "queue_unavailable")
    elif queued.error:
        await say(context, chat_id, "queue_limit", reason=queued.error)
    else:
        message = await say(context, chat_id, key, job=queued.job_id, pos=queued.position or 1, **values)
        await asyncio.to_thread(
            set_progress_message, svc(context), queued.job_id, chat_id, message.message_id
        )


async def start_training(
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    upload_ids: list[int] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    s = svc(context)
    async with s.locks[me(context).telegram_id]:
        queued = await asyncio.to_thread(queue_training, s, me(context), chat_id, upload_ids, options)
    await _report_queued(context, chat_id, queued, "queued_train")


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
                metrics=m["metrics"],
                active=t(lang, "active_mark") if m["id"] == info.active_model_id else "",
            )
        )
        if len(rows) < 8:
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


def parse_scale(text: str) -> float | None:
    """'7.34', '7,34nm', '0.5um' -> nm per pixel; None when not a positive number."""
    match = re.fullmatch(r"\s*([0-9]*[.,]?[0-9]+)\s*(nm|µm|um)?(/px)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    if (match.group(2) or "nm").lower() in ("µm", "um"):
        value *= 1000.0
    return value if 0 < value < 1e7 else None


def scale_from_caption(caption: str | None) -> float | None:
    match = SCALE_RE.search(caption or "")
    if not match:
        return None
    return parse_scale(match.group(1) + (match.group(2) or ""))


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
    try:
        value = float((context.args or [""])[0].replace(",", "."))
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 0.95:
        await say(context, chat, "threshold_usage", value=f"{info.threshold:g}")
        return
    await svc(context).db(set_user_fields, info.id, score_threshold=value)
    await say(context, chat, "threshold_set", value=f"{value:g}")


async def cmd_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from bot.delivery import counts_text, fmt_num, pooled

    summaries = await svc(context).db(accounts.recent_summaries, me(context).id)
    chat = update.effective_chat.id
    if not summaries:
        await say(context, chat, "stats_none")
        return
    p = pooled(summaries)
    await say(
        context,
        chat,
        "stats",
        n=p["n_images"],
        total=p["total"],
        counts=counts_text(p["counts"]),
        mean=fmt_num(p["mean"]),
        std=fmt_num(p["std"]),
        unit=p["unit"],
    )


async def cmd_export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s, chat = svc(context), update.effective_chat.id
    data = await asyncio.to_thread(
        s.run_db, accounts.export_zip, s.store, s.settings.data_dir, me(context).id
    )
    if data is None:
        await say(context, chat, "export_none")
    elif len(data) > 49 * 2**20:
        await say(context, chat, "export_big", size=len(data) / 2**20)
    else:
        await context.bot.send_document(
            chat, data, filename="segbot_export.zip", caption=t(me(context).language, "export_caption")
        )


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


async def cmd_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info, chat, s = me(context), update.effective_chat.id, svc(context)
    if not info.is_admin:
        await say(context, chat, "admin_only")
        return
    args = context.args or []
    if args and args[0].lower() == "broadcast":
        text = update.effective_message.text.split(None, 2)[2] if len(args) > 1 else ""
        if not text.strip():
            await say(context, chat, "admin", **await s.db(accounts.admin_overview))
            return
        sent = 0
        for telegram_id in await s.db(accounts.all_chat_ids):
            try:
                await context.bot.send_message(telegram_id, text[:4096])
                sent += 1
            except TelegramError as error:
                log.info("broadcast to %s failed: %s", telegram_id, error)
        await say(context, chat, "broadcast_done", n=sent)
        return
    await say(context, chat, "admin", **await s.db(accounts.admin_overview))


async def cmd_unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await say(context, update.effective_chat.id, "unknown_command")


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat.id
    model_id = context.user_data.pop("rename", None)  # type: ignore[union-attr]
    if model_id is not None:
        name = (update.effective_message.text or "").strip()[:60]
        version = await svc(context).db(accounts.rename_model, me(context).id, model_id, name)
        if version is None:
            await say(context, chat, "model_missing")
        else:
            await say(context, chat, "model_renamed", version=version, name=name)
        return
    await say(context, chat, "text_hint")


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    kind = next(
        (
            k
            for k in (
                "sticker",
                "video",
                "voice",
                "audio",
                "animation",
                "video_note",
                "location",
                "contact",
                "poll",
            )
            if getattr(message, k, None)
        ),
        "message",
    )
    await say(context, update.effective_chat.id, "unknown_type", name=kind)


# Buttons


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    data = query.data or ""
    await query.answer()
    chat = update.effective_chat.id
    s = svc(context)
    info = me(context)
    if data.startswith("lang:") and data[5:] in ("en", "ru"):
        await _set_lang(context, data[5:])
        await query.edit_message_text(t(data[5:], "lang_set"))
    elif data == "train:go":
        await query.edit_message_reply_markup(None)
        await start_training(context, chat)
    elif data == "train:more":
        await say(context, chat, "add_more")
    elif data == "train:opts":
        await _show_options(context, chat, await refresh(context))
    elif data.startswith("opt:"):
        options = next_option(info.train_options, data[4:])
        await s.db(update_preferences, info.id, train_options=options)
        await query.edit_message_text(
            options_text(options, info.language, s.settings.device),
            reply_markup=options_keyboard(options, info.language),
        )
    elif data.startswith("m:") and data.count(":") == 2 and data.rsplit(":", 1)[1].isdigit():
        await _model_button(context, chat, data.split(":")[1], int(data.rsplit(":", 1)[1]))
    elif data == "forget:yes":
        await query.edit_message_reply_markup(None)
        async with s.locks[info.telegram_id]:
            await asyncio.to_thread(s.run_db, accounts.forget_user, s.store, s.settings.data_dir, info.id)
        context.user_data.clear()  # type: ignore[union-attr]
        await context.bot.send_message(chat, t(info.language, "forgotten"))
    elif data == "forget:no":
        await query.edit_message_text(t(info.language, "cancelled"))
    elif data.startswith("corr:") and data[5:].isdigit():
        await query.edit_message_reply_markup(None)
        plan = await s.db(accounts.correction_plan, info.id, int(data[5:]))
        if plan is None:
            await say(context, chat, "stale_button")
        else:
            await start_training(context, chat, plan["upload_ids"], plan["options"])
    else:
        await say(context, chat, "stale_button")


async def _model_button(context: ContextTypes.DEFAULT_TYPE, chat: int, action: str, model_id: int) -> None:
    s, info = svc(context), me(context)
    if action == "use":
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
            context.user_data["rename"] = model_id  # type: ignore[index]
            await say(context, chat, "rename_prompt", version=version)
    elif action == "del":
        version = await asyncio.to_thread(s.run_db, accounts.delete_model, s.settings, info.id, model_id)
        await say(context, chat, "model_missing" if version is None else "model_deleted", version=version)
    else:
        await say(context, chat, "stale_button")


# Files: documents, photos, albums


async def on_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message.media_group_id:
        albums: dict[tuple[int, str], dict[str, Any]] = context.bot_data.setdefault("albums", {})
        key = (message.chat_id, message.media_group_id)
        album = albums.get(key)
        if album is None:
            albums[key] = {"messages": [message], "last": time.monotonic()}
            context.job_queue.run_once(
                _flush_album,
                ALBUM_WAIT_S,
                data=key,
                chat_id=message.chat_id,
                user_id=update.effective_user.id,
            )
        else:
            album["messages"].append(message)
            album["last"] = time.monotonic()
        return
    await handle_files(context, message.chat_id, [message])


async def _flush_album(context: ContextTypes.DEFAULT_TYPE) -> None:
    key = context.job.data
    albums = context.bot_data.get("albums", {})
    album = albums.get(key)
    if album is None:
        return
    waited = time.monotonic() - album["last"]
    if waited < ALBUM_WAIT_S:
        context.job_queue.run_once(
            _flush_album,
            ALBUM_WAIT_S - waited + 0.05,
            data=key,
            chat_id=context.job.chat_id,
            user_id=context.job.user_id,
        )
        return
    albums.pop(key, None)
    try:
        await handle_files(context, key[0], album["messages"])
    except Exception as error:  # noqa: BLE001 - jobs have no update: report like the error handler
        eid = error_id()
        log.error("error %s in an album: %s", eid, redact("".join(traceback.format_exception(error))))
        await say(context, key[0], "error", id=eid)


async def _download(context: ContextTypes.DEFAULT_TYPE, file_id: str, folder: Path) -> bytes:
    tg_file = await context.bot.get_file(file_id)
    target = folder / f"dl-{file_id[-24:].replace('/', '_')}"
    await tg_file.download_to_drive(target)
    return await asyncio.to_thread(target.read_bytes)


async def handle_files(context: ContextTypes.DEFAULT_TYPE, chat: int, messages: list[Message]) -> None:
    s = svc(context)
    async with s.locks[me(context).telegram_id]:
        await _handle_files(context, s, chat, messages)


async def _handle_files(
    context: ContextTypes.DEFAULT_TYPE, s: Services, chat: int, messages: list[Message]
) -> None:
    ack = await context.bot.send_message(chat, t(me(context).language, "downloading", n=len(messages)))
    state = {"chat": chat, "id": ack.message_id, "used": False}
    token = _ACK.set(state)
    try:
        await _process_files(context, s, chat, messages)
    finally:
        _ACK.reset(token)
        if not state["used"]:
            try:
                await context.bot.delete_message(chat, ack.message_id)
            except TelegramError:
                pass


async def _process_files(
    context: ContextTypes.DEFAULT_TYPE, s: Services, chat: int, messages: list[Message]
) -> None:
    info = await refresh(context)
    limit = s.settings.max_upload_mb * 2**20
    caption = next((m.caption for m in messages if m.caption), None)
    items: list[files_in.Incoming] = []
    with tempfile.TemporaryDirectory(dir=s.store.tmp, prefix="tg-") as tmp:
        for m in messages:
            if m.document is not None:
                name, size, file_id, photo = (
                    (m.document.file_name or "file"),
                    m.document.file_size,
                    m.document.file_id,
                    False,
                )
            elif m.photo:
                best = m.photo[-1]
                name, size, file_id, photo = f"photo_{m.message_id}.jpg", best.file_size, best.file_id, True
            else:
                continue
            if size and size > limit:
                await say(context, chat, "too_big", size=size / 2**20, limit=s.settings.max_upload_mb)
                continue
            data = await _download(context, file_id, Path(tmp))
            if len(data) > limit:
                await say(context, chat, "too_big", size=len(data) / 2**20, limit=s.settings.max_upload_mb)
                continue
            items.append(files_in.Incoming(files_in.basename(name)[:200] or "file", data, photo))
    jsons, images, problems = await asyncio.to_thread(_sort, items, int(limit * 4))
    for key, values in problems:
        await say(context, chat, key, **values)
    awaiting: dict[str, files_in.Incoming] = context.user_data.setdefault("awaiting", {})  # type: ignore[union-attr]
    for image in images:
        pending = awaiting.pop(image.name.lower(), None)
        if pending is not None:
            jsons.append(pending)
    used: set[str] = set()
    if jsons:
        image_map = {i.name: i.data for i in images}
        outcome = await asyncio.to_thread(files_in.process_labels, s, info, jsons, image_map, info.language)
        used = outcome.used_images
        await _report_labels(context, chat, outcome)
    rest = [i for i in images if i.name.lower() not in used]
    if rest:
        await _recognise(context, s, chat, rest, scale_from_caption(caption))


def _sort(items: list[files_in.Incoming], max_zip_total: int):
    jsons, images, problems = [], [], []
    for item in items:
        kind = files_in.kind_of(item.name, item.data)
        if kind == "zip":
            try:
                members = files_in.expand_zip(item.name, item.data, max_zip_total)
            except ValueError as error:
                problems.append(("zip_bad", {"name": item.name, "reason": str(error)}))
                continue
            inner = [(files_in.kind_of(m.name, m.data), m) for m in members]
            usable = [(k, m) for k, m in inner if k in ("json", "image")]
            if not usable:
                problems.append(("zip_empty", {"name": item.name}))
            for k, m in usable:
                (jsons if k == "json" else images).append(m)
        elif kind == "json":
            jsons.append(item)
        elif kind == "image":
            images.append(item)
        else:
            problems.append(("unknown_type", {"name": item.name}))
    return jsons, images, problems


async def _report_labels(
    context: ContextTypes.DEFAULT_TYPE, chat: int, outcome: files_in.LabelsOutcome
) -> None:
    lang = me(context).language
    for name, reason in outcome.errors[:10]:
        if name in reason:  # the annotations' messages name the file already
            await send_text(context, chat, reason)
        else:
            await say(context, chat, "bad_file", name=name, reason=reason)
    awaiting = context.user_data.setdefault("awaiting", {})  # type: ignore[union-attr]
    for json_name, image_name, data in outcome.need_image:
        awaiting[image_name.lower()] = files_in.Incoming(json_name, data)
        await say(context, chat, "need_image", name=json_name, image=image_name)
    normal = [a for a in outcome.accepted if a.correction_of is None]
    for item in outcome.accepted:
        if item.correction_of is not None:
            markup = InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton(
                            t(lang, "btn_train_correction"), callback_data=f"corr:{item.upload_id}"
                        )
                    ]
                ]
            )
            await say(
                context,
                chat,
                "correction",
                markup,
                name=item.correction_of["image_name"],
                n=item.correction_of["n"],
            )
    if normal:
        parts = [t(lang, "summary_head", n=outcome.pending_count)]
        parts += [f"• {a.name}: {a.summary_text}" for a in normal]
        parts.append(t(lang, "summary_buttons_hint"))
        await send_text(context, chat, "\n".join(parts), after_labels_keyboard(lang))


async def _recognise(
    context: ContextTypes.DEFAULT_TYPE,
    s: Services,
    chat: int,
    images: list[files_in.Incoming],
    nm_per_px: float | None,
) -> None:
    info = me(context)
    good = []
    for image in images:
        reason = await asyncio.to_thread(files_in.check_image, s, image)
        if reason:
            await send_text(context, chat, reason if image.name in reason else f"{image.name}: {reason}")
        else:
            good.append(image)
    if not good:
        return
    if info.active_model_id is None:
        await say(context, chat, "no_model_image")
        return
    upload_ids = await asyncio.to_thread(files_in.store_images, s, info.id, good)
    queued = await asyncio.to_thread(queue_recognition, s, info, chat, upload_ids, nm_per_px)
    await _report_queued(context, chat, queued, "queued_predict", n=len(good))
    if any(i.photo for i in good):
        await say(context, chat, "photo_note")
