"""The bot's periodic work (a PTB job every ~1 s): deliver outbox notices exactly once and keep
each job's progress message up to date, throttled.

Exactly once: a notice is marked sent right after Telegram accepted it, by the only process that
delivers (one bot), one notice at a time; a notice that failed transiently stays pending for the next
tick, one Telegram refuses for good (user blocked the bot) is marked sent so it never loops. A notice
of several messages (a result: photo, then its files) records each accepted part (parts_sent), so a
failure or restart in between resumes with the next part instead of repeating the first.

Everything sent here goes in the rate limiter's bulk lane (bot/lanes.py): replies to users go first.
Notices of different chats go side by side (one chat's in order), and neither they nor progress edits
are waited for by the tick; a newer text of a progress message replaces one still waiting, so only
the newest is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from telegram import InputMediaDocument
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import ContextTypes

from bot.captions import caption_for, pooled_caption, ready_text
from bot.i18n import t
from bot.lanes import BULK_ARGS, bulk
from bot.result_files import DOCUMENT_ROLES, output_name, read_stored, set_file_name, zip_results
from bot.services import Services
from bot.webapp import correction_saved, labels_saved, result_markup
from core.i18n import N_, load_text
from jobqueue.estimates import Rates, Wait, remaining_s, wait_ahead
from jobqueue.store import queue_position
from jobs.params import ParamsError, PredictParams
from storage.models import Job, JobKind, JobState, ModelStatus, Result, TrainedModel, User
from storage.notices import NoticeKind, mark_part_sent, mark_sent, pending_notices

log = logging.getLogger(__name__)
BIG_SET = 4  # more results than this in one job -> one zip
PENDING_READ = 30  # notices read per tick (those of chats being delivered to are skipped)
ALBUM_MAX = 10  # documents in one album (Telegram's limit)
Part = Callable[[], Awaitable[object]]  # sends one message (or one album) of a notice


@dataclass
class NoticeView:
    id: int
    kind: str
    chat_id: int
    lang: str
    job_id: int | None
    payload: dict[str, Any]
    model: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    parts_sent: int = 0
    set_files: dict[str, str] = field(default_factory=dict)  # a predict job's: role -> sha
    metal: str | None = None  # a recognition: the metal it was queued with (/metal), for its captions


def _load_pending(session, limit: int) -> list[NoticeView]:
    views = []
    for notice in pending_notices(session, limit):
        user = session.get(User, notice.user_id)
        if user is None:
            continue
        job = session.get(Job, notice.job_id) if notice.job_id else None
        view = NoticeView(
            notice.id,
            notice.kind,
            (job.chat_id if job and job.chat_id else user.telegram_id),
            user.language or "en",
            notice.job_id,
            dict(notice.payload or {}),
            error=(job.error if job else None),
            parts_sent=int(notice.parts_sent or 0),
            metal=_job_metal(job, (user.preferences or {}).get("metal")),
        )
        if notice.kind == NoticeKind.TRAIN_DONE:
            model = None
            if notice.payload and notice.payload.get("model_id"):
                model = session.get(TrainedModel, int(notice.payload["model_id"]))
            if model is None and notice.job_id:
                model = session.scalar(select(TrainedModel).where(TrainedModel.job_id == notice.job_id))
            if model is not None and model.user_id == user.id:
                view.model = {"id": model.id, "version": model.version, "metrics": dict(model.metrics or {})}
                if model.status == ModelStatus.READY:
                    user.active_model_id = model.id
        elif notice.kind == NoticeKind.PREDICT_DONE and notice.job_id:
            view.set_files = _set_files(view.payload, job)
            for result in session.scalars(
                select(Result).where(Result.job_id == notice.job_id).order_by(Result.id)
            ):
                view.results.append(
                    {
                        "id": result.id,
                        "upload_id": result.upload_id,
                        "name": result.image_name or f"image_{result.id}",
                        "files": dict(result.files or {}),
                        "summary": dict(result.summary or {}),
                    }
                )
        views.append(view)
    return views


def _job_metal(job: Job | None, preferred: str | None) -> str | None:
    """The metal a recognition was queued with (its files give that dispersion, so its caption must
    too, even if /metal changed since); the user's current one for other notices."""
    if job is None or job.kind != JobKind.PREDICT:
        return preferred
    try:
        return PredictParams.from_job(job).metal
    except ParamsError:
        return preferred


class Deliverer:
    """Holds the outbox lock and the progress throttle for one bot process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.lock = asyncio.Lock()
        self.edits: dict[int, tuple[str, asyncio.Task[None]]] = {}  # job id -> the edit on its way
        self.chats: dict[int, asyncio.Task[int]] = {}  # chat -> its notices being delivered

    async def tick(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.lock.locked():
            return  # the previous tick is still sending
        async with self.lock:
            for step in (self.deliver_notices, self.update_progress):
                try:
                    await step(context)
                except Exception:  # noqa: BLE001 - one bad tick must not stop the next
                    log.exception("delivery step %s failed", step.__name__)

    # Outbox

    async def deliver_notices(self, context: ContextTypes.DEFAULT_TYPE) -> int:
        """Start delivering the pending notices of every chat that is not being delivered to; not
        waited for, so one slow chat holds up no other. A chat busy when the tick began is left out
        even if it finishes meanwhile: what was read for it may be stale (sent since)."""
        self.chats = {chat: task for chat, task in self.chats.items() if not task.done()}
        busy = set(self.chats)
        views = await self.services.db(_load_pending, PENDING_READ)
        by_chat: dict[int, list[NoticeView]] = {}
        for view in views:
            if view.chat_id not in busy:
                by_chat.setdefault(view.chat_id, []).append(view)
        for chat, mine in by_chat.items():
            self.chats[chat] = asyncio.create_task(self._deliver_chat(context, mine), name=f"notices {chat}")
        return sum(len(mine) for mine in by_chat.values())

    async def _deliver_chat(self, context: ContextTypes.DEFAULT_TYPE, views: list[NoticeView]) -> int:
        """One chat's notices, in order; a transient failure leaves the rest for a later tick."""
        sent = 0
        try:
            for view in views:
                try:
                    await self._send(context, view)
                except (Forbidden, BadRequest) as error:
                    log.warning("notice %s to chat %s refused for good: %s", view.id, view.chat_id, error)
                except TelegramError as error:  # network, timeouts, RetryAfter: keep it for later
                    log.warning("notice %s not delivered yet: %s", view.id, error)
                    return sent
                await self.services.db(lambda s, nid=view.id: mark_sent(s, nid))
                sent += 1
        except Exception:  # noqa: BLE001 - logged here: nobody awaits this task
            log.exception("delivering to chat %s failed", views[0].chat_id)
        return sent

    async def _send(self, context: ContextTypes.DEFAULT_TYPE, view: NoticeView) -> None:
        """The parts not sent yet, in order, each recorded once Telegram took it; a part Telegram
        refuses for good (BadRequest) is skipped, the rest still go."""
        for index, part in enumerate(self._parts(context, view)):
            if index < view.parts_sent:
                continue
            try:
                await part()
            except BadRequest as error:
                log.warning("part %d of notice %s refused for good: %s", index + 1, view.id, error)
            await self.services.db(mark_part_sent, view.id, index + 1)

    def _parts(self, context: ContextTypes.DEFAULT_TYPE, view: NoticeView) -> list[Part]:
        """The same list for the same notice every time (a restart counts on it)."""
        bot: Any = context.bot
        lang = view.lang
        if view.kind == NoticeKind.TRAIN_DONE:
            model = view.model or {"version": view.payload.get("version", "?"),
                                   "metrics": view.payload.get("metrics") or {}}
            text = ready_text(lang, model["version"], model.get("metrics") or {})
            return [lambda: bot.send_message(view.chat_id, text, rate_limit_args=BULK_ARGS)]
        if view.kind == NoticeKind.PREDICT_DONE:
            return self._result_parts(context, view)
        if view.kind == NoticeKind.CORRECTION_SAVED:  # saved on the Mini App page
            text, markup = correction_saved(lang, view.payload)
            return [lambda: bot.send_message(view.chat_id, text, reply_markup=markup,
                                             rate_limit_args=BULK_ARGS)]
        if view.kind == NoticeKind.LABELS_SAVED:  # labelled on the Mini App page
            text, markup = labels_saved(lang, view.payload)
            return [lambda: bot.send_message(view.chat_id, text, reply_markup=markup,
                                             rate_limit_args=BULK_ARGS)]
        if view.kind in (NoticeKind.JOB_FAILED, NoticeKind.JOB_CANCELLED):
            reason = view.payload.get("reason") or view.payload.get("error") or view.error or view.kind
            text = t(lang, "job_failed", job=view.job_id, reason=load_text(reason))
            return [lambda: bot.send_message(view.chat_id, text, rate_limit_args=BULK_ARGS)]
        text = view.payload.get("text") or view.payload.get("message") or f"{view.kind} (job #{view.job_id})"
        return [lambda: bot.send_message(view.chat_id, str(text)[:4000], rate_limit_args=BULK_ARGS)]

    def _result_parts(self, context: ContextTypes.DEFAULT_TYPE, view: NoticeView) -> list[Part]:
        bot: Any = context.bot
        lang, store = view.lang, self.services.store
        if not view.results:
            text = t(lang, "job_failed", job=view.job_id, reason=N_("no results"))
            return [lambda: bot.send_message(view.chat_id, text, rate_limit_args=BULK_ARGS)]
        if len(view.results) > BIG_SET:

            async def send_zip() -> None:
                data = await asyncio.to_thread(zip_results, store, view.results, view.set_files)
                caption = pooled_caption(lang, "predict_big", [r["summary"] for r in view.results])
                await bot.send_document(
                    view.chat_id, data, filename=f"segbot_job{view.job_id}.zip", caption=caption[:1024],
                    rate_limit_args=BULK_ARGS,
                )

            return [send_zip]
        parts: list[Part] = []
        last = view.results[-1]
        # the set's COCO JSON and workbook, once, after every image's files: in the last image's
        # album where it fits (one request fewer), else an album of their own
        with_set = bool(view.set_files) and _documents(last) + len(view.set_files) <= ALBUM_MAX
        for result in view.results:  # each: the overlay with its caption, then its files
            parts.append(lambda r=result: self._send_overlay(bot, view, r))
            if result["files"].get("inset"):  # small objects: the zoom shows what the overlay cannot
                parts.append(lambda r=result: self._send_inset(bot, view, r))
            parts.append(lambda r=result, s=(with_set and result is last): self._send_files(bot, view, r, s))
        if view.set_files and not with_set:
            parts.append(lambda: self._send_set_files(bot, view))
        return parts

    async def _send_overlay(self, bot: Any, view: NoticeView, result: dict[str, Any]) -> None:
        stem = result["name"].rsplit(".", 1)[0]
        caption = caption_for(result, view.lang, view.metal)
        review = result_markup(self.services.settings, view.lang, result["id"], result.get("upload_id"))
        overlay = await asyncio.to_thread(read_stored, self.services.store, result["files"].get("overlay"))
        overlay_name = output_name(stem, "overlay")
        if overlay is not None and len(overlay) < 10 * 2**20:  # Telegram's limit for photos
            await bot.send_photo(view.chat_id, overlay, caption=caption, filename=overlay_name,
                                 reply_markup=review, rate_limit_args=BULK_ARGS)
        elif overlay is not None:
            await bot.send_document(view.chat_id, overlay, caption=caption, filename=overlay_name,
                                    reply_markup=review, rate_limit_args=BULK_ARGS)
        else:
            await bot.send_message(view.chat_id, caption, reply_markup=review, rate_limit_args=BULK_ARGS)

    async def _send_inset(self, bot: Any, view: NoticeView, result: dict[str, Any]) -> None:
        inset = await asyncio.to_thread(read_stored, self.services.store, result["files"].get("inset"))
        if inset is not None:
            stem = result["name"].rsplit(".", 1)[0]
            zoom = t(view.lang, "inset_caption", name=result["name"])
            await bot.send_photo(view.chat_id, inset, caption=zoom, filename=output_name(stem, "inset"),
                                 rate_limit_args=BULK_ARGS)

    async def _send_files(
        self, bot: Any, view: NoticeView, result: dict[str, Any], with_set: bool = False
    ) -> None:
        stem = result["name"].rsplit(".", 1)[0]
        media = []
        for role in DOCUMENT_ROLES:
            data = await asyncio.to_thread(read_stored, self.services.store, result["files"].get(role))
            if data is not None:
                media.append(InputMediaDocument(data, filename=output_name(stem, role)))
        if with_set:
            media += await self._set_media(view)
        await _send_documents(bot, view.chat_id, media)

    async def _send_set_files(self, bot: Any, view: NoticeView) -> None:
        await _send_documents(bot, view.chat_id, await self._set_media(view))

    async def _set_media(self, view: NoticeView) -> list[InputMediaDocument]:
        media = []
        for role, sha in sorted(view.set_files.items()):
            data = await asyncio.to_thread(read_stored, self.services.store, sha)
            if data is not None:
                media.append(InputMediaDocument(data, filename=set_file_name(role)))
        return media

    # Progress messages

    async def update_progress(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Start an edit for each message whose text changed (throttled); not waited for."""
        rows = await self.services.db(_progress_rows)
        throttle = self.services.throttle
        self.edits = {job: edit for job, edit in self.edits.items() if not edit[1].done()}
        for row in rows:
            on_its_way = self.edits.get(row["id"])
            if on_its_way is not None and on_its_way[0] == row["text"]:
                continue
            if not throttle.should_edit(row["id"], row["text"], time.monotonic()):
                continue
            task = asyncio.create_task(self._edit(context.bot, row), name=f"progress {row['id']}")
            self.edits[row["id"]] = (row["text"], task)

    async def _edit(self, bot: Any, row: dict[str, Any]) -> None:
        throttle = self.services.throttle
        try:
            # The limiter sleeps through a RetryAfter (pausing all requests, as Telegram asks) and
            # retries; if it still fails, the throttle waits before this message again.
            done = await bot.edit_message_text(
                row["text"], chat_id=row["chat_id"], message_id=row["message_id"],
                rate_limit_args=bulk(("progress", row["id"])),
            )
        except RetryAfter as error:
            delay = (
                error.retry_after.total_seconds()
                if isinstance(error.retry_after, timedelta)
                else float(error.retry_after)
            )
            throttle.retry_after(row["id"], delay, time.monotonic())
            return
        except BadRequest as error:
            if "not modified" not in str(error).lower():
                log.info("progress message of job %s: %s", row["id"], error)
            done = None
        except TelegramError as error:
            log.info("progress message of job %s not edited: %s", row["id"], error)
            return
        if done is True:  # a newer text of this message replaced it before it went
            return
        throttle.edited(row["id"], row["text"], time.monotonic())


def _documents(result: dict[str, Any]) -> int:
    """How many documents the result's album holds at most (its stored files of those roles)."""
    return sum(1 for role in DOCUMENT_ROLES if result["files"].get(role))


async def _send_documents(bot: Any, chat_id: int, media: list[InputMediaDocument]) -> None:
    """One album (2..10 documents), or the single document; nothing for none."""
    if len(media) >= 2:
        await bot.send_media_group(chat_id, media[:ALBUM_MAX], rate_limit_args=BULK_ARGS)
    elif media:  # an InputFile: it carries its name
        await bot.send_document(chat_id, media[0].media, rate_limit_args=BULK_ARGS)


def _set_files(payload: dict[str, Any], job: Job | None) -> dict[str, str]:
    """The set files of a predict job (jobs/predict.py puts them in the notice and the job's result)."""
    found = payload.get("set_files") or ((job.result or {}).get("set_files") if job is not None else None)
    if not isinstance(found, dict):
        return {}
    return {str(role): sha for role, sha in found.items() if isinstance(sha, str) and sha}


def _progress_rows(session) -> list[dict[str, Any]]:
    recent = datetime.now(UTC) - timedelta(minutes=10)
    active = (JobState.QUEUED, JobState.RUNNING)
    stmt = (
        select(Job, User.language)
        .join(User, User.id == Job.user_id)
        .where(
            Job.progress_message_id.is_not(None),
            Job.chat_id.is_not(None),
            or_(Job.state.in_(active), Job.finished_at >= recent),
        )
        .order_by(Job.id)
        .limit(100)
    )
    rows = []
    rates = Rates(session)  # the measured speeds, read once for every waiting job
    for job, lang in session.execute(stmt):
        waiting = job.state == JobState.QUEUED
        rows.append(
            {
                "id": job.id,
                "chat_id": job.chat_id,
                "message_id": job.progress_message_id,
                "text": progress_text(
                    job,
                    lang or "en",
                    queue_position(session, job) if waiting else None,
                    wait_ahead(session, job, rates) if waiting else None,
                    # the queue's estimate only while running without an ETA of its own (not for
                    # the finished jobs listed here for 10 min: their text has no ETA)
                    remaining_s(session, job, rates) if job.state == JobState.RUNNING and not job.eta_s
                    else None,
                ),
            }
        )
    return rows


def progress_text(
    job: Job,
    lang: str,
    position: int | None = None,
    wait: Wait | None = None,
    estimate_s: float | None = None,
) -> str:
    """`estimate_s`: the seconds left by the queue's estimate, shown ("~") while a running job has
    no ETA of its own yet (preparing its data, its first iterations)."""
    if job.state == JobState.SUCCEEDED:
        return t(lang, "progress_done", job=job.id, kind=job.kind)
    if job.state == JobState.FAILED:
        return t(lang, "progress_failed", job=job.id, kind=job.kind)
    if job.state == JobState.CANCELLED:
        return t(lang, "progress_cancelled", job=job.id, kind=job.kind)
    if job.state == JobState.QUEUED:
        stage = t(lang, "queued_state") + (f" (#{position})" if position else "")
        if wait is not None and wait.ahead and wait.seconds is not None:
            stage += " " + t(lang, "queued_wait", minutes=max(1, round(wait.seconds / 60)), ahead=wait.ahead)
        return t(lang, "progress", job=job.id, kind=job.kind, stage=stage, pct=0, loss="", eta="")
    loss = (job.result or {}).get("loss") if isinstance(job.result, dict) else None
    left, mark = (job.eta_s, "") if job.eta_s else (estimate_s, "~")
    eta = f", ETA {mark}{int(left) // 60}:{int(left) % 60:02d}" if left else ""
    return t(
        lang,
        "progress",
        job=job.id,
        kind=job.kind,
        stage=job.stage or "",
        pct=int(round(100 * (job.progress or 0))),
        loss=f", loss {float(loss):.3f}" if isinstance(loss, int | float) else "",
        eta=eta,
    )
