"""`segbot run`, as deployed, with stopwatches around where an update's time can go: handling it
(Application.process_update), the database (Services.db: in the thread, and waiting for one), and
each request to the Bot API (waiting in the rate limiter vs the HTTP round trip). On exit the
figures go, as JSON, to the file named by SEGBOT_BENCH_STATS. bench_load.py starts it.

    python -m bench.load_bot run --no-worker   (repo root on PYTHONPATH)
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from typing import Any

from telegram import Bot
from telegram.ext import Application, ExtBot

from bot.services import Services
from segbot.cli import main

_TIMES: dict[str, list[float]] = defaultdict(list)
_LOCK = threading.Lock()
_ASKED: ContextVar[float | None] = ContextVar("bench_asked", default=None)  # when the request was made


def _note(key: str, seconds: float) -> None:
    with _LOCK:
        _TIMES[key].append(seconds)


def _timed_async(key: Callable[..., str | None], fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await fn(*args, **kwargs)
        finally:
            name = key(*args, **kwargs)
            if name:
                _note(name, time.monotonic() - started)

    return wrapper


def _endpoint(_self: object, endpoint: str, *_args: Any, **_kwargs: Any) -> str | None:
    return None if endpoint == "getUpdates" else endpoint


def _limited(fn: Callable[..., Any]) -> Callable[..., Any]:
    """ExtBot._do_post: the request as a whole, through the rate limiter."""

    @wraps(fn)
    async def wrapper(self: ExtBot, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        token = _ASKED.set(time.monotonic())
        try:
            return await _timed_async(lambda *a, **k: _endpoint(self, endpoint) and f"request {endpoint}",
                                      fn)(self, endpoint, *args, **kwargs)
        finally:
            _ASKED.reset(token)

    return wrapper


def _sent(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bot._do_post, which the rate limiter calls when it lets a request go: the wait before it."""

    @wraps(fn)
    async def wrapper(self: Bot, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        asked = _ASKED.get()
        if asked is not None and endpoint != "getUpdates":
            _note(f"limiter wait {endpoint}", time.monotonic() - asked)
        return await _timed_async(lambda *a, **k: _endpoint(self, endpoint) and "http round trip",
                                  fn)(self, endpoint, *args, **kwargs)

    return wrapper


def instrument() -> None:
    ExtBot._do_post = _limited(ExtBot._do_post)  # type: ignore[method-assign]
    Bot._do_post = _sent(Bot._do_post)  # type: ignore[method-assign]
    Application.process_update = _timed_async(lambda *a, **k: "handler", Application.process_update)  # type: ignore[method-assign]
    Services.db = _timed_async(lambda *a, **k: "db (await)", Services.db)  # type: ignore[method-assign]
    run_db = Services.run_db

    @wraps(run_db)
    def timed_run_db(self: Services, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return run_db(self, fn, *args, **kwargs)
        finally:
            _note("db (in thread)", time.monotonic() - started)

    Services.run_db = timed_run_db  # type: ignore[method-assign]
    atexit.register(dump)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"n": len(ordered), "total_s": sum(ordered), "p50_ms": pick(0.5) * 1000,
            "p95_ms": pick(0.95) * 1000, "max_ms": ordered[-1] * 1000}


def dump() -> None:
    path = os.environ.get("SEGBOT_BENCH_STATS")
    if not path:
        return
    with _LOCK:
        stats = {key: _summary(values) for key, values in _TIMES.items() if values}
    with open(path, "w") as out:
        json.dump(stats, out, indent=1)


instrument()

if __name__ == "__main__":
    main()
