"""Every request to Telegram goes through here, in two lanes, inside Telegram's flood limits (about
30 messages/s in all, one per second in a chat with short bursts, 20 per minute in a group). What the
limits count is what goes to a chat (a request with a chat_id: sending, editing, deleting); a button's
answer, getFile and the like are no messages and go at once.

Replies to what a user just did (acknowledgements, summaries, button answers, /status: every request
by default) go first; deliveries and progress edits (rate_limit_args={"lane": "bulk"}) use what is
left and leave a little headroom, so a reply never waits behind other users' result files. A bulk
request with a "key" replaces a waiting one with the same key (only the newest edit of a progress
message is sent; the replaced one returns True without being sent); one with a "patience" gives up
(returns True unsent) after waiting that many seconds. A RetryAfter from Telegram pauses everything
for as long as asked, then the request is retried (max_retries times).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)
PRIORITY, BULK = 0, 1
BULK_ARGS: dict[str, Any] = {"lane": "bulk"}  # rate_limit_args of a delivery
Result = bool | dict[str, Any] | list[dict[str, Any]]


# A cosmetic request (a pressed keyboard's removal) that has waited this long in the bulk lane is not
# sent: on a busy day it would take a delivery's place, and a press of a button left behind is
# harmless (every press is idempotent).
COSMETIC_ARGS: dict[str, Any] = {**BULK_ARGS, "patience": 5.0}


def bulk(key: Hashable | None = None) -> dict[str, Any]:
    """rate_limit_args for a request of the bulk lane; with a key, a newer one replaces it."""
    return BULK_ARGS if key is None else {**BULK_ARGS, "key": key}


@dataclass
class Bucket:
    """A token bucket: `burst` requests at once, refilled at `rate` per second."""

    burst: float
    rate: float
    tokens: float = -1.0
    at: float = 0.0

    def level(self, now: float) -> float:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def ready_in(self, now: float, need: float) -> float:
        """Seconds until `need` tokens are there (0: now)."""
        return max(0.0, (need - self.level(now)) / self.rate)


@dataclass(eq=False)
class _Waiting:
    lane: int
    seq: int
    chat: object | None  # (scope, chat id) of the chat's bucket, None: no chat
    key: Hashable | None
    granted: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class LaneLimiter(BaseRateLimiter[dict[str, Any]]):
    def __init__(
        self,
        # (burst, per second), a little under Telegram's: requests let go in order may arrive out of it
        overall: tuple[float, float] = (28.0, 28.0),
        chat: tuple[float, float] = (3.0, 0.9),
        group: tuple[float, float] = (18.0, 18.0 / 60.0),
        bulk_headroom: tuple[float, float] = (5.0, 1.0),  # tokens bulk leaves: overall, per chat
        max_retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.overall = Bucket(*overall)
        self.chat_limit, self.group_limit = chat, group
        self.headroom = bulk_headroom
        self.max_retries = max_retries
        self.clock = clock
        self.chats: dict[object, Bucket] = {}
        self.waiting: list[_Waiting] = []
        self.paused_until = 0.0
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def initialize(self) -> None:
        self._start()

    async def shutdown(self) -> None:
        for entry in self.waiting:  # nothing will let them go any more
            entry.granted.cancel()
        self.waiting.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="lane-limiter")

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, Any] | None,
    ) -> Result:
        lane = BULK if (rate_limit_args or {}).get("lane") == "bulk" else PRIORITY
        key = (rate_limit_args or {}).get("key") if lane == BULK else None
        patience = (rate_limit_args or {}).get("patience")
        chat = _chat_scope(data.get("chat_id"))
        if chat is None:  # no message to a chat: not what the flood limits count
            return await callback(*args, **kwargs)
        for attempt in range(self.max_retries + 1):
            if not await self._turn(lane, chat, key, first=attempt == 0, patience=patience):
                return True  # replaced by a newer request with the same key, or gave up: not sent
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                delay = _seconds(error.retry_after)
                log.warning("Telegram asked to wait %.0f s (%s); every request pauses", delay, endpoint)
                self.paused_until = max(self.paused_until, self.clock() + delay)
                if attempt == self.max_retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _turn(
        self, lane: int, chat: object | None, key: Hashable | None, first: bool, patience: float | None = None
    ) -> bool:
        """Wait until this request may go (True), or until a newer one with its key replaced it or
        `patience` seconds passed (False)."""
        self._start()
        entry = _Waiting(lane, next(self._seq) if first else -1, chat, key)  # a retry goes first
        if key is not None:
            for older in [w for w in self.waiting if w.key == key]:
                self.waiting.remove(older)
                older.granted.set_result(False)
        bisect.insort(self.waiting, entry, key=_order)
        assert self._wake is not None
        self._wake.set()
        try:
            if patience is None:
                return await entry.granted
            try:
                return await asyncio.wait_for(asyncio.shield(entry.granted), patience)
            except TimeoutError:
                if entry.granted.done():  # granted just as the patience ran out: it goes
                    return entry.granted.result()
                return False
        finally:
            if entry in self.waiting:  # cancelled while waiting
                self.waiting.remove(entry)

    def _bucket(self, chat: object) -> Bucket:
        bucket = self.chats.get(chat)
        if bucket is None:
            bucket = self.chats[chat] = Bucket(*(self.group_limit if chat[0] == "group" else self.chat_limit))  # type: ignore[index]
        return bucket

    def _grant(self, now: float) -> float:
        """Let every request go that may go now, lanes in order; the seconds until one more could."""
        if now < self.paused_until:
            return self.paused_until - now
        soonest = 1.0
        busy: set[object] = set()  # chats whose first waiting request cannot go yet
        for entry in list(self.waiting):
            extra_all, extra_chat = self.headroom if entry.lane == BULK else (0.0, 0.0)
            wait = self.overall.ready_in(now, min(1.0 + extra_all, self.overall.burst))
            if wait > 0:  # the overall limit: nothing behind this one may go before it
                return min(soonest, wait)
            if entry.chat is None:
                wait = 0.0
            elif entry.chat in busy:
                continue  # an earlier request to its chat is waiting: keep the chat's order
            else:
                bucket = self._bucket(entry.chat)
                wait = bucket.ready_in(now, min(1.0 + extra_chat, bucket.burst))
            if wait > 0:
                soonest = min(soonest, wait)
                busy.add(entry.chat)
                continue
            self.overall.tokens -= 1.0
            if entry.chat is not None:
                self._bucket(entry.chat).tokens -= 1.0
            self.waiting.remove(entry)
            entry.granted.set_result(True)
        return soonest

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            delay = self._grant(self.clock()) if self.waiting else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.001))
            if len(self.chats) > 10_000:  # forget idle chats (their buckets are full again)
                now = self.clock()
                self.chats = {c: b for c, b in self.chats.items() if b.level(now) < b.burst}


def _order(entry: _Waiting) -> tuple[int, int]:
    return entry.lane, entry.seq


def _chat_scope(chat_id: object) -> tuple[str, object] | None:
    """Which bucket a request's chat draws on: a group's (negative id or @name) or a private chat's."""
    if chat_id is None:
        return None
    try:
        number = int(chat_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ("group", chat_id)
    return ("group" if number < 0 else "chat", number)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
