"""Files sent to the bot (documents, photos, albums): downloaded, sorted into labels and images;
labels are validated and kept for training, images are queued for recognition."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot import files_in
from bot.handlers.common import first_reply_edits, me, refresh, say, send_text, svc
from bot.handlers.training import report_queued
from bot.i18n import t
from bot.logsafe import error_id, redact
from bot.scale import scale_from_caption
from bot.services import Services
from bot.training import after_labels_keyboard, queue_recognition

log = logging.getLogger(__name__)
ALBUM_WAIT_S = 0.8  # an album arrives as separate messages: wait this long after the last one


async def on_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if not message.media_group_id:
        await handle_files(context, message.chat_id, [message])
        return
    albums: dict[tuple[int, str], dict[str, Any]] = context.bot_data.setdefault("albums", {})
    key = (message.chat_id, message.media_group_id)
    album = albums.get(key)
    if album is None:
        albums[key] = {"messages": [message], "last": time.monotonic()}
        context.job_queue.run_once(
            _flush_album, ALBUM_WAIT_S, data=key, chat_id=message.chat_id, user_id=update.effective_user.id
        )
    else:
        album["messages"].append(message)
        album["last"] = time.monotonic()


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


async def handle_files(context: ContextTypes.DEFAULT_TYPE, chat: int, messages: list[Message]) -> None:
    """One upload (a message or an album), in order with this user's other uploads; the first answer
    replaces the "Checking…" message, which is deleted when nothing answered."""
    s = svc(context)
    async with s.locks[me(context).telegram_id]:
        ack = await context.bot.send_message(chat, t(me(context).language, "downloading", n=len(messages)))
        with first_reply_edits(chat, ack.message_id) as state:
            try:
                await _process_files(context, s, chat, messages)
            finally:
                if not state["used"]:
                    try:
                        await context.bot.delete_message(chat, ack.message_id)
                    except TelegramError:
                        pass


async def _download(context: ContextTypes.DEFAULT_TYPE, file_id: str, folder: Path) -> bytes:
    tg_file = await context.bot.get_file(file_id)
    target = folder / f"dl-{file_id[-24:].replace('/', '_')}"
    await tg_file.download_to_drive(target)
    return await asyncio.to_thread(target.read_bytes)


async def _receive(
    context: ContextTypes.DEFAULT_TYPE, s: Services, chat: int, messages: list[Message]
) -> list[files_in.Incoming]:
    """The messages' files, downloaded; one over the size limit is refused with a message."""
    limit = s.settings.max_upload_mb * 2**20
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
            if size and size > limit:  # Telegram's own figure: no download at all
                await say(context, chat, "too_big", size=size / 2**20, limit=s.settings.max_upload_mb)
                continue
            data = await _download(context, file_id, Path(tmp))
            if len(data) > limit:
                await say(context, chat, "too_big", size=len(data) / 2**20, limit=s.settings.max_upload_mb)
                continue
            items.append(files_in.Incoming(files_in.basename(name)[:200] or "file", data, photo))
    return items


async def _process_files(
    context: ContextTypes.DEFAULT_TYPE, s: Services, chat: int, messages: list[Message]
) -> None:
    info = await refresh(context)
    caption = next((m.caption for m in messages if m.caption), None)
    items = await _receive(context, s, chat, messages)
    max_zip_total = int(s.settings.max_upload_mb * 2**20 * 4)
    jsons, images, problems = await asyncio.to_thread(files_in.sort_incoming, items, max_zip_total)
    for key, values in problems:
        await say(context, chat, key, **values)
    # a LabelMe file sent earlier without its image is completed by that image now
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
    for item in outcome.accepted:
        if item.correction_of is not None:
            data = f"corr:{item.upload_id}"
            button = InlineKeyboardButton(t(lang, "btn_train_correction"), callback_data=data)
            await say(
                context,
                chat,
                "correction",
                InlineKeyboardMarkup([[button]]),
                name=item.correction_of["image_name"],
                n=item.correction_of["n"],
            )
    normal = [a for a in outcome.accepted if a.correction_of is None]
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
    await report_queued(context, chat, queued, "queued_predict", n=len(good))
    if any(i.photo for i in good):
        await say(context, chat, "photo_note")
