"""Load: simulated users send uploads, recognitions, button presses and double taps to the real
bot through the Bot API stand-in (loopback only) while worker processes run fake jobs
(bench/load_worker.py). Prints p50/p95 of the first reply and counts what must be zero: lost
notices, duplicate notices, duplicate jobs.

    .venv/bin/python bench/bench_load.py --quick          20 users, 200 updates
    .venv/bin/python bench/bench_load.py                  200 users, 2,000 updates
    ... --database-url postgresql://... --broker-url redis://127.0.0.1:6379/0   (default: embedded)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.botapi.fixtures import labelme_bytes, png_bytes  # noqa: E402
from tests.botapi.server import BotApiStandIn, User  # noqa: E402

ACK = ("Checking", "Проверяю")
DONE = "bench: job #"
# One user's cycle: each training intent starts from a fresh upload; a double tap presses twice.
CYCLE = ("upload", "press", "recognise", "status", "upload", "double", "recognise", "status")


@dataclass
class Tally:
    latencies: list[tuple[str, float]] = field(default_factory=list)
    train_intents: Counter = field(default_factory=Counter)  # telegram id -> trainings asked for
    photos: Counter = field(default_factory=Counter)  # telegram id -> recognitions asked for
    timeouts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, seconds: float | None) -> None:
        with self.lock:
            if seconds is None:
                self.timeouts += 1
            else:
                self.latencies.append((action, seconds))


def _first_reply(api: BotApiStandIn, user: User, mark: int, timeout: float,
                 skip: tuple[str, ...] = ()) -> object | None:
    try:
        return api.wait_reply(user.id, mark, timeout=timeout, skip=skip)
    except AssertionError:
        return None


def _user(api: BotApiStandIn, user: User, updates: int, think: tuple[float, float], tally: Tally,
          rng: random.Random, sample: bytes, photo: bytes) -> None:
    summary = None
    for step in range(updates):
        action = CYCLE[step % len(CYCLE)]
        time.sleep(rng.uniform(*think))
        mark, sent = api.mark(), time.monotonic()
        if action == "upload":
            api.send_document(user, f"labels_{step}.json", sample)
            reply = _first_reply(api, user, mark, 60)
            full = _first_reply(api, user, mark, 60, skip=ACK)
            summary = getattr(full, "result", None)
        elif action in ("press", "double"):
            if summary is None:
                api.send_text(user, "/status")
            else:
                api.press(user, summary, "train:go")
                if action == "double":
                    api.press(user, summary, "train:go")  # the second tap of an impatient user
                with tally.lock:
                    tally.train_intents[user.id] += 1
                summary = None
            reply = _first_reply(api, user, mark, 60)
        elif action == "recognise":
            api.send_photo(user, photo, width=96, height=96)
            with tally.lock:
                tally.photos[user.id] += 1
            reply = _first_reply(api, user, mark, 60)
        else:
            api.send_text(user, "/status")
            reply = _first_reply(api, user, mark, 60)
        tally.add(action, None if reply is None else reply.at - sent)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _prepare_users(settings, count: int) -> list[User]:  # noqa: ANN001
    """Users with an active (fake) model, so a photo queues a recognition."""
    from storage.db import session_scope
    from storage.models import ModelStatus, TrainedModel
    from storage.models import User as UserRow

    users = [User(200_000 + i, f"L{i}", f"load{i}") for i in range(count)]
    with session_scope(settings.database_url) as session:
        for user in users:
            row = UserRow(telegram_id=user.id, username=user.username, language="en")
            session.add(row)
            session.flush()
            model = TrainedModel(user_id=row.id, version=1, name="v1", classes=["particle"],
                                 status=ModelStatus.READY.value, path=f"files/models/u{row.id}/v1")
            session.add(model)
            session.flush()
            row.active_model_id = model.id
    return users


def _start_workers(settings, count: int, env: dict[str, str]) -> list[subprocess.Popen]:  # noqa: ANN001
    procs = []
    for _ in range(count):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.load_worker", "worker", "--queues", "train,predict",
             "--concurrency", "1"], env=env, cwd=REPO, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def _outcome(settings, api: BotApiStandIn, tally: Tally, wait_s: float) -> dict[str, int]:  # noqa: ANN001
    """Wait for every job to end and its notice to be sent, then count what went wrong."""
    from sqlalchemy import func, select

    from storage.db import session_scope
    from storage.models import Job, Notice
    from storage.models import User as UserRow

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as session:
            open_jobs = session.scalar(select(func.count()).select_from(Job)
                                       .where(Job.state.in_(("queued", "running"))))
            unsent = session.scalar(select(func.count()).select_from(Notice).where(Notice.sent_at.is_(None)))
        if not open_jobs and not unsent:
            break
        time.sleep(0.5)
    with session_scope(settings.database_url) as session:
        ids = dict(session.execute(select(UserRow.id, UserRow.telegram_id)).all())
        jobs = list(session.execute(select(Job.id, Job.user_id, Job.kind, Job.state)))
    with api._lock:  # noqa: SLF001 - the stand-in's record of what the bot sent
        texts = [c.text for c in api.calls if DONE in c.text]
    delivered = Counter(int(t.split(DONE, 1)[1].split()[0]) for t in texts)
    finished = [j for j in jobs if j.state == "succeeded"]
    per_user = Counter((ids[j.user_id], j.kind) for j in jobs)
    duplicate_jobs = sum(max(0, per_user[(tid, "train")] - n) for tid, n in tally.train_intents.items())
    duplicate_jobs += sum(max(0, per_user[(tid, "predict")] - n) for tid, n in tally.photos.items())
    return {
        "jobs": len(jobs),
        "succeeded": len(finished),
        "unfinished": sum(j.state in ("queued", "running") for j in jobs),
        "lost_notices": sum(1 for j in finished if delivered[j.id] == 0),
        "duplicate_notices": sum(n - 1 for n in delivered.values() if n > 1),
        "duplicate_jobs": duplicate_jobs,
        "train_intents": sum(tally.train_intents.values()),
        "photos": sum(tally.photos.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--updates", type=int, default=2000, help="in all, spread over the users")
    parser.add_argument("--quick", action="store_true", help="20 users, 200 updates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--think", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"))
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--broker-url", default=None)
    args = parser.parse_args()
    if args.quick:
        args.users, args.updates = 20, 200

    import logging

    from bot.app import BotThread
    from core.settings import load_settings
    from storage.migrate import upgrade

    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "outbox tick skipped" under load is fine
    data_dir = Path(tempfile.mkdtemp(prefix="segbot-bench-load-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL")}
    env.update(SEGBOT_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), SEGBOT_MAX_JOBS_PER_USER="10000",
               SEGBOT_DAILY_GPU_SECONDS="1e9", SEGBOT_HEARTBEAT_S="1", SEGBOT_SWEEP_INTERVAL_S="2")
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["SEGBOT_BROKER_URL"] = args.broker_url
    os.environ.update(env)
    api = BotApiStandIn().start()
    settings = load_settings(telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
                             telegram_api_base_file_url=api.base_file_url, data_dir=data_dir)
    upgrade(settings.database_url)
    users = _prepare_users(settings, args.users)
    sample = labelme_bytes(png_bytes(96), size=96, n=4)
    photo = png_bytes(96, seed=3)
    bot = BotThread(settings, poll_timeout=10.0).start()
    workers = _start_workers(settings, args.workers, env)
    tally = Tally()
    try:
        per_user = max(1, args.updates // args.users)
        threads = [threading.Thread(target=_user, daemon=True,
                                    args=(api, user, per_user, tuple(args.think), tally, random.Random(i),
                                          sample, photo))
                   for i, user in enumerate(users)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        counts = _outcome(settings, api, tally, wait_s=120)
    finally:
        bot.stop()
        for proc in workers:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
        api.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    values = [s for _, s in tally.latencies]
    backend = "PostgreSQL + Redis" if args.database_url else "SQLite + embedded queue"
    print(f"users {args.users}, updates {len(values) + tally.timeouts} in {elapsed:.1f} s, {args.workers} "
          f"workers (fake jobs), {backend}; {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    print(f"update -> first reply: p50 {statistics.median(values) * 1000:.0f} ms, "
          f"p95 {_percentile(values, 0.95) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms; "
          f"no reply in 60 s: {tally.timeouts}")
    for action in sorted({a for a, _ in tally.latencies}):
        part = [s for a, s in tally.latencies if a == action]
        print(f"  {action:<9} n={len(part):<4} p50 {statistics.median(part) * 1000:.0f} ms, "
              f"p95 {_percentile(part, 0.95) * 1000:.0f} ms")
    print(f"jobs {counts['jobs']} ({counts['succeeded']} succeeded, {counts['unfinished']} unfinished) for "
          f"{counts['train_intents']} trainings asked (each double tap once) and {counts['photos']} photos")
    print(f"lost notices {counts['lost_notices']} (goal 0), duplicate notices {counts['duplicate_notices']} "
          f"(goal 0), duplicate jobs {counts['duplicate_jobs']} (goal 0)")


if __name__ == "__main__":
    main()
