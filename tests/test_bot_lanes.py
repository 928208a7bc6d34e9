"""The rate limiter's two lanes (bot/lanes.py): replies overtake queued deliveries, a newer progress
edit replaces a waiting one, and Telegram's flood limits hold, counted by the Bot API stand-in."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from telegram.ext import ExtBot

from bot.lanes import BULK_ARGS, COSMETIC_ARGS, LaneLimiter, bulk
from tests.botapi.server import BotApiStandIn


def _recorder(order: list[str]):  # noqa: ANN202
    async def send(name: str) -> dict[str, Any]:
        order.append(name)
        return {"ok": name}

    return send


def test_a_reply_overtakes_a_hundred_queued_deliveries() -> None:
    order: list[str] = []

    async def scenario() -> None:
        limiter = LaneLimiter(overall=(5.0, 100.0))  # quick refills keep the test short
        await limiter.initialize()
        send = _recorder(order)
        bulk_sends = [
            asyncio.create_task(limiter.process_request(send, (f"bulk {i}",), {}, "sendDocument",
                                                        {"chat_id": 1000 + i}, BULK_ARGS))
            for i in range(100)
        ]
        await asyncio.sleep(0)  # all of them wait in the limiter now
        reply = await limiter.process_request(send, ("reply",), {}, "sendMessage", {"chat_id": 7}, None)
        assert reply == {"ok": "reply"}
        await asyncio.gather(*bulk_sends)
        await limiter.shutdown()

    asyncio.run(scenario())
    assert len(order) == 101
    assert order.index("reply") < 3, order[:10]  # first in come first served, it would be the 101st
    assert [name for name in order if name != "reply"] == [f"bulk {i}" for i in range(100)]


def test_a_reply_waits_no_longer_than_the_chat_allows_while_its_results_go_out() -> None:
    """Result files for chat 7 use its burst but leave a message for the reply."""
    order: list[str] = []

    async def scenario() -> float:
        limiter = LaneLimiter()
        await limiter.initialize()
        send = _recorder(order)
        files = [asyncio.create_task(limiter.process_request(send, (f"file {i}",), {}, "sendDocument",
                                                             {"chat_id": 7}, BULK_ARGS)) for i in range(4)]
        await asyncio.sleep(0.05)
        asked = time.monotonic()
        await limiter.process_request(send, ("reply",), {}, "sendMessage", {"chat_id": 7}, None)
        waited = time.monotonic() - asked
        for task in files:
            task.cancel()
        await limiter.shutdown()
        return waited

    waited = asyncio.run(scenario())
    assert waited < 0.2, waited
    assert order == ["file 0", "file 1", "reply"]  # the chat's bulk share was two, then the reply


def test_only_the_newest_progress_edit_of_a_message_is_sent() -> None:
    order: list[str] = []

    async def scenario() -> list[Any]:
        limiter = LaneLimiter(overall=(1.0, 20.0))
        await limiter.initialize()
        send = _recorder(order)
        first = await limiter.process_request(send, ("reply",), {}, "sendMessage", {}, None)  # empties it
        edits = []
        for pct in (10, 20, 30):
            edits.append(asyncio.create_task(limiter.process_request(
                send, (f"edit {pct}%",), {}, "editMessageText", {"chat_id": 5}, bulk(("progress", 1)))))
            await asyncio.sleep(0)
        other = limiter.process_request(send, ("other",), {}, "editMessageText", {"chat_id": 6},
                                        bulk(("progress", 2)))
        results = [first, *await asyncio.gather(*edits, other)]
        await limiter.shutdown()
        return results

    results = asyncio.run(scenario())
    assert order == ["reply", "edit 30%", "other"]
    assert results[1:3] == [True, True]  # the replaced edits return without being sent


def test_a_cosmetic_edit_gives_up_when_deliveries_fill_the_lane() -> None:
    """A keyboard's removal that waits longer than its patience is not sent; one that finds room is."""
    order: list[str] = []

    async def scenario() -> list[Any]:
        limiter = LaneLimiter(overall=(6.0, 4.0))  # room for the first bulk request, then 4 a second
        await limiter.initialize()
        send = _recorder(order)
        room = await limiter.process_request(
            send, ("room",), {}, "editMessageReplyMarkup", {"chat_id": 8}, {**COSMETIC_ARGS, "patience": 0.3}
        )
        files = [
            asyncio.create_task(
                limiter.process_request(send, (f"f{i}",), {}, "sendDocument", {"chat_id": 100 + i}, BULK_ARGS)
            )
            for i in range(6)
        ]
        await asyncio.sleep(0)
        late = await limiter.process_request(
            send, ("late",), {}, "editMessageReplyMarkup", {"chat_id": 9}, {**COSMETIC_ARGS, "patience": 0.3}
        )
        await asyncio.gather(*files)
        await limiter.shutdown()
        return [room, late]

    room, late = asyncio.run(scenario())
    assert room == {"ok": "room"} and late is True  # True: given up, as a replaced edit returns
    assert "late" not in order and order[0] == "room" and len(order) == 7, order


def _flood(api: BotApiStandIn, limiter: LaneLimiter | None) -> float:
    """45 messages to 15 chats, 6 more to one chat, as fast as the bot is let: seconds it took."""

    async def scenario() -> float:
        bot = ExtBot(api.token, base_url=api.base_url, base_file_url=api.base_file_url,
                     rate_limiter=limiter)
        async with bot:
            started = time.monotonic()
            lane = BULK_ARGS if limiter else None
            sends = [bot.send_message(100 + i % 15, f"result {i}", rate_limit_args=lane) for i in range(45)]
            sends += [bot.send_message(99, f"reply {i}") for i in range(6)]
            await asyncio.gather(*sends)
            return time.monotonic() - started

    return asyncio.run(scenario())


def test_telegrams_limits_hold_as_the_stand_in_counts_them() -> None:
    api = BotApiStandIn().start()
    try:
        api.enforce_limits = True
        took = _flood(api, LaneLimiter())
        sent = [c for c in api.calls if c.method == "sendMessage"]
        assert api.over_limit == [] and len(sent) == 51 and all(c.status == 200 for c in sent)
        assert took >= 2.5  # six in one chat: a burst of three, then one a second
        api.enforce_limits = False  # the same flood without the limiter breaks both limits
        api.calls.clear()
        _flood(api, None)
        assert {scope for scope, _method, _chat in api.over_limit} == {"overall", "chat"}
    finally:
        api.stop()


def test_a_retry_after_pauses_and_the_request_is_sent_again() -> None:
    api = BotApiStandIn().start()
    try:
        api.fail_next["sendMessage"] = {"ok": False, "error_code": 429, "parameters": {"retry_after": 1},
                                        "description": "Too Many Requests: retry after 1"}

        async def scenario() -> float:
            bot = ExtBot(api.token, base_url=api.base_url, rate_limiter=LaneLimiter())
            async with bot:
                started = time.monotonic()
                await bot.send_message(5, "hello")
                return time.monotonic() - started

        took = asyncio.run(scenario())
        assert took >= 0.95
        assert [c.text for c in api.calls_to(5, ("sendMessage",)) if c.status == 200] == ["hello"]
    finally:
        api.stop()
