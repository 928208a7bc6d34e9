"""Engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# A machine cut off from the network (power, cable, VPN) must not hold its transactions' locks on
# the server for TCP's two hours, nor block its own threads for TCP's fifteen minutes of retries:
# both ends give up on a silent peer within about half a minute (keepalives for an idle connection,
# a user timeout for unacknowledged data; the server's side set per session). The sweeper then sees
# the stale heartbeat, and a claim or a finish that was under way is rolled back on the server.
PG_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "options": "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
               "-c tcp_user_timeout=30000",
}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")  # bot and workers read and write at once
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args=dict(PG_CONNECT_ARGS))


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)


# A database URL (sessions on the process-wide cached engine) or a caller's own sessionmaker
# (a worker's parent process uses a private engine that no forked child inherits).
Db = str | sessionmaker[Session]


def session_factory(db: Db) -> sessionmaker[Session]:
    if isinstance(db, sessionmaker):
        return db
    return sessionmaker(bind=engine_for(db), expire_on_commit=False)


@contextmanager
def session_scope(db: Db, *, commit: bool = True) -> Iterator[Session]:
    """The one unit of work: a session that commits on success, rolls back on any error and is
    always closed. commit=False rolls back on success too (a dry run sees its own changes, then
    leaves nothing behind)."""
    session = session_factory(db)()
    try:
        yield session
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
