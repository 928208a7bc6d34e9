"""The Celery app: queues `train` and `predict`, a broker from the settings (Redis, or the embedded
SQLAlchemy transport over a SQLite file), no result backend (job state lives in the database).

A message is only a wake-up token ("look at queue X"); the job itself is claimed from the
database, so redelivered or duplicated tokens are harmless.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from core.settings import Settings
from jobqueue.queues import QUEUES

TASK_NAME = "segbot.run_queue"

_apps: dict[tuple[str, str, float, float], Celery] = {}
_apps_lock = threading.Lock()


def transport_options(settings: Settings) -> dict[str, Any]:
    url = settings.broker_url
    if url.startswith("redis"):
        # Unacked tokens come back after the visibility timeout; a redelivered token is harmless.
        options: dict[str, Any] = {"visibility_timeout": int(settings.visibility_timeout_s)}
        if settings.redis_key_prefix:
            options["global_keyprefix"] = settings.redis_key_prefix
        return options
    if url.startswith("sqla+"):
        # kombu hands these options to SQLAlchemy's create_engine, so only engine arguments here;
        # the polling interval is set on the transport class (see _embedded_polling).
        return {"connect_args": {"timeout": 30}} if "sqlite" in url else {}
    return {}


def _embedded_polling(seconds: float) -> None:
    """The SQLAlchemy transport polls its table (default every 1 s); poll faster so a job starts
    within a fraction of a second. Its transport_options would be passed to create_engine."""
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = seconds


def make_app(settings: Settings) -> Celery:
    if settings.broker_url.startswith("sqla+"):
        _embedded_polling(settings.broker_poll_s)
    app = Celery("segbot", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a token taken by a worker that dies goes back to the queue
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds only the job it runs
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="train",
        task_default_exchange="train",
        task_default_routing_key="train",
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,  # no pidbox: the embedded transport has no fanout
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_time_limit=None,
    )
    return app


def get_app(settings: Settings) -> Celery:
    """One app per broker configuration in this process (producers reuse its connection pool)."""
    key = (settings.broker_url, settings.redis_key_prefix, settings.visibility_timeout_s,
           settings.broker_poll_s)
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = make_app(settings)
        return app


def wake(settings: Settings, queue: str) -> None:
    """Publish a wake-up token for `queue`: some worker of that queue will claim the next job."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    send_token(get_app(settings), queue)


def send_token(app: Celery, queue: str) -> None:
    app.send_task(TASK_NAME, args=[queue], queue=queue, exchange=queue, routing_key=queue, ignore_result=True)


def waiting_tokens(app: Celery, queue: str) -> int:
    """Wake-up tokens waiting in the broker for `queue` (0 when the broker cannot say)."""
    try:
        with app.connection_for_write() as connection:
            return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # noqa: BLE001 - only used to avoid piling up tokens
        return 0
