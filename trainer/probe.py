"""How fast this machine trains: a few timed iterations on a drawn scene, for the time estimates
(jobqueue/probe.py stores the figure; jobqueue/estimates.py uses it until real jobs have finished).

The first iterations are slower (memory allocation, oneDNN picking its kernels): they are run but
not timed. The setup figure is what `train_model` spends outside its loop (building the model,
writing the bundle), the same thing a job's `setup_s` mostly is."""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmodel.options import TrainOptions
from trainer.threads import ThreadPlan

if TYPE_CHECKING:
    from annotations.model import AnnotatedImage

WARM_UP = 2  # iterations run but not timed
TIMED = 6  # iterations timed after them


def probe_scene() -> AnnotatedImage:
    """A labelled region as crowded as a user's micrograph: the cost of an iteration grows with the
    objects in its crops (a real EMPS image's crops, about 46 particles per 300 px, train 1.5x slower
    per iteration than a sparse drawn scene's); particles about 36 px across, so no rescale."""
    from trainer.synthetic import synthetic_scene, with_crops

    scene = synthetic_scene(7, (640, 640), n_particles=150, n_pits=0, radius=(12.0, 24.0), pairs=0.5)
    return with_crops(scene, n_crops=1, crop_size=320)


def measure_speed(options: TrainOptions, threads: ThreadPlan | None = None, warm_up: int = WARM_UP,
                  timed: int = TIMED) -> dict[str, Any]:
    """Seconds per iteration of `options` (preset, batch, crop size, device) on this machine, in the
    shape of a train job's timing record (jobs/train.py timing_record) plus `probe_iterations`."""
    from trainer.train import TrainProgress, train_model

    scene = probe_scene()
    total = warm_up + timed
    run = replace(options, iterations=total, epochs=None, holdout=False, init="random")
    stamps: dict[int, float] = {}

    def progress(p: TrainProgress) -> None:
        if p.stage.startswith("training") and p.iteration not in stamps:
            stamps[p.iteration] = time.monotonic()

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segbot-probe-") as scratch:
        result = train_model([scene], Path(scratch) / "bundle", run, progress=progress, threads=threads)
    body_s = time.monotonic() - began
    if warm_up not in stamps or total not in stamps:
        raise RuntimeError(f"the probe saw iterations {sorted(stamps)}, not {warm_up} and {total}")
    per_it = (stamps[total] - stamps[warm_up]) / timed
    timing = dict(result.metrics.get("timing") or {})
    loop_s = float(timing.get("loop_s") or 0.0)
    timing.update(sec_per_iter=round(per_it, 4), device_kind="cpu" if run.device == "cpu" else "cuda",
                  arch=run.arch, batch_size=run.batch_size, crop_size=run.crop_size, iterations=total,
                  probe_iterations=timed, seconds=round(body_s, 2),
                  setup_s=round(max(0.0, body_s - loop_s), 2))
    return timing
