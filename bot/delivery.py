"""The bot's periodic work (a PTB job every ~1 s): deliver outbox notices exactly once and keep
each job's progress message up to date, throttled.

Exactly once: a notice is marked sent right after Telegram accepted it, by the only process that
delivers (one bot), one notice at a time; a notice that failed transiently stays pending for the next
tick, one Telegram refuses for good (user blocked the bot) is marked sent so it never loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from telegram import InputMediaDocument
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import ContextTypes

from bot.captions import caption_for, metrics_text, pooled_caption
from bot.i18n import t
from bot.result_files import DOCUMENT_ROLES, output_name, read_stored, zip_results
from bot.services import Services
from bot.webapp import correction_saved, review_markup
from jobqueue.store import queue_position
from storage.models import Job, JobState, ModelStatus, Result, TrainedModel, User
from storage.notices import CORRECTION_SAVED, mark_sent, pending_notices

log = logging.getLogger(__name__)
BIG_SET = 4  # more results than this in one job -> one zip


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
        )
        if notice.kind == "train_done":
            model = None
            if notice.payload and notice.payload.get("model_id"):
                model = session.get(TrainedModel, int(notice.payload["model_id"]))
            if model is None and notice.job_id:
                model = session.scalar(select(TrainedModel).where(TrainedModel.job_id == notice.job_id))
            if model is not None and model.user_id == user.id:
                view.model = {"id": model.id, "version": model.version, "metrics": dict(model.metrics or {})}
                if model.status == ModelStatus.READY:
                    user.active_model_id = model.id
        elif notice.kind == "predict_done" and notice.job_id:
            for result in session.scalars(
                select(Result).where(Result.job_id == notice.job_id).order_by(Result.id)
            ):
                view.results.append(
                    {
                        "id": result.id,
                        "name": result.image_name or f"image_{result.id}",
                        "files": dict(result.files or {}),
                        "summary": dict(result.summary or {}),
                    }
                )
        views.append(view)
    return views


class Deliverer:
    """Holds the outbox lock and the progress throttle for one bot process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.lock = asyncio.Lock()

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
        views = await self.services.db(_load_pending, 20)
        sent = 0
        for view in views:
            try:
                await self._send(context, view)
            except (Forbidden, BadRequest) as error:
                log.warning("notice %s to chat %s refused for good: %s", view.id, view.chat_id, error)
            except TelegramError as error:  # network, timeouts, RetryAfter: keep it for the next tick
                log.warning("notice %s not delivered yet: %s", view.id, error)
                return sent
            await self.services.db(lambda s, nid=view.id: mark_sent(s, nid))
            sent += 1
        return sent

    async def _send(self, context: ContextTypes.DEFAULT_TYPE, view: NoticeView) -> None:
        bot, lang = context.bot, view.lang
        if view.kind == "train_done":
            model = view.model or {"version": view.payload.get("version", "?"), "metrics": {}}
            await bot.send_message(
                view.chat_id,
                t(
                    lang,
                    "train_done",
                    version=model["version"],
                    metrics=metrics_text(model.get("metrics") or {}),
                ),
            )
        elif view.kind == "predict_done":
            await self._send_results(context, view)
        elif view.kind == CORRECTION_SAVED:  # saved on the Mini App page
            text, markup = correction_saved(lang, view.payload)
            await bot.send_message(view.chat_id, text, reply_markup=markup)
        elif view.kind in ("job_failed", "job_cancelled"):
            reason = view.payload.get("reason") or view.payload.get("error") or view.error or view.kind
            await bot.send_message(view.chat_id, t(lang, "job_failed", job=view.job_id, reason=reason))
        else:
            text = (
                view.payload.get("text") or view.payload.get("message") or f"{view.kind} (job #{view.job_id})"
            )
            await bot.send_message(view.chat_id, str(text)[:4000])

    async def _send_results(self, context: ContextTypes.DEFAULT_TYPE, view: NoticeView) -> None:
        bot, lang, store = context.bot, view.lang, self.services.store
        if not view.results:
            await bot.send_message(view.chat_id, t(lang, "job_failed", job=view.job_id, reason="no results"))
            return
        if len(view.results) > BIG_SET:
            data = await asyncio.to_thread(zip_results, store, view.results)
            caption = pooled_caption(lang, "predict_big", [r["summary"] for r in view.results])
            await bot.send_document(
                view.chat_id, data, filename=f"segbot_job{view.job_id}.zip", caption=caption[:1024]
            )
            return
        for result in view.results:
            stem = result["name"].rsplit(".", 1)[0]
            files = result["files"]
            caption = caption_for(result, lang)
            review = review_markup(self.services.settings, lang, result["id"])  # None: no Mini App
            overlay = await asyncio.to_thread(read_stored, store, files.get("overlay"))
            overlay_name = output_name(stem, "overlay")
            if overlay is not None and len(overlay) < 10 * 2**20:  # Telegram's limit for photos
                await bot.send_photo(
                    view.chat_id, overlay, caption=caption, filename=overlay_name, reply_markup=review
                )
            elif overlay is not None:
                await bot.send_document(
                    view.chat_id, overlay, caption=caption, filename=overlay_name, reply_markup=review
                )
            else:
                await bot.send_message(view.chat_id, caption, reply_markup=review)
            media = []
            for role in DOCUMENT_ROLES:
                data = await asyncio.to_thread(read_stored, store, files.get(role))
                if data is not None:
                    media.append(InputMediaDocument(data, filename=output_name(stem, role)))
            if len(media) >= 2:
                await bot.send_media_group(view.chat_id, media)
            elif media:
                await bot.send_document(view.chat_id, media[0].media)

    # Progress messages

    async def update_progress(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        rows = await self.services.db(_progress_rows)
        throttle = self.services.throttle
        for row in rows:
            now = time.monotonic()
            if not throttle.should_edit(row["id"], row["text"], now):
                continue
            try:
                # PTB's AIORateLimiter sleeps through a RetryAfter (pausing all requests, as Telegram
                # asks) and retries; if it still fails, the throttle waits before this message again.
                await context.bot.edit_message_text(
                    row["text"], chat_id=row["chat_id"], message_id=row["message_id"]
                )
            except RetryAfter as error:
                delay = (
                    error.retry_after.total_seconds()
                    if isinstance(error.retry_after, timedelta)
                    else float(error.retry_after)
                )
                throttle.retry_after(row["id"], delay, time.monotonic())
                continue
            except BadRequest as error:
                if "not modified" not in str(error).lower():
                    log.info("progress message of job %s: %s", row["id"], error)
            except TelegramError as error:
                log.info("progress message of job %s not edited: %s", row["id"], error)
                continue
            throttle.edited(row["id"], row["text"], time.monotonic())


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
    for job, lang in session.execute(stmt):
        rows.append(
            {
                "id": job.id,
                "chat_id": job.chat_id,
                "message_id": job.progress_message_id,
                "text": progress_text(
                    job,
                    lang or "en",
                    queue_position(session, job) if job.state == JobState.QUEUED else None,
                ),
            }
        )
    return rows


def progress_text(job: Job, lang: str, position: int | None = None) -> str:
    if job.state == JobState.SUCCEEDED:
        return t(lang, "progress_done", job=job.id, kind=job.kind)
    if job.state == JobState.FAILED:
        return t(lang, "progress_failed", job=job.id, kind=job.kind)
    if job.state == JobState.CANCELLED:
        return t(lang, "progress_cancelled", job=job.id, kind=job.kind)
    if job.state == JobState.QUEUED:
        stage = t(lang, "queued_state") + (f" (#{position})" if position else "")
        return t(lang, "progress", job=job.id, kind=job.kind, stage=stage, pct=0, loss="", eta="")
    loss = (job.result or {}).get("loss") if isinstance(job.result, dict) else None
    eta = f", ETA {int(job.eta_s) // 60}:{int(job.eta_s) % 60:02d}" if job.eta_s else ""
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
