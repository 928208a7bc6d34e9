"""The Bot API stand-in in a process of its own (a multiprocessing manager), so that neither the bot
nor the simulated users share its interpreter: bench_load.py talks to it through a proxy, the bot
over HTTP as to Telegram. Calls return plain data (what a proxy can carry)."""

from __future__ import annotations

import time
from multiprocessing.managers import BaseManager
from typing import Any

from tests.botapi.server import BotApiStandIn, User

DONE = "bench: job #"


class StandInService:
    """The stand-in, with Telegram's flood limits enforced (429 + retry_after) and counted."""

    def __init__(self) -> None:
        self.api = BotApiStandIn()
        self.api.enforce_limits = True
        self.api.start()
        self.started = time.monotonic()

    def urls(self) -> tuple[str, str, str]:
        return self.api.token, self.api.base_url, self.api.base_file_url

    def mark(self) -> int:
        return self.api.mark()

    def send_document(self, user: User, filename: str, data: bytes) -> None:
        self.api.send_document(user, filename, data)

    def send_photo(self, user: User, data: bytes, width: int, height: int) -> None:
        self.api.send_photo(user, data, width=width, height=height)

    def send_text(self, user: User, text: str) -> None:
        self.api.send_text(user, text)

    def press(self, user: User, message: dict[str, Any], data: str) -> None:
        self.api.press(user, message, data)

    def wait_reply(self, chat_id: int, after: int, timeout: float,
                   skip: tuple[str, ...] = ()) -> tuple[float, Any] | None:
        """(when, result) of the first reply to chat_id after `after`, or None after timeout."""
        try:
            call = self.api.wait_reply(chat_id, after, timeout=timeout, skip=skip)
        except AssertionError:
            return None
        return call.at, call.result

    def done_texts(self) -> list[tuple[float, str]]:
        """(when, text) of every job-done notice the bot sent."""
        with self.api._lock:  # noqa: SLF001 - the stand-in's record
            return [(c.at, c.text) for c in self.api.calls if DONE in c.text and c.status == 200]

    def report(self) -> dict[str, Any]:
        """Requests by kind, the busiest second, and every request over Telegram's limits."""
        with self.api._lock:  # noqa: SLF001
            times = [c.at for c in self.api.calls]
            over = list(self.api.over_limit)
        per_second: dict[int, int] = {}
        for at in times:
            per_second[int(at)] = per_second.get(int(at), 0) + 1
        return {
            "by_kind": self.api.requests_by_kind(),
            "seconds": (max(times) - min(times)) if times else 0.0,
            "busiest_second": max(per_second.values(), default=0),
            "over_limit": over,
        }

    def stop(self) -> None:
        self.api.stop()


class StandInManager(BaseManager):
    pass


StandInManager.register("StandIn", StandInService)
