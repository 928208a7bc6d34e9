"""Running a Celery worker for segbot: signals that keep database connections fork-safe, the
periodic sweeper (dead workers' jobs, forgotten queued jobs), and a subprocess for `segbot run`."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import task_received, worker_process_init, worker_ready, worker_shutdown

from core.settings import Settings
from jobqueue.queues import QUEUES

log = logging.getLogger(__name__)


def parse_queues(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [q.strip() for q in (text.split(",") if isinstance(text, str) else text) if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        raise ValueError(f"unknown queue {', '.join(unknown) or '(none)'}; use train, predict or both")
    return tuple(dict.fromkeys(names))


class Sweeper(threading.Thread):
    """In the worker's main process: every settings.sweep_interval_s requeue (or fail) jobs of dead
    workers and publish a wake-up token for queues that have queued jobs but no waiting token
    (a Redis restart loses every token: this is how queued jobs still start).

    It also watches its own consumer: after a broker restart that broke an acknowledgement, Celery's
    consumer can stay connected to nothing and never receive again (seen in about one restart in
    four in tests/test_queue_faults.py). Jobs of our queues waiting, this worker idle, tokens sent
    and none received for `deaf_after_s`: the consumer is told its connection is lost, and it
    reconnects."""

    def __init__(self, app: Celery, settings: Settings, queues: Sequence[str] = QUEUES) -> None:
        super().__init__(daemon=True, name="segbot-sweeper")
        self.app = app
        self.settings = settings
        self.queues = tuple(queues)
        self.stopped = threading.Event()
        self.consumer: Any = None  # set on worker_ready
        self.deaf_after_s = max(3 * settings.sweep_interval_s, 5.0)
        self._unheard_since: float | None = None  # first token sent since we last received one

    def heard(self, **_: Any) -> None:
        """task_received: this worker's consumer does receive."""
        self._unheard_since = None

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
        sent = False
        for queue, waiting in report.waiting.items():
            if waiting and waiting_tokens(self.app, queue) == 0:
                send_token(self.app, queue)
                sent |= queue in self.queues
        ours = any(report.waiting.get(queue) for queue in self.queues)
        self.check_hearing(ours, sent, idle=not _reserved_requests())

    def check_hearing(self, waiting: bool, sent: bool, idle: bool, now: float | None = None) -> bool:
        """Kick the consumer when this idle worker received nothing for deaf_after_s since a token
        for its waiting queues went out; True when it kicked."""
        now = time.monotonic() if now is None else now
        if not (waiting and idle):
            self._unheard_since = None
            return False
        if self._unheard_since is None:
            self._unheard_since = now if sent else None
            return False
        if now - self._unheard_since < self.deaf_after_s or self.consumer is None:
            return False
        log.warning("sweeper: jobs wait and this idle worker received no wake-up for %.0f s; "
                    "reconnecting its consumer", now - self._unheard_since)
        self._unheard_since = None
        hub = getattr(self.consumer, "hub", None)
        if hub is not None:
            hub.call_soon(_connection_lost)  # raised in the consumer's loop: it reconnects
        return True

    def run(self) -> None:
        while True:
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - a database or broker hiccup: try again next time
                log.warning("sweeper failed", exc_info=True)
            if self.stopped.wait(self.settings.sweep_interval_s):
                return


def _reserved_requests() -> int:
    from celery.worker import state

    return len(state.reserved_requests)


def _connection_lost() -> None:
    raise ConnectionError("segbot sweeper: the consumer stopped receiving wake-ups")


def _reset_engines_in_child(**_: Any) -> None:
    from storage.db import engine_for

    engine_for.cache_clear()  # a forked pool process opens its own connections


def _start_metrics(settings: Settings) -> str | None:
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


def run_worker(settings: Settings, queues: Sequence[str] = QUEUES, concurrency: int = 1,
               loglevel: str = "INFO") -> None:
    """Start a Celery worker in this process (blocks until it stops)."""
    from jobqueue.celery_app import make_app
    from jobqueue.tasks import register_tasks

    metrics_dir = _start_metrics(settings)
    app = make_app(settings)
    register_tasks(app, settings)
    sweeper = Sweeper(app, settings, queues)
    probes: list[subprocess.Popen[bytes]] = []

    def ready(sender: Any = None, **_: Any) -> None:
        sweeper.consumer = sender
        sweeper.start()
        if "train" in queues:  # this machine's speed, for the first time estimates (once per host)
            from jobqueue.probe import start_probe

            probe = start_probe(settings, child_env(settings))
            if probe is not None:
                probes.append(probe)
                threading.Thread(target=probe.wait, daemon=True, name="segbot-probe").start()  # reaped

    def shutdown(**_: Any) -> None:
        sweeper.stopped.set()
        for probe in probes:
            if probe.poll() is None:
                probe.terminate()

    worker_process_init.connect(_reset_engines_in_child, weak=False)
    worker_ready.connect(ready, weak=False)
    task_received.connect(sweeper.heard, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
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


def start_worker_process(settings: Settings, queues: Sequence[str] = QUEUES, concurrency: int = 1,
                         env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """`segbot worker` as a child process with the same data dir, database and broker (used by
    `segbot run` with the embedded broker). The caller stops it (terminate(), then wait())."""
    command = [sys.executable, "-m", "segbot", "worker", "--queues", ",".join(parse_queues(queues)),
               "--concurrency", str(concurrency)]
    return subprocess.Popen(command, env=child_env(settings, env), **popen)


def child_env(settings: Settings, env: dict[str, str] | None = None) -> dict[str, str]:
    """A child process's environment naming this process's data dir, database and broker."""
    child = dict(os.environ if env is None else env)
    child["SEGBOT_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url_raw:
        child["DATABASE_URL"] = settings.database_url_raw
    if settings.broker_url_raw:
        child["SEGBOT_BROKER_URL"] = settings.broker_url_raw
    return child
