"""CPU threads for training on a shared machine: every core that is idle, decided from CPU time
actually free, and re-checked while training runs.

Why not the 1-minute load average: it still counts the job that has just finished (and our own
process), so a worker on a quiet 2-core machine used one core; two threads were 1.22x faster.
Why a governor: two threads chosen in a quiet moment ran 1.7-2.0 s/iteration once other processes
took the cores, against 0.47 s on one thread (OpenMP threads that wait for a busy core spin).

Never more than OMP_THREAD_LIMIT (more deadlocks oneDNN, see ThreadGovernor._set).
The choice, in this order: OMP_NUM_THREADS (the operator's word for every OpenMP program) wins;
then the worker's setting SEGBOT_TRAIN_THREADS (passed in as ThreadPlan.setting, 0 = automatic);
else the idle cores over a short window of /proc/stat, at least 1, lowered (and raised again, up to
the cores this process may use) every `recheck_s` when other processes take (or free) the cores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

# A thread needs this much of a free core; less and it spins on a busy one (see the module doc).
MIN_FREE_PER_THREAD = 0.8


@dataclass(frozen=True)
class ThreadPlan:
    """How the trainer chooses its CPU threads; entry points build it from the settings."""

    setting: int = 0  # SEGBOT_TRAIN_THREADS: N fixed threads, 0 = automatic
    stat_path: Path = Path("/proc/stat")
    window_s: float = 0.5  # the first look at the idle cores
    recheck_s: float = 5.0  # the governor's period while training; 0 = never re-check
    own_cpu_s: Callable[[], float] = field(default=time.process_time, compare=False)
    env: dict[str, str] | None = field(default=None, compare=False)  # None = os.environ

    @classmethod
    def from_settings(cls, settings: Settings) -> ThreadPlan:
        """The plan of the settings' SEGBOT_TRAIN_THREADS."""
        return cls(setting=int(settings.train_threads or 0))


@dataclass
class CpuSample:
    busy: int  # jiffies, summed over the cores we may use
    total: int
    n_cores: int
    own_s: float  # this process's CPU seconds (all threads)


def usable_cores() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_stat(path: Path, cores: set[int] | None = None) -> tuple[int, int, int] | None:
    """(busy, total, n_cores) jiffies from a /proc/stat file: the `cpuN` lines of `cores` (the
    ones this process may run on), else the all-cores `cpu` line. None when it cannot be read."""
    try:
        lines = Path(path).read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    overall, per_core = None, {}
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].startswith("cpu"):
            continue
        try:
            values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
        except ValueError:
            continue
        if len(values) < 4:
            continue
        values += [0] * (8 - len(values))
        idle = values[3] + values[4]
        entry = (sum(values) - idle, sum(values))
        if parts[0] == "cpu":
            overall = entry
        elif parts[0][3:].isdigit():
            per_core[int(parts[0][3:])] = entry
    chosen = [per_core[c] for c in sorted(cores or ()) if c in per_core]
    if chosen:
        return sum(b for b, _ in chosen), sum(t for _, t in chosen), len(chosen)
    if overall is not None:
        return overall[0], overall[1], max(1, len(per_core) or (os.cpu_count() or 1))
    return None


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def others_busy(before: CpuSample, after: CpuSample, ticks: int | None = None) -> float | None:
    """Cores kept busy by other processes between two samples (ours subtracted); None: no time passed."""
    total = after.total - before.total
    if total <= 0 or after.n_cores <= 0:
        return None
    elapsed_s = total / after.n_cores / (ticks or _clock_ticks())
    busy_cores = (after.busy - before.busy) / total * after.n_cores
    own_cores = max(0.0, after.own_s - before.own_s) / elapsed_s if elapsed_s > 0 else 0.0
    return max(0.0, busy_cores - own_cores)


def threads_for(free_cores: float, n_cores: int) -> int:
    """Threads for this much free CPU: a whole thread per MIN_FREE_PER_THREAD of a core, at least 1."""
    return int(max(1, min(n_cores, int(free_cores + (1 - MIN_FREE_PER_THREAD) + 1e-9))))


def _env_threads(env: dict[str, str], name: str = "OMP_NUM_THREADS") -> int | None:
    raw = (env.get(name) or "").split(",")[0].strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


class ThreadGovernor:
    """The trainer's threads: chosen once at start, then (automatic mode) re-checked by tick()."""

    def __init__(self, plan: ThreadPlan, apply: Callable[[int], None]) -> None:
        self.plan = plan
        self.apply = apply
        self.source = "auto"
        self.threads: int | None = None
        self.limit: int | None = None  # OMP_THREAD_LIMIT, read by start()
        self.history: list[int] = []  # every thread count used, in order
        self._cores = usable_cores()
        self._last: CpuSample | None = None
        self._next_check = 0.0

    def _sample(self) -> CpuSample | None:
        read = read_stat(self.plan.stat_path, self._cores)
        if read is None:
            return None
        return CpuSample(read[0], read[1], read[2], self.plan.own_cpu_s())

    @property
    def n_cores(self) -> int:
        return len(self._cores) if self._cores else (os.cpu_count() or 1)

    def _set(self, threads: int) -> None:
        # More threads than OMP_THREAD_LIMIT deadlock: oneDNN plans its work for the count asked
        # for, OpenMP starts only the limit, and the planned threads wait for absent ones forever.
        if self.limit is not None:
            threads = min(threads, self.limit)
        if threads != self.threads:
            self.apply(threads)
            self.threads = threads
            self.history.append(threads)

    def start(self, sleep: Callable[[float], None] = time.sleep) -> int:
        """Choose and apply the first thread count."""
        env = os.environ if self.plan.env is None else self.plan.env
        self.limit = _env_threads(env, "OMP_THREAD_LIMIT")
        from_env = _env_threads(env)
        if from_env is not None:  # set too: torch read it at import, maybe before it was changed
            self.source = "OMP_NUM_THREADS"
            self._set(from_env)
            return self.threads
        if self.plan.setting > 0:
            self.source = "setting"
            self._set(self.plan.setting)
            return self.threads
        first, second = self._sample(), None
        if first is not None:
            sleep(self.plan.window_s)
            second = self._sample()
        if first is None or second is None or (busy := others_busy(first, second)) is None:
            self._set(self._from_loadavg())
            return self.threads
        self._set(threads_for(second.n_cores - busy, second.n_cores))
        self._last = second
        self._next_check = time.monotonic() + self.plan.recheck_s
        log.info("training on %s of %s cores (others busy: %.2f cores)", self.threads, second.n_cores, busy)
        return self.threads

    def _from_loadavg(self) -> int:
        """No /proc/stat (not Linux): the 1-minute load, which counts our own process too."""
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return self.n_cores
        return threads_for(self.n_cores - busy, self.n_cores)

    def tick(self, now: float | None = None) -> None:
        """Called every iteration; every recheck_s looks at the cores again (cheap otherwise)."""
        if self.source != "auto" or self._last is None or self.plan.recheck_s <= 0:
            return
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return
        self._next_check = now + self.plan.recheck_s
        sample = self._sample()
        if sample is None:
            return
        busy = others_busy(self._last, sample)
        self._last = sample
        if busy is None:
            return
        wanted = threads_for(sample.n_cores - busy, sample.n_cores)
        if wanted != self.threads:
            log.info("training threads %s -> %s (others busy: %.2f of %s cores)", self.threads, wanted, busy,
                     sample.n_cores)
            self._set(wanted)

    def summary(self) -> dict[str, Any]:
        """For the job's timing record: what was used, and why."""
        return {"threads": self.threads, "threads_source": self.source,
                "threads_used": list(self.history) or None}
