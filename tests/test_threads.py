"""trainer/threads.py: the training threads from CPU time actually free, on a fake /proc/stat.

Each fake file is written the way the kernel writes it (jiffies: user nice system idle iowait irq
softirq steal), so the tests drive read_stat and the governor as a real machine would."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import threads as th
from trainer.threads import ThreadGovernor, ThreadPlan, read_stat, threads_for

TICKS = 100  # USER_HZ on Linux


class FakeMachine:
    """A 2-core machine whose /proc/stat advances by hand; `own` is this process's CPU seconds."""

    def __init__(self, path: Path, n_cores: int = 2) -> None:
        self.path, self.n = path, n_cores
        self.busy = [1000] * n_cores
        self.idle = [5000] * n_cores
        self.own = 0.0
        self.write()

    def write(self) -> None:
        lines = [f"cpu  {sum(self.busy)} 0 0 {sum(self.idle)} 0 0 0 0 0 0"]
        pairs = enumerate(zip(self.busy, self.idle, strict=True))
        lines += [f"cpu{i} {b} 0 0 {d} 0 0 0 0 0 0" for i, (b, d) in pairs]
        lines += ["intr 12345 0 0", "ctxt 999", "btime 1700000000"]
        self.path.write_text("\n".join(lines) + "\n")

    def run(self, seconds: float, others: float, ours: float = 0.0) -> None:
        """`seconds` pass; other processes keep `others` cores busy, we keep `ours`."""
        jiffies = seconds * TICKS
        busy_total = min(self.n, others + ours) * jiffies
        for i in range(self.n):
            share = busy_total / self.n
            self.busy[i] += int(share)
            self.idle[i] += int(jiffies - share)
        self.own += ours * seconds
        self.write()


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: {0, 1})
    monkeypatch.setattr(th, "_clock_ticks", lambda: TICKS)
    return FakeMachine(tmp_path / "stat")


def _governor(machine: FakeMachine, applied: list[int], **plan) -> ThreadGovernor:
    plan = ThreadPlan(stat_path=machine.path, own_cpu_s=lambda: machine.own, env={}, **plan)
    return ThreadGovernor(plan, applied.append)


def test_a_quiet_two_core_machine_trains_on_both_cores(machine) -> None:
    applied: list[int] = []
    gov = _governor(machine, applied)
    # the window: the job that just finished is gone; only a little background noise
    assert gov.start(sleep=lambda s: machine.run(s, others=0.05)) == 2
    assert applied == [2] and gov.summary()["threads_source"] == "auto"


def test_a_core_busy_with_another_process_is_left_to_it(machine) -> None:
    applied: list[int] = []
    gov = _governor(machine, applied)
    assert gov.start(sleep=lambda s: machine.run(s, others=1.0)) == 1
    both = _governor(machine, [])
    assert both.start(sleep=lambda s: machine.run(s, others=2.0)) == 1  # at least one


def test_governor_lowers_threads_when_others_take_the_cores_and_raises_them_after(machine) -> None:
    applied: list[int] = []
    gov = _governor(machine, applied, recheck_s=5.0)
    assert gov.start(sleep=lambda s: machine.run(s, others=0.0)) == 2
    now = 1000.0
    gov._next_check = now  # the first re-check is due
    # we train on both cores, then another job starts and takes one of them
    machine.run(5, others=1.0, ours=1.0)
    gov.tick(now)
    assert gov.threads == 1
    gov.tick(now + 1)  # not due yet: /proc/stat is not even read
    machine.run(5, others=1.0, ours=1.0)
    gov.tick(now + 5)
    assert gov.threads == 1  # still busy: stays low (our own CPU is not counted as "others")
    machine.run(5, others=0.0, ours=1.0)
    gov.tick(now + 10)
    assert gov.threads == 2
    assert applied == [2, 1, 2]
    assert gov.summary()["threads_used"] == [2, 1, 2]


def test_our_own_busy_threads_do_not_lower_the_count(machine) -> None:
    applied: list[int] = []
    gov = _governor(machine, applied)
    gov.start(sleep=lambda s: machine.run(s, others=0.0))
    for k in range(1, 4):
        machine.run(5, others=0.0, ours=2.0)  # both cores busy, all of it ours
        gov.tick(1e6 + 10 * k)
    assert applied == [2]


def test_omp_num_threads_and_the_setting_win(machine) -> None:
    applied: list[int] = []
    env_plan = ThreadPlan(stat_path=machine.path, env={"OMP_NUM_THREADS": "3"}, setting=1)
    gov = ThreadGovernor(env_plan, applied.append)
    assert gov.start(sleep=lambda s: None) == 3
    assert gov.summary() == {"threads": 3, "threads_source": "OMP_NUM_THREADS", "threads_used": [3]}
    fixed = ThreadGovernor(ThreadPlan(stat_path=machine.path, env={}, setting=1), applied.append)
    assert fixed.start(sleep=lambda s: None) == 1
    machine.run(5, others=0.0)
    fixed.tick(1e9)
    assert applied == [3, 1] and fixed.summary()["threads_source"] == "setting"


def test_setting_from_settings(settings, monkeypatch) -> None:
    from core.settings import load_settings

    assert ThreadPlan.from_settings(settings).setting == 0
    monkeypatch.setenv("SEGBOT_TRAIN_THREADS", "2")
    assert ThreadPlan.from_settings(load_settings()).setting == 2


def test_read_stat_uses_the_cores_we_may_run_on(tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  30 0 0 70 0 0 0 0\ncpu0 25 0 0 25 0 0 0 0\ncpu1 5 0 0 45 0 0 0 0\n")
    assert read_stat(stat, {1}) == (5, 50, 1)
    assert read_stat(stat, None) == (30, 100, 2)
    assert read_stat(tmp_path / "missing") is None


def test_no_proc_stat_falls_back_to_the_load_average(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(th, "usable_cores", lambda: {0, 1})
    monkeypatch.setattr(th.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    gov = ThreadGovernor(ThreadPlan(stat_path=tmp_path / "missing", env={}), lambda n: None)
    assert gov.start(sleep=lambda s: None) == 2


def test_threads_for() -> None:
    assert threads_for(2.0, 2) == 2 and threads_for(1.85, 2) == 2
    assert threads_for(1.5, 2) == 1  # half a core is not enough for a second thread
    assert threads_for(0.0, 2) == 1 and threads_for(15.9, 16) == 16


def test_the_real_proc_stat_gives_a_sane_choice() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat here")
    gov = ThreadGovernor(ThreadPlan(window_s=0.2, env={}), lambda n: None)
    assert 1 <= gov.start() <= gov.n_cores


def test_omp_thread_limit_caps_every_choice(machine) -> None:
    """OpenMP starts no more than OMP_THREAD_LIMIT threads; asking oneDNN for more deadlocks it."""
    applied: list[int] = []
    limited = ThreadPlan(stat_path=machine.path, own_cpu_s=lambda: machine.own,
                         env={"OMP_THREAD_LIMIT": "1"})
    gov = ThreadGovernor(limited, applied.append)
    assert gov.start(sleep=lambda s: machine.run(s, others=0.0)) == 1  # a quiet machine: 2 otherwise
    machine.run(5, others=0.0)
    gov.tick(1e6)
    assert applied == [1]
    for env in ({"OMP_THREAD_LIMIT": "1", "OMP_NUM_THREADS": "2"}, {"OMP_THREAD_LIMIT": "1"}):
        fixed = ThreadGovernor(ThreadPlan(stat_path=machine.path, env=env, setting=2), applied.append)
        assert fixed.start(sleep=lambda s: None) == 1
    roomy = ThreadGovernor(ThreadPlan(stat_path=machine.path, env={"OMP_THREAD_LIMIT": "8"}, setting=2),
                           [].append)
    assert roomy.start(sleep=lambda s: None) == 2


_TRAIN_TWO_THREADS = """
import json, sys, tempfile
from pathlib import Path
from segmodel.options import TrainOptions
from trainer.synthetic import synthetic_scene, with_crops
from trainer.threads import ThreadPlan
from trainer.train import train_model
ann = with_crops(synthetic_scene(3, (256, 256), n_particles=20, n_pits=4), n_crops=1, crop_size=160)
options = TrainOptions(arch="tiny", iterations=4, holdout=False, batch_size=1, crop_size=128)
with tempfile.TemporaryDirectory() as tmp:
    result = train_model([ann], Path(tmp) / "m", options, threads=ThreadPlan(setting=2))
print(json.dumps(result.metrics["timing"]))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_asked_for_two_threads_under_a_thread_limit_of_one_finishes() -> None:
    """The hang seen in a worker's pool process, reproduced in a fresh process: OMP_THREAD_LIMIT=1
    (inherited from an earlier OCR call) and 2 threads asked for; oneDNN's 1x1-convolution backward
    then waited for a second OpenMP thread that never started. A few iterations take seconds."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_THREAD_LIMIT": "1", "PYTHONPATH": str(root)}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", _TRAIN_TWO_THREADS], env=env, cwd=root, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    assert timing["threads"] == 1 and timing["threads_source"] == "setting"
