"""What the bot waits for from a user, kept in the database with an expiry (pending_states): a
restart of the bot loses nothing, and a state past its expiry is as good as absent.

Each function takes a session first (the caller commits); a state is (user, kind, key) -> payload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import PendingState, utcnow


def _live(user_id: int, kind: str, now: datetime):
    return select(PendingState).where(
        PendingState.user_id == user_id, PendingState.kind == kind, PendingState.expires_at > now
    )


def put_state(
    session: Session, user_id: int, kind: str, key: str, payload: dict[str, Any], ttl: timedelta
) -> None:
    """Set (or replace) a state; it counts until now + ttl."""
    now = utcnow()
    expires = now + ttl
    where = (PendingState.user_id == user_id, PendingState.kind == kind, PendingState.key == key)
    row = session.scalar(select(PendingState).where(*where))
    if row is None:
        try:
            with session.begin_nested():  # another update of this user may insert it meanwhile
                state = PendingState(user_id=user_id, kind=kind, key=key, payload=payload)
                state.created_at, state.expires_at = now, expires
                session.add(state)
            return
        except IntegrityError:
            row = session.scalar(select(PendingState).where(*where))
            if row is None:
                raise
    row.payload, row.created_at, row.expires_at = payload, now, expires


def get_state(session: Session, user_id: int, kind: str, key: str = "") -> dict[str, Any] | None:
    row = session.scalar(_live(user_id, kind, utcnow()).where(PendingState.key == key))
    return dict(row.payload or {}) if row is not None else None


def take_state(session: Session, user_id: int, kind: str, key: str = "") -> dict[str, Any] | None:
    """The live state, deleted; None when there is none (or only an expired one, also deleted)."""
    row = session.scalar(
        select(PendingState).where(
            PendingState.user_id == user_id, PendingState.kind == kind, PendingState.key == key
        )
    )
    if row is None:
        return None
    live = _aware(row.expires_at) > utcnow()
    payload = dict(row.payload or {})
    session.delete(row)
    session.flush()
    return payload if live else None


def live_states(
    session: Session, kind: str, user_id: int | None = None, prefix: str = ""
) -> list[tuple[int, str, dict[str, Any]]]:
    """(user id, key, payload) of the live states of a kind (of one user, keys starting with prefix)."""
    query = select(PendingState).where(PendingState.kind == kind, PendingState.expires_at > utcnow())
    if user_id is not None:
        query = query.where(PendingState.user_id == user_id)
    if prefix:
        query = query.where(PendingState.key.startswith(prefix, autoescape=True))
    rows = session.scalars(query.order_by(PendingState.id))
    return [(r.user_id, r.key, dict(r.payload or {})) for r in rows]


def drop_states(session: Session, user_id: int, kind: str, keys: list[str]) -> int:
    if not keys:
        return 0
    outcome = session.execute(
        delete(PendingState).where(
            PendingState.user_id == user_id, PendingState.kind == kind, PendingState.key.in_(keys)
        )
    )
    return int(outcome.rowcount or 0)


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete every state past its expiry; how many."""
    outcome = session.execute(delete(PendingState).where(PendingState.expires_at <= (now or utcnow())))
    return int(outcome.rowcount or 0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite: naive UTC
