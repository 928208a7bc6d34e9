"""Bot responsiveness: 50 simulated users send commands, texts and labelled files to the real bot
(bot.app.build_application, as `segbot run` builds it) over HTTP through the Bot API stand-in,
optionally while a real training job runs in a worker process on the embedded queue.
Prints p50/p95 time from an update being offered to the bot's first reply to that chat.

    .venv/bin/python bench/bench_bot.py [--users 50] [--rounds 6] [--no-train]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.botapi.fixtures import labelme_bytes, png_bytes  # noqa: E402
from tests.botapi.server import BotApiStandIn, User  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


ACK = ("Checking", "Проверяю")


def _user_script(
    api: BotApiStandIn,
    user: User,
    rounds: int,
    sample: bytes,
    out: list[tuple[str, float, float]],
    rng: random.Random,
) -> None:
    """One user: think 1-5 s, act, wait for the answer. Records (action, first reply, full answer)."""
    actions = ["/start", "/help", "file", "/status", "/models", "hello", "/stats", "file"]
    for step in range(rounds):
        action = actions[step % len(actions)]
        time.sleep(rng.uniform(1.0, 5.0))
        mark = api.mark()
        sent = time.monotonic()
        if action == "file":
            api.send_document(user, f"sample_{step}.json", sample)
        else:
            api.send_text(user, action)
        first = api.wait_reply(user.id, mark, timeout=60)
        answer = api.wait_reply(user.id, mark, timeout=60, skip=ACK) if action == "file" else first
        out.append((action, first.at - sent, answer.at - sent))


def _start_training(settings, api: BotApiStandIn):  # noqa: ANN001, ANN202 - bench glue
    """A real training job (tiny preset) on the embedded queue with a worker process, or None."""
    try:
        from jobqueue.worker import start_worker_process
    except ImportError:
        return None
    from bot.example import example_labelme
    from tests.botapi.fixtures import buttons

    trainer = User(999_999, "Trainer", "trainer")
    data, _ = example_labelme()
    mark = api.mark()
    api.send_document(trainer, "example.json", data)
    summary = api.wait_reply(trainer.id, mark, "crop", timeout=60)
    assert "train:go" in buttons(summary)
    worker = start_worker_process(settings, start_new_session=True)
    mark = api.mark()
    api.press(trainer, summary.result, "train:go")
    api.wait_reply(trainer.id, mark, "queued", timeout=60)
    return worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-train", action="store_true", help="do not run a training job meanwhile")
    args = parser.parse_args()

    from bot.app import BotThread
    from core.settings import load_settings
    from storage.migrate import upgrade

    data_dir = Path(tempfile.mkdtemp(prefix="segbot-bench-bot-"))
    os.environ["SEGBOT_DATA_DIR"] = str(data_dir)
    api = BotApiStandIn().start()
    settings = load_settings(
        telegram_bot_token=api.token,
        telegram_api_base_url=api.base_url,
        telegram_api_base_file_url=api.base_file_url,
        data_dir=data_dir,
    )
    upgrade(settings.database_url)
    sample = labelme_bytes(png_bytes(96), size=96, n=4)
    bot = BotThread(settings, poll_timeout=10.0).start()
    worker = None
    try:
        if not args.no_train:
            worker = _start_training(settings, api)
            time.sleep(3.0)  # let the worker pick it up and start loading
        latencies: list[tuple[str, float, float]] = []
        threads = []
        started = time.monotonic()
        for index in range(args.users):
            user = User(100_000 + index, f"U{index}", f"user{index}", random.choice(["en", "ru"]))
            thread = threading.Thread(
                target=_user_script,
                daemon=True,
                args=(api, user, args.rounds, sample, latencies, random.Random(index)),
            )
            threads.append(thread)
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        training = "no"
        if worker is not None:
            training = "yes, running" if worker.poll() is None else "worker exited"
    finally:
        bot.stop()
        if worker is not None:  # kill the worker's whole group: a warm shutdown would finish the training
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
        api.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    values = [first for _, first, _ in latencies]
    files = [full for kind, _, full in latencies if kind == "file"]
    texts = [first for kind, first, _ in latencies if kind != "file"]
    p95 = _percentile(values, 0.95)
    print(
        f"users {args.users}, updates {len(values)} in {elapsed:.1f} s ({len(values) / elapsed:.1f}/s), "
        f"training job meanwhile: {training}, cores {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}"
    )
    print(
        f"update -> first reply: p50 {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms"
    )
    print(
        f"  commands/text: p50 {statistics.median(texts) * 1000:.0f} ms, "
        f"p95 {_percentile(texts, 0.95) * 1000:.0f} ms"
    )
    print(
        f"  labelled file -> summary: p50 {statistics.median(files) * 1000:.0f} ms, "
        f"p95 {_percentile(files, 0.95) * 1000:.0f} ms"
    )
    print(f"goal p95 < 300 ms: {'met' if p95 < 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
