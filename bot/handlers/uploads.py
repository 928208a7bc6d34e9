"""Files sent to the bot (documents, photos, albums): downloaded, sorted into labels and images;
labels are validated and kept for training, images are queued for recognition."""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
import time
import traceback
from pathlib import Path

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes

from bot import files_in
from bot.captions import images_summary
from bot.handlers import scale
from bot.handlers.common import acknowledged, first_reply_edits, me, refresh, say, send_text, svc
from bot.handlers.training import report_queued
from bot.i18n import t
from bot.logsafe import error_id, redact
from bot.scale import scale_from_caption
from bot.services import Services, user_info
from bot.state import ALBUM, AWAITING_IMAGE, TTL, image_key
from bot.training import after_labels_keyboard, queue_recognition
from bot.webapp import images_markup
from storage.pending import drop_states, live_states, put_state, take_state

log = logging.getLogger(__name__)
ACK_AFTER_S = 0.3  # an upload answered faster than this gets no "Checking…" first (a message saved)
ALBUM_WAIT_S = 0.8  # an album arrives as separate messages: wait this long after the last one


async def on_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if not message.media_group_id:
        await handle_files(context, message.chat_id, [message])
        return
    # each part of an album goes to the database as it comes: a restart loses none
    group, info = message.media_group_id, me(context)
    part = {
        "chat": message.chat_id,
        "telegram_id": info.telegram_id,
        "message": message.to_dict(),
        "at": time.time(),
    }
    await svc(context).db(put_state, info.id, ALBUM, f"{group}:{message.message_id}", part, TTL[ALBUM])
    schedule_album(context.application, info.id, info.telegram_id, message.chat_id, group, ALBUM_WAIT_S)


def schedule_album(
    app: Application, user_id: int, telegram_id: int, chat: int, group: str, delay: float
) -> None:
    """One flush per album in this process (the parts' rows say when the last one came)."""
    scheduled: set[tuple[int, str]] = app.bot_data.setdefault("albums", set())
    if (user_id, group) in scheduled:
        return
    scheduled.add((user_id, group))
    app.job_queue.run_once(
        _flush_album, delay, data=(user_id, chat, group), chat_id=chat, user_id=telegram_id
    )


async def resume_albums(app: Application) -> int:
    """After a restart: flush the albums whose parts came before it; how many."""
    services: Services = app.bot_data["services"]
    parts = await services.db(live_states, ALBUM)
    groups = {(uid, key.rsplit(":", 1)[0]): p for uid, key, p in parts}
    for (uid, group), part in groups.items():
        schedule_album(app, uid, int(part["telegram_id"]), int(part["chat"]), group, 0.1)
    return len(groups)


def _take_album(session, user_id: int, group: str) -> list[dict]:
    parts = live_states(session, ALBUM, user_id, f"{group}:")
    drop_states(session, user_id, ALBUM, [key for _, key, _ in parts])
    return [p for _, _, p in parts]


async def _flush_album(context: ContextTypes.DEFAULT_TYPE) -> None:
    user_id, chat, group = context.job.data
    s = svc(context)
    parts = await s.db(live_states, ALBUM, user_id, f"{group}:")
    waited = time.time() - max((float(p["at"]) for _, _, p in parts), default=0.0)
    if parts and waited < ALBUM_WAIT_S:
        context.job_queue.run_once(
            _flush_album,
            ALBUM_WAIT_S - waited + 0.05,
            data=context.job.data,
            chat_id=context.job.chat_id,
            user_id=context.job.user_id,
        )
        return
    # no longer scheduled before the parts are taken: a part stored after this gets a new flush
    context.bot_data.setdefault("albums", set()).discard((user_id, group))
    taken = await s.db(_take_album, user_id, group)
    info = await s.db(user_info, user_id, s.settings.admin_ids)
    if not taken or info is None:
        return
    context.user_data["info"] = info  # type: ignore[index] # no gate ran for this job
    messages = sorted((Message.de_json(p["message"], context.bot) for p in taken), key=lambda m: m.message_id)
    try:
        await handle_files(context, chat, messages)
    except Exception as error:  # noqa: BLE001 - jobs have no update: report like the error handler
        eid = error_id()
        log.error("error %s in an album: %s", eid, redact("".join(traceback.format_exception(error))))
        await say(context, chat, "error", id=eid)


async def handle_files(context: ContextTypes.DEFAULT_TYPE, chat: int, messages: list[Message]) -> None:
    """One upload (a message or an album), in order with this user's other uploads. An answer ready
    within ACK_AFTER_S is the first reply; a slower one replaces a "Checking…" message sent
    meanwhile, which is deleted when nothing answered (one message per upload where one does)."""
    s = svc(context)
    async with s.locks[me(context).telegram_id]:
        with first_reply_edits(chat, None) as state:
            work = asyncio.ensure_future(_process_files(context, s, chat, messages))
            try:
                await asyncio.wait({work}, timeout=ACK_AFTER_S)
                if not work.done() and not state["used"]:  # the answer then edits it
                    state["ack"] = asyncio.ensure_future(context.bot.send_message(
                        chat, t(me(context).language, "downloading", n=len(messages))
                    ))
                await work
            finally:
                work.cancel()  # only if this handler itself was cancelled
                if await acknowledged(state) is not None and not state["used"]:
                    try:  # nothing answered
                        await context.bot.delete_message(chat, state["id"])
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
    # a LabelMe file sent earlier without its image (even before a restart) is completed now
    for image in images:
        pending = await s.db(take_state, info.id, AWAITING_IMAGE, image_key(image.name))
        if pending is not None:
            jsons.append(files_in.Incoming(pending["name"], base64.b64decode(pending["data"])))
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
    info = me(context)
    lang = info.language
    for name, reason in outcome.errors[:10]:
        if name in reason:  # the annotations' messages name the file already
            await send_text(context, chat, reason)
        else:
            await say(context, chat, "bad_file", name=name, reason=reason)
    for json_name, image_name, data in outcome.need_image:
        waiting = {"name": json_name, "data": base64.b64encode(data).decode("ascii")}
        await svc(context).db(
            put_state, info.id, AWAITING_IMAGE, image_key(image_name), waiting, TTL[AWAITING_IMAGE]
        )
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
    """Readable images are summarised (their scale and where it came from, the info bar left out),
    stored and queued; one whose scale is an unsure scale bar reading (and no scale set by the user)
    is stored and asked about: its job is queued with the answer (bot/handlers/scale.py)."""
    info = me(context)
    good: list[tuple[files_in.Incoming, files_in.ImageFacts]] = []
    for image in images:
        facts = await asyncio.to_thread(files_in.check_image, s, image, info.language)
        if isinstance(facts, str):
            await send_text(context, chat, facts if image.name in facts else f"{image.name}: {facts}")
        else:
            good.append((image, facts))
    if not good:
        return
    if info.active_model_id is None and not s.settings.webapp_url:
        await say(context, chat, "no_model_image")
        return
    if info.active_model_id is None:  # kept all the same: she can label it on the page (Label)
        ids = await asyncio.to_thread(files_in.store_images, s, info.id, [i for i, _ in good])
        named = [(uid, image.name) for uid, (image, _) in zip(ids, good, strict=True)]
        await say(context, chat, "no_model_label", images_markup(s.settings, info.language, named))
        return
    user_scale = nm_per_px if nm_per_px is not None else info.nm_per_px  # the job's rule: user first
    named = [(image.name, facts) for image, facts in good]
    await send_text(context, chat, images_summary(info.language, named, user_scale))
    held = [facts.unsure and user_scale is None for _, facts in good]
    summaries = [scale.ask_summary(facts) if ask else {} for (_, facts), ask in zip(good, held, strict=True)]
    upload_ids = await asyncio.to_thread(files_in.store_images, s, info.id, [i for i, _ in good], summaries)
    now = [uid for uid, ask in zip(upload_ids, held, strict=True) if not ask]
    if now:
        queued = await asyncio.to_thread(queue_recognition, s, info, chat, now, nm_per_px)
        await report_queued(context, chat, queued, "queued_predict", n=len(now))
    for uid, (image, facts), ask in zip(upload_ids, good, held, strict=True):
        if ask:
            await scale.ask_scale(context, chat, uid, image.name, facts)
    if any(i.photo for i, _ in good):
        await say(context, chat, "photo_note")
