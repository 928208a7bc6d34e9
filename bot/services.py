"""What every handler needs: settings, the file store, database access off the event loop, the
current user (created on first contact), access and spam checks."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.i18n import lang_of
from bot.throttle import EditThrottle
from core.settings import Settings
from segmodel.options import DEFAULT_SCORE_THRESHOLD
from storage.db import session_scope
from storage.files import Store
from storage.models import User
from storage.stores import open_store

T = TypeVar("T")
LAST_SEEN_EVERY = timedelta(minutes=5)

DEFAULT_TRAIN_OPTIONS: dict[str, Any] = {"arch": "tiny", "iterations": None, "augment": True, "rescale": None}


@dataclass(frozen=True)
class UserInfo:
    """A snapshot of the user's row, safe to pass around the event loop."""

    id: int
    telegram_id: int
    username: str | None
    language: str
    nm_per_px: float | None
    threshold: float
    active_model_id: int | None
    is_admin: bool
    preferences: dict[str, Any]
    created: bool = False  # the row was made for this very update (a first contact)

    @property
    def pending_uploads(self) -> list[int]:
        return list(self.preferences.get("pending_uploads") or [])

    @property
    def train_options(self) -> dict[str, Any]:
        return {**DEFAULT_TRAIN_OPTIONS, **(self.preferences.get("train_options") or {})}


def snapshot(user: User, admin_ids: set[str], created: bool = False) -> UserInfo:
    is_admin = (
        bool(user.is_admin)
        or str(user.telegram_id) in admin_ids
        or ((user.username or "").lower() in admin_ids and bool(user.username))
    )
    return UserInfo(
        user.id,
        user.telegram_id,
        user.username,
        user.language or "en",
        user.nm_per_px,
        user.score_threshold if user.score_threshold is not None else DEFAULT_SCORE_THRESHOLD,
        user.active_model_id,
        is_admin,
        dict(user.preferences or {}),
        created,
    )


@dataclass
class Services:
    settings: Settings
    store: Store
    throttle: EditThrottle = field(default_factory=EditThrottle)
    locks: dict[int, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    recent: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    warned: dict[int, float] = field(default_factory=dict)
    spam_window_s: float = 10.0
    spam_max: int = 20

    @classmethod
    def create(cls, settings: Settings) -> Services:
        settings.ensure_dirs()
        return cls(settings=settings, store=open_store(settings))  # local folder or S3

    def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with session_scope(self.settings.database_url) as session:
            return fn(session, *args, **kwargs)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(session, *args, **kwargs) in a thread, in one transaction."""
        return await asyncio.to_thread(self.run_db, fn, *args, **kwargs)

    # Access and spam

    def allowed(self, telegram_id: int, username: str | None) -> bool:
        if self.settings.access_mode == "open":
            return True
        names = {str(telegram_id)} | ({username.lower()} if username else set())
        return bool(names & (self.settings.allowed_ids | self.settings.admin_ids))

    def too_fast(self, telegram_id: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        window = self.recent[telegram_id]
        window.append(now)
        while window and window[0] < now - self.spam_window_s:
            window.popleft()
        return len(window) > self.spam_max

    def should_warn(self, telegram_id: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self.warned.get(telegram_id, -1e9) < self.spam_window_s:
            return False
        self.warned[telegram_id] = now
        return True


# Database functions (run in threads through Services.db)


def ensure_user(
    session: Session, telegram_id: int, username: str | None, language_code: str | None, admin_ids: set[str]
) -> UserInfo:
    user = session.scalar(select(User).where(User.telegram_id == telegram_id))
    now = datetime.now(UTC)
    created = user is None
    if user is None:
        user = User(
            telegram_id=telegram_id,
            username=username,
            language=lang_of(language_code),
            preferences={},
            created_at=now,
            last_seen_at=now,
        )
        session.add(user)
        session.flush()
    else:
        if username and user.username != username:
            user.username = username
        seen = user.last_seen_at
        if seen is not None and seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)  # SQLite returns naive UTC
        if seen is None or now - seen > LAST_SEEN_EVERY:
            user.last_seen_at = now  # not on every update: a write per message would serialize users
    return snapshot(user, admin_ids, created)


def user_info(session: Session, user_id: int, admin_ids: set[str]) -> UserInfo | None:
    """The snapshot of a user by row id (for work without an update, e.g. after a restart)."""
    user = session.get(User, user_id)
    return snapshot(user, admin_ids) if user is not None else None


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"user {user_id} is gone")
    return user


def update_preferences(session: Session, user_id: int, **changes: Any) -> dict[str, Any]:
    user = get_user(session, user_id)
    prefs = dict(user.preferences or {})
    for key, value in changes.items():
        if value is None:
            prefs.pop(key, None)
        else:
            prefs[key] = value
    user.preferences = prefs  # a new dict, so SQLAlchemy sees the change
    return prefs


def set_user_fields(session: Session, user_id: int, **fields: Any) -> None:
    user = get_user(session, user_id)
    for key, value in fields.items():
        setattr(user, key, value)
