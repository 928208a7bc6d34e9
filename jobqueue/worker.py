"""Running a Celery worker for segbot: signals that keep database connections fork-safe, the
periodic sweeper (dead workers' jobs, forgotten queued jobs), and a subprocess for `segbot run`."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from jobqueue.store import QUEUES

log = logging.getLogger(__name__)


def parse_queues(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [q.strip() for q in (text.split(",") if isinstance(text, str) else text) if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        raise ValueError(f"unknown queue {', '.join(unknown) or '(none)'}; use train, predict or both")
    return tuple(dict.fromkeys(names))


class Sweeper(threading.Thread):
    """In the worker's main process: every settings.sweep_interval_s requeue (or fail) jobs of dead
    workers and publish a wake-up token for queues that have queued jobs but no waiting token."""

    def __init__(self, app: Celery, settings: Any) -> None:
        super().__init__(daemon=True, name="segbot-sweeper")
        self.app = app
        self.settings = settings
        self.stopped = threading.Event()

    def sweep_once(self) -> None:
        from sqlalchemy.orm import sessionmaker

        from jobqueue.celery_app import send_token, waiting_tokens
        from jobqueue.store import sweep
        from storage.db import make_engine

        # A private engine disposed after each sweep: nothing open for prefork children to inherit.
        engine = make_engine(self.settings.database_url)
        try:
            factory = sessionmaker(bind=engine, expire_on_commit=False)
            report = sweep(factory, self.settings)
            if self.settings.metrics_port is not None:
                from jobqueue.store import refresh_queue_lengths

                with factory() as session:
                    refresh_queue_lengths(session)
        finally:
            engine.dispose()
        if report.requeued or report.failed:
            log.warning("sweeper: requeued %s, failed %s", report.requeued, report.failed)
        for queue, waiting in report.waiting.items():
            if waiting and waiting_tokens(self.app, queue) == 0:
                send_token(self.app, queue)

    def run(self) -> None:
        while True:
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - a database or broker hiccup: try again next time
                log.warning("sweeper failed", exc_info=True)
            if self.stopped.wait(self.settings.sweep_interval_s):
                return


def _reset_engines_in_child(**_: Any) -> None:
    from storage.db import engine_for

    engine_for.cache_clear()  # a forked pool process opens its own connections


def _start_metrics(settings: Any) -> str | None:
    """Serve /metrics on SEGBOT_METRICS_PORT; the pool processes write into a shared directory
    (PROMETHEUS_MULTIPROC_DIR, set before prometheus_client is imported anywhere here)."""
    if settings.metrics_port is None:
        return None
    created = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        created = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="segbot-metrics-")
    from core.metrics import start_metrics_server

    server = start_metrics_server(settings.metrics_port)
    log.info("metrics on port %s", getattr(server, "server_port", settings.metrics_port))
    return created


def run_worker(settings: Any, queues: Sequence[str] = QUEUES, concurrency: int = 1,
               loglevel: str = "INFO") -> None:
    """Start a Celery worker in this process (blocks until it stops)."""
    from jobqueue.celery_app import make_app
    from jobqueue.tasks import register_tasks

    metrics_dir = _start_metrics(settings)
    app = make_app(settings)
    register_tasks(app, settings)
    sweeper = Sweeper(app, settings)
    worker_process_init.connect(_reset_engines_in_child, weak=False)
    worker_ready.connect(lambda **_: sweeper.start(), weak=False)
    worker_shutdown.connect(lambda **_: sweeper.stopped.set(), weak=False)
    worker = app.Worker(
        hostname=f"segbot-{os.getpid()}@{socket.gethostname()}",
        queues=list(queues),
        concurrency=concurrency,
        pool="prefork",
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
    )
    try:
        worker.start()
    finally:
        if metrics_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    code = getattr(worker, "exitcode", 0) or 0
    if code:
        raise SystemExit(code)


def start_worker_process(settings: Any, queues: Sequence[str] = QUEUES, concurrency: int = 1,
                         env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """`segbot worker` as a child process with the same data dir, database and broker (used by
    `segbot run` with the embedded broker). The caller stops it (terminate(), then wait())."""
    child_env = dict(os.environ if env is None else env)
    child_env["SEGBOT_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url_raw:
        child_env["DATABASE_URL"] = settings.database_url_raw
    if settings.broker_url_raw:
        child_env["SEGBOT_BROKER_URL"] = settings.broker_url_raw
    command = [sys.executable, "-m", "segbot", "worker", "--queues", ",".join(parse_queues(queues)),
               "--concurrency", str(concurrency)]
    return subprocess.Popen(command, env=child_env, **popen)
