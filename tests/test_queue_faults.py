"""Faults of the real services under real worker processes: PostgreSQL restarted while a job
runs and finishes, Redis restarted (every wake-up message lost), the file store's disk full.
PostgreSQL and Redis are private servers of these tests (tests/private_services.py)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import get_settings
from jobqueue.store import submit_job
from storage.db import engine_for, session_factory
from storage.migrate import upgrade
from storage.models import Notice, Result
from tests.private_services import PrivatePostgres, PrivateRedis
from tests.queue_fakes import SleepParams, WriteParams
from tests.test_queue_workers import FAST, REPO, Workers, _count, _job, _user, _wait_state, wait_for

pytestmark = pytest.mark.slow


def _environment(tmp_path: Path, monkeypatch, database: str, broker: str, **extra: str):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL", "TELEGRAM_BOT_TOKEN")}
    env.update(FAST, SEGBOT_DATA_DIR=str(data), PYTHONPATH=str(REPO), DATABASE_URL=database,
               SEGBOT_BROKER_URL=broker, SEGBOT_REDIS_PREFIX=f"segbot-fault-{uuid.uuid4().hex[:8]}:", **extra)
    upgrade(database)
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        if key.startswith("SEGBOT_") or key == "DATABASE_URL":
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    return Workers(env, tmp_path), settings


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    engine_for.cache_clear()
    server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_postgres_restart_while_a_job_runs_and_finishes(tmp_path, monkeypatch, private_pg,
                                                        private_redis) -> None:
    """PostgreSQL goes away mid-job and is still away when the body ends: progress and heartbeats
    are skipped, finishing retries until it is back. One result, one notice, one attempt."""
    workers, settings = _environment(tmp_path, monkeypatch, private_pg.url, private_redis.url,
                                     SEGBOT_STALE_AFTER_S="60")  # an outage is not a dead worker
    try:
        worker = workers.start("--queues", "train")
        with session_factory(settings.database_url)() as session:
            user = _user(session, 1)
            job = submit_job(session, user, SleepParams(seconds=2.0), settings=settings)
        wait_for(lambda: _job(settings, job.id).progress > 0.2, 60, "the job to be under way")
        engine_for(settings.database_url).dispose()  # our own pool must not hold the old server
        private_pg.stop("fast")  # terminates every connection, as a restart does
        time.sleep(4)  # the body ends meanwhile: its results wait for the database
        down = time.monotonic()
        private_pg.start()
        done = _wait_state(settings, job.id, ("succeeded", "failed"), timeout=90)
        print(f"postgres restart: job {done.state} {time.monotonic() - down:.1f} s after it was back, "
              f"attempts {done.attempts}")
        assert done.state == "succeeded" and done.attempts == 1
        assert _count(settings, Result, job_id=job.id) == 1
        assert _count(settings, Notice, job_id=job.id) == 1
        assert "database unreachable" in worker.log.read_text()  # it did meet the outage
        with session_factory(settings.database_url)() as session:  # and goes on working
            after = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)
        assert _wait_state(settings, after.id, ("succeeded",), timeout=60).attempts == 1
        assert worker.poll() is None
    finally:
        workers.close()
        get_settings.cache_clear()


def test_redis_restart_loses_wakeups_but_queued_jobs_start(tmp_path, monkeypatch, postgres_url,
                                                           private_redis) -> None:
    """Redis restarted empty, twice: (1) while the worker idles: the wake-up of a job submitted
    meanwhile is lost, the sweeper publishes a new one; (2) right as a job ends, so the worker's
    acknowledgement breaks (Celery's consumer may then stay deaf: the sweeper's watchdog makes it
    reconnect). Either way the queued job starts within a bounded delay."""
    workers, settings = _environment(tmp_path, monkeypatch, postgres_url, private_redis.url,
                                     SEGBOT_SWEEP_INTERVAL_S="1")
    delays = []
    try:
        worker = workers.start("--queues", "train")
        with session_factory(settings.database_url)() as session:
            user = _user(session, 1)
            for round_ in ("idle", "at the ack"):
                job = submit_job(session, user, SleepParams(seconds=0.3), settings=settings)
                if round_ == "idle":
                    _wait_state(settings, job.id, ("succeeded",), timeout=60)
                    time.sleep(1.5)  # no wake-up left in flight
                else:
                    wait_for(lambda j=job: _job(settings, j.id).state == "succeeded", 60, "the job's end")
                private_redis.stop()
                lost = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)  # no token
                time.sleep(2)
                private_redis.start()
                back = time.time()
                started = _wait_state(settings, lost.id, ("running", "succeeded"), timeout=90)
                delays.append(max(0.0, started.started_at.timestamp() - back))
                assert _wait_state(settings, lost.id, ("succeeded",), timeout=60).attempts == 1
                assert _count(settings, Notice, job_id=lost.id) == 1
        kicked = worker.log.read_text().count("reconnecting its consumer")
        print(f"redis restart: queued job started {delays[0]:.1f} s (worker idle) and {delays[1]:.1f} s "
              f"(restart at the ack) after Redis was back; sweep interval 1 s; watchdog reconnects: {kicked}")
        assert max(delays) < 45  # reconnect backoff (2, 4, 8... s) + a sweep + the watchdog's 5 s
        assert worker.poll() is None
    finally:
        workers.close()
        get_settings.cache_clear()


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return proc.returncode == 0


def test_disk_full_fails_clearly_keeps_nothing_then_recovers(tmp_path, monkeypatch, private_pg,
                                                             private_redis) -> None:
    """A 4 MB tmpfs as the store (or, where mounting is not allowed, ENOSPC injected at the store
    layer): a result blob and a bundle that do not fit fail the job with the disk-full message,
    leave no file behind, and the next job succeeds once space is back."""
    workers, settings = _environment(tmp_path, monkeypatch, private_pg.url, private_redis.url)
    files = settings.files_dir
    mounted = _mount_tmpfs(files, "4m")
    print("disk full made by", "a 4 MB tmpfs mount" if mounted else "an injected OSError(ENOSPC)")
    try:
        from storage.files import FileStore

        store = FileStore(files)
        filler = files / "filler"
        if mounted:
            filler.write_bytes(b"\0" * (3 * 1024 * 1024))  # 1 MB left
        inject = {} if mounted else {"inject_enospc": True}
        workers.start("--queues", "train")
        with session_factory(settings.database_url)() as session:
            user = _user(session, 1)
            blob = submit_job(session, user, WriteParams(blob_bytes=2 << 20, **inject), settings=settings)
            bundle = submit_job(session, user, WriteParams(bundle_bytes=2 << 20, **inject),
                                settings=settings)
            for job in (blob, bundle):
                failed = _wait_state(settings, job.id, ("failed", "succeeded"), timeout=90)
                assert failed.state == "failed" and "disk is full" in failed.error, failed.error
                assert "administrator has been told" in failed.error
                assert _count(settings, Notice, job_id=job.id, kind="job_failed") == 1
                assert _count(settings, Result, job_id=job.id) == 0
            assert list(store.iter_digests()) == [] and not any(store.tmp.iterdir())  # nothing half-written
            assert not (files / "models").exists() or not any((files / "models").rglob("*.pt"))
            assert "the file store is full" in workers.procs[0].log.read_text()  # the administrator's line
            filler.unlink(missing_ok=True)  # space is back
            ok = submit_job(session, user, WriteParams(blob_bytes=1 << 20, bundle_bytes=1 << 20),
                            settings=settings)
            done = _wait_state(settings, ok.id, ("failed", "succeeded"), timeout=90)
        assert done.state == "succeeded", done.error
        assert store.read_bytes(done.result["sha"]) and len(list(store.iter_digests())) == 1
    finally:
        workers.close()
        get_settings.cache_clear()
        if mounted:
            subprocess.run(["umount", "-l", str(files)], check=False)
