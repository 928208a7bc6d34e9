"""Queue overhead, measured with a real `segbot worker` and empty jobs, for Redis (+ PostgreSQL)
and for the embedded broker (+ SQLite):

- enqueue-to-start: Job.created_at (submit) -> Job.started_at (claimed by the worker);
- finish-to-notice: the body's return -> the notice visible to a poller (10 ms polling, as the
  bot's outbox loop would see it), and -> the notice's commit time;
- both as a fraction of a 60-second job (goal < 1 %);
- 200 queued jobs from 20 users (submitted user after user) drain in round-robin order.

Usage: .venv/bin/python bench/bench_queue.py [--jobs 20] [--only redis|embedded]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PG_ADMIN_URL = os.environ.get("SEGBOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SEGBOT_TEST_REDIS", "redis://127.0.0.1:6379/0")
JOB_S = 60.0


def ts(moment: datetime) -> float:
    from jobqueue.store import aware

    return aware(moment).timestamp()


def make_pg_db() -> str | None:
    import sqlalchemy as sa

    name = f"segbot_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as error:  # noqa: BLE001
        print(f"  (PostgreSQL unavailable: {error.__class__.__name__}; using SQLite)")
        return None
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_db(url: str) -> None:
    import sqlalchemy as sa

    from storage.db import engine_for

    engine_for(url).dispose()
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


class Setup:
    def __init__(self, broker: str, root: Path) -> None:
        self.broker = broker
        self.root = root
        self.prefix = f"segbot-bench-{uuid.uuid4().hex[:8]}:"
        self.pg = make_pg_db() if broker == "redis" else None
        data = root / broker
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL")}
        env.update(SEGBOT_DATA_DIR=str(data),
                   PYTHONPATH=str(REPO), SEGBOT_MAX_JOBS_PER_USER="10",
                   DATABASE_URL=self.pg or f"sqlite:///{data / 'segbot.db'}")
        if broker == "redis":
            env.update(SEGBOT_BROKER_URL=REDIS_URL, SEGBOT_REDIS_PREFIX=self.prefix)
        self.env = env
        os.environ.update({k: v for k, v in env.items() if k.startswith("SEGBOT_") or k == "DATABASE_URL"})
        if broker != "redis":
            os.environ.pop("SEGBOT_BROKER_URL", None)
        from core.settings import load_settings
        from storage.migrate import upgrade

        self.settings = load_settings()
        self.settings.ensure_dirs()
        upgrade(self.settings.database_url)
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        log = self.root / f"{self.broker}-worker.log"
        command = [sys.executable, "-m", "tests.fake_worker", "worker", "--queues", "train"]
        self.worker = subprocess.Popen(command,
                                       env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if time.monotonic() > deadline or self.worker.poll() is not None:
                raise SystemExit(f"worker did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop_worker(self) -> None:
        if self.worker is not None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
            self.worker = None

    def close(self) -> None:
        self.stop_worker()
        if self.pg:
            drop_pg_db(self.pg)
        if self.broker == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=self.prefix + "*"))
            if keys:
                client.delete(*keys)


def latency(setup: Setup, n: int) -> dict[str, float]:
    from sqlalchemy import select

    from jobqueue.store import submit_job
    from storage.db import session_factory
    from storage.models import Job, Notice, User
    from storage.notices import mark_sent, pending_notices
    from tests.queue_fakes import NoopParams

    factory = session_factory(setup.settings.database_url)
    starts, seen, committed = [], [], []
    with factory() as session:
        user = User(telegram_id=1, username="bench")
        session.add(user)
        session.commit()
        for i in range(n + 2):  # the first two warm up connections and caches
            job = submit_job(session, user, NoopParams(), settings=setup.settings)
            while True:
                notice = next((x for x in pending_notices(session, 10) if x.job_id == job.id), None)
                if notice is not None:
                    seen_at = time.time()
                    break
                session.rollback()
                time.sleep(0.01)
            mark_sent(session, notice.id)
            session.expire_all()
            row = session.scalar(select(Job).where(Job.id == job.id))
            notice = session.scalar(select(Notice).where(Notice.id == notice.id))
            if row.state != "succeeded":
                raise SystemExit(f"job {row.id} {row.state}: {row.error}")
            if i >= 2:
                starts.append(ts(row.started_at) - ts(row.created_at))
                seen.append(seen_at - row.result["t_end"])
                committed.append(ts(notice.created_at) - row.result["t_end"])
    return {"start_ms": statistics.median(starts) * 1000, "start_p90_ms": _p90(starts) * 1000,
            "notice_ms": statistics.median(seen) * 1000, "notice_p90_ms": _p90(seen) * 1000,
            "commit_ms": statistics.median(committed) * 1000}


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def round_robin(setup: Setup, users: int = 20, per_user: int = 10) -> dict[str, object]:
    from sqlalchemy import select

    from jobqueue.store import submit_job
    from storage.db import session_factory
    from storage.models import Job, JobState, User
    from tests.queue_fakes import NoopParams

    setup.stop_worker()
    factory = session_factory(setup.settings.database_url)
    ids = []
    with factory() as session:
        people = [User(telegram_id=1000 + u, username=f"rr{u}") for u in range(users)]
        session.add_all(people)
        session.commit()
        for person in people:  # user after user: a FIFO queue would serve rr0 ten times first
            ids += [submit_job(session, person, NoopParams(), settings=setup.settings).id
                    for _ in range(per_user)]
    started = time.monotonic()
    setup.start_worker()
    ready = time.monotonic()
    with factory() as session:
        while session.scalar(select(Job).where(Job.id.in_(ids), Job.state != JobState.SUCCEEDED.value)
                             .limit(1)) is not None:
            session.rollback()
            time.sleep(0.05)
        jobs = sorted(session.scalars(select(Job).where(Job.id.in_(ids))),
                      key=lambda j: (ts(j.started_at), j.id))
    drained = time.monotonic()
    order = [j.user_id for j in jobs]
    rounds_ok = all(len(set(order[i:i + users])) == users for i in range(0, len(order), users))
    longest_run = max(_runs(order))
    return {"jobs": len(order), "rounds_ok": rounds_ok, "longest_same_user_run": longest_run,
            "drain_s": drained - ready, "worker_start_s": ready - started,
            "per_job_ms": (drained - ready) / len(order) * 1000}


def _runs(order: list[int]) -> list[int]:
    runs, current = [], 1
    for prev, cur in zip(order, order[1:], strict=False):
        current = current + 1 if cur == prev else 1
        runs.append(current)
    return runs or [1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="empty jobs for the latency figures")
    parser.add_argument("--only", choices=("redis", "embedded"))
    args = parser.parse_args()
    brokers = [args.only] if args.only else ["redis", "embedded"]
    print(f"queue overhead, {args.jobs} empty jobs one after another, one worker (concurrency 1)")
    with tempfile.TemporaryDirectory(prefix="segbot-bench-") as tmp:
        for broker in brokers:
            setup = Setup(broker, Path(tmp))
            try:
                setup.start_worker()
                lat = latency(setup, args.jobs)
                rr = round_robin(setup)
            finally:
                setup.close()
            db = "PostgreSQL" if setup.pg else "SQLite"
            total = (lat["start_ms"] + lat["notice_ms"]) / 1000
            print(f"\n[{broker} broker, {db}]")
            print(f"  enqueue-to-start : median {lat['start_ms']:7.1f} ms  p90 {lat['start_p90_ms']:7.1f} ms"
                  f"  = {lat['start_ms'] / 1000 / JOB_S:.3%} of a {JOB_S:.0f} s job")
            print(f"  finish-to-notice : median {lat['notice_ms']:7.1f} ms  "
                  f"p90 {lat['notice_p90_ms']:7.1f} ms  (committed after {lat['commit_ms']:.1f} ms)"
                  f" = {lat['notice_ms'] / 1000 / JOB_S:.3%}")
            print(f"  overhead total   : {total * 1000:7.1f} ms = {total / JOB_S:.3%} of a 60 s job "
                  f"(goal < 1 %: {'yes' if total / JOB_S < 0.01 else 'NO'})")
            print(f"  round-robin      : {rr['jobs']} jobs of 20 users x 10 drained in {rr['drain_s']:.1f} s "
                  f"({rr['per_job_ms']:.0f} ms/job); every block of 20 starts = 20 different users: "
                  f"{'yes' if rr['rounds_ok'] else 'NO'}; "
                  f"longest run of one user: {rr['longest_same_user_run']}")


if __name__ == "__main__":
    main()
