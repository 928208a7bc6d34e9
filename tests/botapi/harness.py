"""Test harness: the stand-in Bot API plus the real Application polling it in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import Settings
from tests.botapi.server import BotApiStandIn, User


def bot_settings(settings: Settings, api: BotApiStandIn, **overrides: Any) -> Settings:
    """A copy of the test settings pointing at the stand-in."""
    from core.settings import load_settings

    values = {
        "telegram_bot_token": api.token,
        "telegram_api_base_url": api.base_url,
        "telegram_api_base_file_url": api.base_file_url,
        "data_dir": settings.data_dir,
    }
    values.update(overrides)
    return load_settings(**values)


@contextmanager
def running_bot(settings: Settings, **build_kwargs: Any) -> Iterator[Any]:
    from bot.app import BotThread

    runner = BotThread(settings, poll_timeout=1.0, **build_kwargs).start()
    try:
        yield runner
    finally:
        runner.stop()


__all__ = ["BotApiStandIn", "User", "bot_settings", "running_bot"]
