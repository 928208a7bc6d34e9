"""How long a training will take: measured seconds per iteration, never a guess.

Every train job records its timing when it ends (jobs/train.py puts it in `job.result["timing"]`:
seconds per iteration, iterations, setup seconds, device kind, preset, batch, crop size, rescale,
threads). The estimate for the next job is the median of the last RECENT finished jobs of the same
worker kind (cpu | cuda) and preset (and batch and crop size); before there are any, the speed a
worker measured on its machine at start-up (jobqueue/probe.py, the `speed_probes` table); before that,
the table below, measured by the benchmark. The same figure gives the bot's "about N min (600 iterations)",
the wait behind the jobs ahead in the queue, and the remaining time of a running job without ETA.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobqueue.queues import queue_for
from jobqueue.store import fair_order
from jobs.params import ParamsError, TrainParams
from segmodel.options import TrainOptions, auto_rescale, resolve_iterations
from storage.models import Job, JobKind, JobState, SpeedProbe, Upload

RECENT = 5  # finished jobs the running figure is the median of
LOOK_BACK = 50  # finished train jobs (newest first) read to find them

# Seconds per iteration and setup seconds (reading labels, building the model, saving the bundle:
# what the iterations do not explain) at the bot's defaults: batch 2, 256 px crops, init 'auto'
# (random without a base model). MEASURED by bench/bench_train_speed.py; update the figures (and the
# line above each) when the benchmark is re-run. A (kind, preset) that is not here has no fallback:
# the bot says it has not measured that yet, and the first job of it measures it.
# (device kind, preset): (seconds per iteration, setup seconds)
BENCHMARK_RATES: dict[tuple[str, str], tuple[float, float]] = {
    # bench_train_speed.py, 2026-12-01: the project's shared 2-core AMD EPYC, torch 2.13 CPU, 1 thread,
    # fast ops on, load average 2.5-2.9 from other jobs: 2.553 s/it (a quiet machine is faster; the first
    # job's measured figure replaces this one)
    ("cpu", "tiny"): (2.55, 8.0),
}
REFERENCE_PIXELS = 2 * 256 * 256  # batch x crop side^2 the table was measured at


def device_kind(device: str | None) -> str:
    """The worker kind a job runs on: `cpu`, or `cuda` for any GPU (cuda, cuda:N)."""
    return "cpu" if (device or "cpu") == "cpu" else "cuda"


@dataclass(frozen=True)
class Rate:
    sec_per_iter: float
    setup_s: float
    source: str  # "jobs" (the running figure) | "probe" (the worker's start-up measure) | "benchmark"
    n_jobs: int = 0  # how many finished jobs the running figure comes from


@dataclass(frozen=True)
class Estimate:
    iterations: int  # the count the trainer will actually run
    seconds: float | None  # None: nothing measured for this kind of worker and preset yet
    rate: Rate | None

    @property
    def minutes(self) -> int | None:
        return None if self.seconds is None else max(1, math.ceil(self.seconds / 60 - 0.25))


def _key(options: TrainOptions, device: str | None) -> tuple[str, str, int, int]:
    return device_kind(device if device is not None else options.device), options.arch, \
        int(options.batch_size), int(options.crop_size)


def _timing(job: Job) -> dict[str, Any] | None:
    timing = (job.result or {}).get("timing") if isinstance(job.result, dict) else None
    if not isinstance(timing, dict):
        return None
    per = timing.get("sec_per_iter")
    return timing if isinstance(per, int | float) and per > 0 else None


def _matches(timing: dict[str, Any], key: tuple[str, str, int, int]) -> bool:
    kind, arch, batch, crop = key
    return (timing.get("device_kind") == kind and timing.get("arch") == arch
            and int(timing.get("batch_size") or 0) == batch and int(timing.get("crop_size") or 0) == crop)


class Rates:
    """Rates per (kind, preset, batch, crop), read once per instance: one bot reply or one queue
    walk asks for the same few keys many times."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._recent: list[dict[str, Any]] | None = None
        self._probes: list[dict[str, Any]] | None = None
        self._cache: dict[tuple[str, str, int, int], Rate | None] = {}

    def _timings(self) -> list[dict[str, Any]]:
        if self._recent is None:
            jobs = self.session.scalars(
                select(Job).where(Job.kind == JobKind.TRAIN.value, Job.state == JobState.SUCCEEDED.value)
                .order_by(Job.finished_at.desc(), Job.id.desc()).limit(LOOK_BACK))
            self._recent = [timing for job in jobs if (timing := _timing(job)) is not None]
        return self._recent

    def _probe_timings(self) -> list[dict[str, Any]]:
        if self._probes is None:
            rows = self.session.scalars(select(SpeedProbe).order_by(SpeedProbe.measured_at.desc(),
                                                                    SpeedProbe.id.desc()).limit(LOOK_BACK))
            self._probes = [t for row in rows if isinstance(t := row.timing, dict)
                            and isinstance(t.get("sec_per_iter"), int | float) and t["sec_per_iter"] > 0]
        return self._probes

    def rate(self, key: tuple[str, str, int, int]) -> Rate | None:
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return self._cache[key]

    def _lookup(self, key: tuple[str, str, int, int]) -> Rate | None:
        same = [t for t in self._timings() if _matches(t, key)][:RECENT]
        if same:
            # A worker's first job also imported torch and mmdet: its setup says little of the next
            # job's, as long as a warm job's is known.
            warm = [t for t in same if t.get("warm", True)] or same
            return Rate(statistics.median(float(t["sec_per_iter"]) for t in same),
                        statistics.median(float(t.get("setup_s") or 0.0) for t in warm), "jobs", len(same))
        return probe_rate(self._probe_timings(), key) or benchmark_rate(key)


def _pixels(batch: int, crop: int) -> int:
    return batch * crop * crop


def probe_rate(probes: list[dict[str, Any]], key: tuple[str, str, int, int]) -> Rate | None:
    """The median of the newest probes of this worker kind and preset (newest first in `probes`),
    scaled by the pixels per iteration when they were measured at another batch or crop size."""
    kind, arch, batch, crop = key
    same = [t for t in probes if t.get("device_kind") == kind and t.get("arch") == arch][:RECENT]
    if not same:
        return None
    per = [float(t["sec_per_iter"]) * _pixels(batch, crop)
           / _pixels(int(t.get("batch_size") or batch), int(t.get("crop_size") or crop)) for t in same]
    return Rate(statistics.median(per), statistics.median(float(t.get("setup_s") or 0.0) for t in same),
                "probe", len(same))


def benchmark_rate(key: tuple[str, str, int, int]) -> Rate | None:
    """The benchmark's figure, scaled by the pixels per iteration when batch or crop differ."""
    kind, arch, batch, crop = key
    measured = BENCHMARK_RATES.get((kind, arch))
    if measured is None:
        return None
    scale = _pixels(batch, crop) / REFERENCE_PIXELS
    return Rate(measured[0] * scale, measured[1], "benchmark")


def iterations_per_epoch(summaries: list[dict[str, Any]], options: TrainOptions) -> int:
    """trainer.dataset.iterations_per_epoch from the upload summaries (crops or whole images),
    at the rescale the trainer would choose; for options given in epochs."""
    area, diameters = 0.0, []
    for summary in summaries:
        crops = summary.get("crops") or []
        if crops and not summary.get("whole_image"):
            area += sum(float(c.get("width", 0)) * float(c.get("height", 0)) for c in crops)
        else:
            area += float(summary.get("width", 0)) * float(summary.get("height", 0))
        diameters += [float(c["mean_d_px"]) for c in crops if isinstance(c.get("mean_d_px"), int | float)]
    rescale = float(options.rescale) if options.rescale is not None else \
        auto_rescale(statistics.median(diameters) if diameters else float("nan"))
    pixels = area * rescale * rescale
    return max(1, math.ceil(pixels / (options.crop_size ** 2) / max(1, options.batch_size)))


def planned_iterations(options: TrainOptions, summaries: list[dict[str, Any]] | None = None) -> int:
    """The iteration count the trainer will run (segmodel.options.resolve_iterations)."""
    if options.iterations is None and options.epochs is not None:
        return resolve_iterations(options, iterations_per_epoch(summaries or [], options))
    return resolve_iterations(options, 1)


def _options(raw: Mapping[str, Any] | None) -> TrainOptions:
    try:
        return TrainOptions.from_dict({k: v for k, v in (raw or {}).items() if v is not None})
    except (ValueError, TypeError):
        return TrainOptions()


def _summaries(session: Session, upload_ids: list[int]) -> list[dict[str, Any]]:
    if not upload_ids:
        return []
    rows = session.scalars(select(Upload).where(Upload.id.in_(upload_ids)))
    return [dict(u.summary or {}) for u in rows if u.kind in ("labelme", "correction")]


def estimate_training(session: Session, options: Mapping[str, Any] | None, device: str | None = None,
                      upload_ids: list[int] | None = None, rates: Rates | None = None) -> Estimate:
    """The first estimate of a training with these (user) options on a worker of `device`."""
    opts = _options(options)
    needs_summaries = opts.iterations is None and opts.epochs is not None
    iterations = planned_iterations(opts, _summaries(session, upload_ids or []) if needs_summaries else None)
    rate = (rates or Rates(session)).rate(_key(opts, device))
    if rate is None:
        return Estimate(iterations, None, None)
    return Estimate(iterations, rate.setup_s + iterations * rate.sec_per_iter, rate)


def estimate_job(session: Session, job: Job, rates: Rates | None = None) -> Estimate | None:
    """A train job's estimate from its params; None for other kinds (and a row that cannot be read:
    that job fails when it starts)."""
    if job.kind != JobKind.TRAIN:
        return None
    try:
        params = TrainParams.from_job(job)
    except ParamsError:
        return None
    return estimate_training(session, params.options, None, list(params.upload_ids), rates)


def remaining_s(session: Session, job: Job, rates: Rates | None = None) -> float | None:
    """Seconds until the job ends: a running job's own ETA, else its estimate (minus what is done)."""
    if job.state == JobState.RUNNING.value and job.eta_s:
        return float(job.eta_s)
    estimate = estimate_job(session, job, rates)
    if estimate is None or estimate.seconds is None:
        return None
    done = float(job.progress or 0.0) if job.state == JobState.RUNNING.value else 0.0
    return estimate.seconds * (1.0 - min(1.0, done))


@dataclass(frozen=True)
class Wait:
    ahead: int  # jobs that run before this one: running in its queue + queued before it
    seconds: float | None  # their remaining time summed (one worker per queue); None: not measured


def wait_ahead(session: Session, job: Job, rates: Rates | None = None) -> Wait | None:
    """What stands before a queued job; None when it is not waiting."""
    if job.state != JobState.QUEUED.value:
        return None
    queue = queue_for(job.kind)
    order = fair_order(session, queue)
    ids = [j.id for j in order]
    if job.id not in ids:
        return None
    rates = rates or Rates(session)
    running = [j for j in session.scalars(select(Job).where(Job.state == JobState.RUNNING.value))
               if queue_for(j.kind) == queue]
    before = running + order[:ids.index(job.id)]
    times = [remaining_s(session, j, rates) for j in before]
    known = [t for t in times if t is not None]
    seconds = float(sum(known)) if len(known) == len(times) else None
    return Wait(len(before), seconds)
