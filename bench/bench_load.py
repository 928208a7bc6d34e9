"""Load, deployed as in production: the bot as its own `segbot run` process (bench/load_bot.py, with
stopwatches), the Bot API stand-in in another (bench/load_api.py, Telegram's flood limits enforced
and counted), worker processes running fake jobs (bench/load_worker.py), and simulated users sending
uploads, recognitions, button presses and double taps from this one. Prints the first reply's
p50/p95/max by kind, job done -> result delivered, where the bot's time went (handler, database,
rate limiter), requests by kind, and what must be zero: lost and duplicate notices, duplicate jobs,
requests over Telegram's limits.

    .venv/bin/python bench/bench_load.py --quick          20 users, 200 updates
    .venv/bin/python bench/bench_load.py                  200 users, 2,000 updates
    ... --database-url postgresql://... --broker-url redis://127.0.0.1:6379/0   (default: embedded)
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load_api import DONE, StandInManager  # noqa: E402
from tests.botapi.fixtures import labelme_bytes, png_bytes  # noqa: E402
from tests.botapi.server import User  # noqa: E402

ACK = ("Checking", "Проверяю")
# One user's cycle: each training intent starts from a fresh upload; a double tap presses twice.
CYCLE = ("upload", "press", "recognise", "status", "upload", "double", "recognise", "status")


@dataclass
class Tally:
    latencies: list[tuple[str, float]] = field(default_factory=list)
    train_intents: Counter = field(default_factory=Counter)  # telegram id -> trainings asked for
    photos: Counter = field(default_factory=Counter)  # telegram id -> recognitions asked for
    timeouts: int = 0
    sent_at: list[float] = field(default_factory=list)  # when each update went (monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, seconds: float | None, sent: float) -> None:
        with self.lock:
            self.sent_at.append(sent)
            if seconds is None:
                self.timeouts += 1
            else:
                self.latencies.append((action, seconds))


def _first_reply(api: Any, user: User, mark: int, timeout: float,
                 skip: tuple[str, ...] = ()) -> tuple[float, Any] | None:
    return api.wait_reply(user.id, mark, timeout, skip)


def _user(api: Any, user: User, updates: int, think: tuple[float, float], tally: Tally,
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
            summary = full[1] if full else None
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
            api.send_photo(user, photo, 96, 96)
            with tally.lock:
                tally.photos[user.id] += 1
            reply = _first_reply(api, user, mark, 60)
        else:
            api.send_text(user, "/status")
            reply = _first_reply(api, user, mark, 60)
        tally.add(action, None if reply is None else reply[0] - sent, sent)


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


def _outcome(settings, api: Any, tally: Tally, wait_s: float) -> dict[str, Any]:  # noqa: ANN001
    """Wait for every job to end and its notice to be sent, then count what went wrong and how long
    each result took from its job's end to the chat."""
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
        jobs = list(session.execute(select(Job.id, Job.user_id, Job.kind, Job.state, Job.finished_at)))
    wall_minus_mono = time.time() - time.monotonic()  # one machine: the stand-in's clock is ours
    first_sent: dict[int, float] = {}
    delivered: Counter = Counter()
    for at, text in api.done_texts():
        job_id = int(text.split(DONE, 1)[1].split()[0])
        delivered[job_id] += 1
        first_sent.setdefault(job_id, at + wall_minus_mono)
    finished = [j for j in jobs if j.state == "succeeded"]
    lags = []
    for job in finished:
        if job.id in first_sent and job.finished_at is not None:
            ended = job.finished_at if job.finished_at.tzinfo else job.finished_at.replace(tzinfo=UTC)
            lags.append(first_sent[job.id] - ended.timestamp())
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
        "done_to_delivered": lags,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_bot(env: dict[str, str], stats: Path, log: Path) -> subprocess.Popen:
    """`segbot run` (instrumented) as its own process, polling the stand-in."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.load_bot", "run", "--no-worker", "--no-web"],
        env={**env, "SEGBOT_BENCH_STATS": str(stats)}, cwd=REPO, start_new_session=True,
        stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(api: Any, user: User, timeout: float = 60.0) -> None:
    """The bot answers: it has started polling (one /help from a user outside the sample)."""
    mark = api.mark()
    api.send_text(user, "/help")
    if api.wait_reply(user.id, mark, timeout, ()) is None:
        raise SystemExit("the bot did not answer within 60 s (see its log)")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
    """Ask a process group to stop (SIGINT: the bot's graceful stop), kill it after timeout."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _ms(values: list[float], q: float) -> str:
    return f"{_percentile(values, q) * 1000:.0f} ms" if values else "-"


def _print_report(args: argparse.Namespace, tally: Tally, counts: dict[str, Any], elapsed: float,
                  traffic: dict[str, Any], bot_stats: dict[str, Any], cpu: dict[str, float]) -> None:
    values = [s for _, s in tally.latencies]
    backend = "PostgreSQL + Redis" if args.database_url else "SQLite + embedded queue"
    sent = len(values) + tally.timeouts
    print(f"users {args.users}, updates {sent} in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.1f}/s; think "
          f"{args.think[0]:g}-{args.think[1]:g} s), {args.workers} workers (fake jobs), {backend}; "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    times = sorted(tally.sent_at)
    busiest = max((bisect.bisect_left(times, t + 60.0) - i for i, t in enumerate(times)), default=0)
    print(f"busiest minute: {busiest} updates ({busiest / min(60.0, max(elapsed, 1e-9)):.1f}/s)")
    print(f"update -> first reply: p50 {_ms(values, 0.5)}, p95 {_ms(values, 0.95)}, "
          f"max {_ms(values, 1.0)}; no reply in 60 s: {tally.timeouts}")
    for action in sorted({a for a, _ in tally.latencies}):
        part = [s for a, s in tally.latencies if a == action]
        print(f"  {action:<9} n={len(part):<4} p50 {_ms(part, 0.5)}, p95 {_ms(part, 0.95)}, "
              f"max {_ms(part, 1.0)}")
    lags = counts["done_to_delivered"]
    print(f"job done -> result delivered: p50 {_ms(lags, 0.5)}, p95 {_ms(lags, 0.95)}, "
          f"max {_ms(lags, 1.0)} (n={len(lags)})")
    print(f"jobs {counts['jobs']} ({counts['succeeded']} succeeded, {counts['unfinished']} unfinished) for "
          f"{counts['train_intents']} trainings asked (each double tap once) and {counts['photos']} photos")
    print(f"lost notices {counts['lost_notices']} (goal 0), duplicate notices {counts['duplicate_notices']} "
          f"(goal 0), duplicate jobs {counts['duplicate_jobs']} (goal 0)")
    over = Counter(scope for scope, _method, _chat in traffic["over_limit"])
    seconds = max(traffic["seconds"], 1e-9)
    kinds = ", ".join(f"{k} {n} ({n / seconds:.1f}/s)"
                      for k, n in sorted(traffic["by_kind"].items(), key=lambda kv: -kv[1]))
    print(f"requests to the Bot API: {sum(traffic['by_kind'].values())} in {seconds:.0f} s, busiest second "
          f"{traffic['busiest_second']}; {kinds}")
    print(f"refused for Telegram's limits (429): {sum(over.values())} {dict(over)} (goal 0)")
    print("CPU seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items()))
    print("where the bot's time went (p50 / p95 / max, n):")
    for key in sorted(bot_stats, key=lambda k: (not k.startswith(("handler", "db")), k)):
        row = bot_stats[key]
        print(f"  {key:<34} {row['p50_ms']:8.0f} {row['p95_ms']:8.0f} {row['max_ms']:8.0f} ms  n={row['n']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--updates", type=int, default=2000, help="in all, spread over the users")
    parser.add_argument("--quick", action="store_true", help="20 users, 200 updates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=12.0,
                        help="updates/s of all users together (the issue's busy hour: 2,000 in 172 s); "
                             "each user waits 0.5 s to 2 x users/rate between a reply and the next update")
    parser.add_argument("--think", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="seconds between a reply and the user's next update instead (--quick: 0.5 3); "
                             "0.5 3 at full size asks for more replies than Telegram's 30 messages/s")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--broker-url", default=None)
    args = parser.parse_args()
    if args.quick:
        args.users, args.updates = 20, 200
        args.think = args.think or (0.5, 3.0)
    # Users who act again 0.5-3 s after each reply send as fast as they are answered: 200 of them
    # would ask ~90 updates/s, three times what Telegram lets a bot answer; the busy hour
    # (2,000 updates in 172 s) is a pace, so at full size the users keep that pace.
    args.think = tuple(args.think or (0.5, 2 * args.users / args.rate - 0.5))

    from core.settings import load_settings
    from storage.migrate import upgrade

    data_dir = Path(tempfile.mkdtemp(prefix="segbot-bench-load-"))
    manager = StandInManager()
    manager.start()
    api = manager.StandIn()  # type: ignore[attr-defined]
    token, base_url, base_file_url = api.urls()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SEGBOT_BROKER_URL")}
    env.update(SEGBOT_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), SEGBOT_MAX_JOBS_PER_USER="10000",
               SEGBOT_DAILY_GPU_SECONDS="1e9", SEGBOT_HEARTBEAT_S="1", SEGBOT_SWEEP_INTERVAL_S="2",
               TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_BASE_URL=base_url,
               TELEGRAM_API_BASE_FILE_URL=base_file_url, SEGBOT_LOG_LEVEL="WARNING")
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["SEGBOT_BROKER_URL"] = args.broker_url
    os.environ.update(env)
    settings = load_settings(data_dir=data_dir)
    upgrade(settings.database_url)
    users = _prepare_users(settings, args.users)
    sample = labelme_bytes(png_bytes(96), size=96, n=4)
    photo = png_bytes(96, seed=3)
    stats_path = data_dir / "bot-stats.json"
    log_path = Path(tempfile.gettempdir()) / "segbot-bench-load-bot.log"
    bot = _start_bot(env, stats_path, log_path)
    workers: list[subprocess.Popen] = []
    tally = Tally()
    cpu: dict[str, float] = {}
    try:
        _wait_ready(api, User(199_999, "Probe", "probe"))
        workers = _start_workers(settings, args.workers, env)
        before = {"bot": _cpu_s(bot.pid), "stand-in": _cpu_s(manager._process.pid),  # noqa: SLF001
                  "users (this process)": sum(os.times()[:2])}
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
        after = {"bot": _cpu_s(bot.pid), "stand-in": _cpu_s(manager._process.pid),  # noqa: SLF001
                 "users (this process)": sum(os.times()[:2])}
        cpu = {name: after[name] - before[name] for name in before}
        counts = _outcome(settings, api, tally, wait_s=600)  # "lost" only once all is drained
        traffic = api.report()
    finally:
        _stop(bot)
        for proc in workers:
            _stop(proc, signal.SIGKILL)
        manager.shutdown()
    bot_stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    shutil.rmtree(data_dir, ignore_errors=True)
    cpu = {**cpu, "all three per second of run": sum(cpu.values()) / max(elapsed, 1e-9)}
    _print_report(args, tally, counts, elapsed, traffic, bot_stats, cpu)
    print(f"(the bot's log: {log_path})")


if __name__ == "__main__":
    main()
