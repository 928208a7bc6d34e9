"""Real `segbot worker` processes against the real Redis and PostgreSQL (and the embedded broker
on SQLite), running tiny fake job bodies from tests/queue_fakes.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.settings import get_settings
from jobqueue.store import request_cancel, submit_job
from storage.db import session_factory
from storage.migrate import upgrade
from storage.models import Job, Notice, Result, User
from tests.queue_fakes import OomParams, SleepParams

REPO = Path(__file__).resolve().parent.parent
FAST = {  # heartbeats and sweeps fast enough for a test, slow enough for 2 shared cores
    "SEGBOT_HEARTBEAT_S": "0.3",
    "SEGBOT_STALE_AFTER_S": "2.5",
    "SEGBOT_SWEEP_INTERVAL_S": "0.5",
    "SEGBOT_MAX_JOBS_PER_USER": "20",
}


class Workers:
    """Starts `segbot worker` subprocesses in their own process groups; kills them all at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, wait_ready: bool = True) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker{len(self.procs)}.log"
        with open(log, "wb") as out:
            command = [sys.executable, "-m", "tests.fake_worker", "worker", *args]
            proc = subprocess.Popen(command, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, cwd=self.logs,
                                    start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        if wait_ready:
            wait_for(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, 60, "worker start")
            assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool processes, as if its machine died."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def queue_env(request, tmp_path: Path, monkeypatch) -> Iterator[tuple[Workers, object]]:
    """Environment for this test's workers and this process: Redis + PostgreSQL (default) or the
    embedded broker + SQLite (`@pytest.mark.parametrize('queue_env', ['embedded'], indirect=True)`)."""
    embedded = getattr(request, "param", "redis") == "embedded"
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL", "TELEGRAM_BOT_TOKEN")}
    env.update(FAST, SEGBOT_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    prefix = f"segbot-test-{uuid.uuid4().hex[:10]}:"
    if embedded:
        database = f"sqlite:///{data / 'segbot.db'}"
    else:
        redis_url = request.getfixturevalue("redis_url")
        database = request.getfixturevalue("postgres_url")
        env.update(SEGBOT_BROKER_URL=redis_url.rstrip("/") + "/0", SEGBOT_REDIS_PREFIX=prefix)
    env["DATABASE_URL"] = database
    upgrade(database)
    monkeypatch.chdir(tmp_path)
    for key in ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if key.startswith("SEGBOT_") or key == "DATABASE_URL":
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    workers = Workers(env, tmp_path)
    try:
        yield workers, settings
    finally:
        workers.close()
        get_settings.cache_clear()
        if not embedded:
            import redis

            client = redis.Redis.from_url(env["SEGBOT_BROKER_URL"])
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
            client.close()


def _user(session, tid: int) -> User:
    user = User(telegram_id=tid, username=f"u{tid}")
    session.add(user)
    session.commit()
    return user


def _job(settings, job_id: int) -> Job:
    with session_factory(settings.database_url)() as s:
        return s.get(Job, job_id)


def _count(settings, table, **where) -> int:
    with session_factory(settings.database_url)() as s:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return s.scalar(query)


def _wait_state(settings, job_id: int, states: tuple[str, ...], timeout: float = 30) -> Job:
    return wait_for(lambda: (j := _job(settings, job_id)).state in states and j, timeout,
                    f"job {job_id} to become {states}")  # type: ignore[return-value]


def _assert_lifecycle(workers: Workers, settings) -> None:
    worker = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = _user(session, 1)
        job = submit_job(session, user, SleepParams(seconds=0.6), settings=settings)
        queued = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)
        request_cancel(session, queued)
    running = _wait_state(settings, job.id, ("running",))
    assert running.worker and running.started_at is not None and running.heartbeat_at is not None
    done = _wait_state(settings, job.id, ("succeeded",))
    assert done.progress == 1.0 and done.attempts == 1 and done.finished_at >= done.started_at
    assert _count(settings, Result, job_id=job.id) == 1
    assert _count(settings, Notice, job_id=job.id, kind="sleep_done") == 1
    cancelled = _job(settings, queued.id)
    assert cancelled.state == "cancelled" and cancelled.started_at is None
    assert worker.poll() is None


@pytest.mark.slow
def test_job_runs_end_to_end_on_redis(queue_env) -> None:
    import re
    import urllib.request

    workers, settings = queue_env
    workers.env["SEGBOT_METRICS_PORT"] = "0"  # a free port, named in the worker's log
    _assert_lifecycle(workers, settings)
    port = re.search(rb"metrics on port (\d+)", workers.procs[0].log.read_bytes()).group(1).decode()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r'segbot_jobs_total\{kind="sleep",outcome="succeeded"\} 1\.0', text), text[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("queue_env", ["embedded"], indirect=True)
def test_embedded_broker_runs_the_same_lifecycle(queue_env) -> None:
    workers, settings = queue_env
    assert settings.broker_is_embedded and settings.database_url.startswith("sqlite")
    _assert_lifecycle(workers, settings)


@pytest.mark.slow
def test_two_users_interleave_fairly(queue_env) -> None:
    workers, settings = queue_env
    with session_factory(settings.database_url)() as session:
        a, b = _user(session, 1), _user(session, 2)
        ids = [submit_job(session, a, SleepParams(seconds=0.05), settings=settings).id for _ in range(4)]
        ids += [submit_job(session, b, SleepParams(seconds=0.05), settings=settings).id for _ in range(2)]
    workers.start("--queues", "train")  # all six were waiting before any worker was there
    jobs = [_wait_state(settings, i, ("succeeded",)) for i in ids]
    order = [j.user_id for j in sorted(jobs, key=lambda j: j.started_at)]
    assert order == [a.id, b.id, a.id, b.id, a.id, a.id]


@pytest.mark.slow
def test_cancel_running_job_stops_it_and_worker_goes_on(queue_env) -> None:
    workers, settings = queue_env
    worker = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = _user(session, 1)
        long = submit_job(session, user, SleepParams(seconds=60), settings=settings)
        waiting = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)
        _wait_state(settings, long.id, ("running",))
        assert request_cancel(session, waiting)  # queued: never starts
        assert request_cancel(session, long)
        asked = time.monotonic()
        stopped = _wait_state(settings, long.id, ("cancelled",), timeout=10)
        assert time.monotonic() - asked < 5  # checked within about a second
        assert stopped.finished_at is not None and stopped.progress < 1.0
        assert _count(settings, Result, job_id=long.id) == 0
        assert _count(settings, Notice, job_id=long.id, kind="job_cancelled") == 1
        after = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)
    _wait_state(settings, after.id, ("succeeded",))
    assert _job(settings, waiting.id).started_at is None
    assert worker.poll() is None


@pytest.mark.slow
def test_out_of_memory_fails_with_advice_and_worker_survives(queue_env) -> None:
    workers, settings = queue_env
    worker = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = _user(session, 1)
        oom = submit_job(session, user, OomParams(), settings=settings)
        after = submit_job(session, user, SleepParams(seconds=0.1), settings=settings)
    failed = _wait_state(settings, oom.id, ("failed",))
    assert "out of memory" in failed.error and "smaller" in failed.error
    assert _count(settings, Notice, job_id=oom.id, kind="job_failed") == 1
    assert _wait_state(settings, after.id, ("succeeded",)).attempts == 1
    assert worker.poll() is None


@pytest.mark.slow
def test_sigkill_mid_job_then_new_worker_completes_it_once(queue_env) -> None:
    workers, settings = queue_env
    first = workers.start("--queues", "train")
    with session_factory(settings.database_url)() as session:
        user = _user(session, 1)
        job = submit_job(session, user, SleepParams(seconds=2.0), settings=settings)
    wait_for(lambda: _job(settings, job.id).progress > 0.2, 30, "the job to be under way")
    workers.kill(first)
    assert _job(settings, job.id).state == "running"  # nobody knows yet
    workers.start("--queues", "train,predict")
    done = _wait_state(settings, job.id, ("succeeded",), timeout=60)
    assert done.attempts == 2 and done.worker != f"{first.pid}"
    assert _count(settings, Result, job_id=job.id) == 1
    assert _count(settings, Notice, job_id=job.id) == 1


@pytest.mark.slow
def test_worker_command_refuses_bad_options(tmp_path: Path) -> None:
    env = dict(os.environ, SEGBOT_DATA_DIR=str(tmp_path / "d"))
    proc = subprocess.run([sys.executable, "-m", "segbot", "worker", "--queues", "gpu"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown queue gpu" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "segbot", "worker", "--gpu", "0", "--concurrency", "2"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "one training job per GPU" in proc.stderr
