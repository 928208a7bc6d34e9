"""The bot's time estimate through the real PTB Application against the Bot API stand-in: measured
speed of the last finished job of this kind (jobqueue/estimates.py; on a new install, the worker's
start-up probe), the iteration count the trainer runs, and the wait behind the job running ahead,
in the options, the queued and the progress message."""

from __future__ import annotations

from storage.db import session_scope
from storage.models import Job, JobState, SpeedProbe, User, utcnow
from tests.botapi.fixtures import labelme_bytes, png_bytes
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import running_bot
from tests.test_bot_conversation import _doc, _press

ALICE = TgUser(1301, "Alice", "alice", "en")
BORIS = TgUser(1302, "Boris", "boris", "ru")


def _history(database_url: str) -> None:
    """Another user's finished tiny CPU training (1.5 s/it, 30 s setup) and one running (10 min left)."""
    timing = {"sec_per_iter": 1.5, "setup_s": 30.0, "device_kind": "cpu", "arch": "tiny", "batch_size": 2,
              "crop_size": 256, "iterations": 600, "threads": 2, "warm": True}
    with session_scope(database_url) as session:
        other = User(telegram_id=999, username="other")
        session.add(other)
        session.flush()
        session.add(Job(user_id=other.id, kind="train", state=JobState.SUCCEEDED.value,
                        result={"timing": timing}, params={"options": {"arch": "tiny"}},
                        finished_at=utcnow()))
        session.add(Job(user_id=other.id, kind="train", state=JobState.RUNNING.value, eta_s=600.0,
                        params={"options": {"arch": "tiny", "device": "cpu"}}, started_at=utcnow()))


def test_estimate_with_iterations_and_the_wait_ahead(bs, api) -> None:
    _history(bs.database_url)
    with running_bot(bs):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        options = _press(api, ALICE, summary, "train:opts", "Estimated")
        # 30 s + 600 iterations (tiny's default, segmodel DEFAULT_ITERATIONS) x 1.5 s = 15.5 min
        assert "Estimated time: about 16 min (600 iterations)." in options.text
        fewer = _press(api, ALICE, options, "opt:iters", "50 iterations")
        assert "about 2 min (50 iterations)" in fewer.text  # 30 s + 75 s
        queued = _press(api, ALICE, summary, "train:go", "queued")
        assert "Estimated time: about 2 min (50 iterations)." in queued.text
        assert "Starts in about 10 min, 1 job ahead." in queued.text  # the running job's ETA
        progress = api.wait_reply(ALICE.id, 0, "waiting in the queue", methods=("editMessageText",))
        assert "starts in about 10 min, 1 job ahead" in progress.text

        summary = _doc(api, BORIS, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        options = _press(api, BORIS, summary, "train:opts", "Примерное")
        assert "Примерное время: около 16 мин (600 итераций)." in options.text
        queued = _press(api, BORIS, summary, "train:go", "очереди")
        # behind the running job and Alice's (30 s + 75 s)
        assert "Начнётся примерно через 12 мин, впереди 2 задачи." in queued.text


def test_a_new_install_shows_the_workers_probe_not_the_benchmark_table(bs, api) -> None:
    # What a worker stored at start-up (jobqueue/probe.py): 0.5 s/it, 6 s setup; no job finished yet.
    timing = {"sec_per_iter": 0.5, "setup_s": 6.0, "device_kind": "cpu", "arch": "tiny", "batch_size": 2,
              "crop_size": 256, "iterations": 8, "probe_iterations": 6, "threads": 2}
    with session_scope(bs.database_url) as session:
        session.add(SpeedProbe(host="lab-pc", device_kind="cpu", timing=timing))
    with running_bot(bs):
        summary = _doc(api, ALICE, "sample.json", labelme_bytes(png_bytes()), "sample.json")
        options = _press(api, ALICE, summary, "train:opts", "Estimated")
        # 6 s + 600 x 0.5 s = 5.1 min; the benchmark table (2.55 s/it) would say 26 min
        assert "Estimated time: about 5 min (600 iterations)." in options.text
        queued = _press(api, ALICE, summary, "train:go", "queued")
        assert "Estimated time: about 5 min (600 iterations)." in queued.text
