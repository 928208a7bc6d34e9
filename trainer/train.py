"""Fine-tuning Cascade Mask R-CNN on a user's labelled crops: a small explicit training loop.

Why not mmengine's Runner: we need a progress callback and cancellation every iteration, and
no work_dirs or pickled checkpoints (torch >= 2.6 refuses mmengine's own checkpoint files).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotations.model import AnnotatedImage, AnnotationError
from segmodel.options import (
    DEFAULT_SCORE_THRESHOLD,
    HOLDOUT_MIN_OBJECTS,
    LabelStats,
    OptionsError,
    TrainOptions,
    auto_rescale,
    resolve_iterations,
)
from trainer.checkpoint import (
    CheckpointPlan,
    TrainState,
    capture_rng,
    restore_rng,
    save_checkpoint,
    try_resume,
)
from trainer.init_weights import WeightPaths, load_init_weights, resolve_init
from trainer.threads import ThreadGovernor, ThreadPlan

HOLDOUT_MIN_REGION = 5  # objects the held-out crop must hold
HOLDOUT_MIN_REST = 12  # objects left to train on meanwhile
HOLDOUT_AT = 0.8  # fraction of training done without the held-out crop; it joins afterwards
VALIDATION_THRESHOLD = DEFAULT_SCORE_THRESHOLD  # the card's figures: what a user gets by default


class TrainingCancelled(Exception):
    """should_cancel() became true; nothing was written."""


class NotEnoughLabels(AnnotationError):
    code = "not_enough_labels"


@dataclass
class TrainProgress:
    iteration: int
    max_iterations: int
    epoch: int
    loss: float | None
    eta_s: float | None
    stage: str  # preparing | training | validating | saving | done

    @property
    def fraction(self) -> float:
        return self.iteration / self.max_iterations if self.max_iterations else 0.0


@dataclass
class TrainResult:
    bundle_dir: Path
    classes: list[str]
    metrics: dict[str, Any]
    iterations: int
    seconds: float
    rescale: float = 1.0
    label_stats: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)  # what the weights started from
    resumed_at: int | None = None  # the checkpoint's iteration when this run resumed one


def _classes(sources: Sequence[AnnotatedImage]) -> list[str]:
    return sorted({inst.label for ann in sources for inst in ann.instances})


def _to_batch(samples: Sequence[Any]) -> dict[str, Any]:
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    inputs, data_samples = [], []
    for s in samples:
        h, w = s.image.shape[:2]
        inputs.append(torch.from_numpy(s.image).permute(2, 0, 1).contiguous())
        ds = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                         flip=False))
        gt = InstanceData()
        gt.bboxes = torch.from_numpy(s.boxes).float().reshape(-1, 4)
        gt.labels = torch.from_numpy(s.labels).long()
        gt.masks = BitmapMasks(s.masks.astype(np.uint8), h, w)
        ds.gt_instances = gt
        data_samples.append(ds)
    return {"inputs": inputs, "data_samples": data_samples}


def holdout_scores(pred_masks: np.ndarray, gt_masks: np.ndarray) -> dict[str, Any]:
    """The held-out crop scored as `segbot eval` scores it: measures.evaluation's centre rule and
    its maximum matching, so a model card's F1 is the figure the evaluator reports."""
    from measures.evaluation import f1_interval, instances_from_masks, match_centre_rule

    pred, gt = instances_from_masks(pred_masks), instances_from_masks(gt_masks)
    score = match_centre_rule(pred, gt)
    low, high = f1_interval(score.tp, score.fp, score.fn)  # one crop of ~20 objects: say how sure
    return {**score.as_dict(), "f1_low": round(low, 3), "f1_high": round(high, 3), "n_pred": len(pred),
            "n_gt": len(gt)}


def _validate(model: Any, region: Any, classes: list[str], tile_size: int) -> dict[str, Any]:
    from segmodel.detector import MMDetDetector

    detector = MMDetDetector(model, classes, 1.0, tile_size, device=str(next(model.parameters()).device),
                             score_thr=VALIDATION_THRESHOLD)
    det = detector.detect([region.image])[0]
    scores = holdout_scores(det.masks, region.masks)
    model.train()
    return scores


def _pick_holdout(regions: list[Any], options: TrainOptions) -> int | None:
    if not options.holdout or len(regions) < 2:
        return None
    total = sum(r.n_objects for r in regions)
    if total < HOLDOUT_MIN_OBJECTS:
        return None
    # The smallest crop that still has enough objects to measure something.
    candidates = [i for i, r in enumerate(regions)
                  if r.n_objects >= HOLDOUT_MIN_REGION and total - r.n_objects >= HOLDOUT_MIN_REST]
    if not candidates:
        return None
    return min(candidates, key=lambda i: regions[i].n_objects)


def trained_on(regions: Sequence[Any], classes: list[str], n_images: int) -> dict[str, Any]:
    """What the model learned from, as the user can check it: objects per class inside the crops
    (label_stats counts every polygon, also those outside the crops that were never shown)."""
    counts = {c: 0 for c in classes}
    for region in regions:
        for label in region.labels.tolist():
            counts[classes[label]] += 1
    return {"n_objects": sum(counts.values()), "n_crops": len(regions), "n_images": n_images,
            "counts": counts}


def device_info(device: str) -> dict[str, str]:
    """The device string and, for a GPU, its name: the training time means little without it."""
    info = {"device": device}
    if device.startswith("cuda"):
        import torch

        try:
            info["device_name"] = torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError, ValueError):
            pass
    return info


def _lr_at(it: int, total: int, base: float, warmup: int) -> float:
    if it < warmup:
        return base * (0.001 + (1 - 0.001) * it / warmup)
    # Cosine decay to 5% over the rest.
    t = (it - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def train_model(
    sources: list[AnnotatedImage],
    out_dir: Path,
    options: TrainOptions | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    *,
    weights: WeightPaths | None = None,
    checkpoint: CheckpointPlan | None = None,
    resume_from: Path | None = None,
    threads: ThreadPlan | None = None,
) -> TrainResult:
    """Train on the labelled crops of `sources` and write a bundle to `out_dir` (absent or empty).

    `weights`: the operator's base model and COCO checkpoint for init 'auto', 'base' and 'coco'
    (None: neither is configured, so 'auto' starts from random weights). With `checkpoint`, the
    state is saved as planned; `resume_from` names a checkpoint to go on from (used only when it
    fits this run: same tag, iterations and shapes). `threads`: how CPU threads are chosen
    (trainer/threads.py; None = automatic, from the idle cores).
    """
    options = options or TrainOptions()
    options.validate()
    started = time.monotonic()
    report = progress or (lambda p: None)
    cancelled = should_cancel or (lambda: False)

    plan = _plan(sources, options)
    report(TrainProgress(0, plan.total, 0, None, None, "preparing"))
    governor = _seed_and_check_device(options, threads)
    net = _build_net(options, plan, weights or WeightPaths())
    run = _new_run(options, plan, net, report, started, governor)
    _resume(run, checkpoint, resume_from)
    loop_s = _train_loop(run, cancelled, checkpoint)

    report(TrainProgress(plan.total, plan.total, plan.total // plan.ipe, run.loss_avg, 0.0, "saving"))
    seconds = _record_metrics(run, len(sources), loop_s)
    bundle_dir = _write_bundle(Path(out_dir), net.model, _bundle_meta(run, sources, seconds))
    report(TrainProgress(plan.total, plan.total, plan.total // plan.ipe, run.loss_avg, 0.0, "done"))
    return TrainResult(bundle_dir=bundle_dir, classes=plan.classes, metrics=run.metrics,
                       iterations=plan.total, seconds=time.monotonic() - started, rescale=plan.rescale,
                       label_stats=plan.stats.to_dict(), init=net.init, resumed_at=run.start or None)


@dataclass
class _Plan:
    """What a run learns from and for how long, fixed before any weight exists."""

    classes: list[str]
    stats: LabelStats
    rescale: float
    tile_size: int
    regions: list[Any]  # trainer.dataset.Region: the labelled crops at the training scale
    holdout: int | None  # the held-out crop's index in `regions`
    ipe: int  # iterations per epoch
    total: int  # iterations

    @property
    def holdout_at(self) -> int | None:
        """The iteration at which the held-out crop is scored and joins the training."""
        return int(self.total * HOLDOUT_AT) if self.holdout is not None else None


def _plan(sources: Sequence[AnnotatedImage], options: TrainOptions) -> _Plan:
    """The classes, the scale, the crops (one held out when there are enough) and the iterations;
    NotEnoughLabels when nothing labelled lies where training looks."""
    from trainer.dataset import build_regions, iterations_per_epoch, label_stats

    classes = _classes(sources)
    stats: LabelStats = label_stats(sources)
    if not classes or stats.n_objects == 0:
        raise NotEnoughLabels("no labelled objects to train on: draw polygons around some objects "
                              "(inside 'crop' rectangles if you use them)")
    rescale = float(options.rescale) if options.rescale is not None else auto_rescale(stats.median_d_px)
    tile_size = options.effective_tile_size
    # Crops without objects stay: the user labelled them as background.
    regions = build_regions(sources, classes, rescale)
    if not regions or sum(r.n_objects for r in regions) == 0:
        raise NotEnoughLabels("the labelled objects lie outside every crop rectangle; "
                              "label objects inside the crops")
    holdout = _pick_holdout(regions, options)
    ipe = iterations_per_epoch(regions, options.crop_size, options.batch_size)
    return _Plan(classes, stats, rescale, tile_size, regions, holdout, ipe, resolve_iterations(options, ipe))


def _seed_and_check_device(options: TrainOptions, threads: ThreadPlan | None) -> ThreadGovernor | None:
    """Seed Python's, numpy's and torch's generators, refuse a CUDA device that is not there and, on
    the CPU, start choosing the thread count (the governor, None on a GPU)."""
    import torch

    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    device = options.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionsError(f"device {device!r} requested but CUDA is not available")
    governor = ThreadGovernor(threads or ThreadPlan(), torch.set_num_threads) if device == "cpu" else None
    if governor is not None:
        governor.start()
    return governor


@dataclass
class _Net:
    """The model being trained, where its weights started, and its optimizer and schedule."""

    model: Any
    config: dict[str, Any]  # the mmdet config it was built from (kept in the bundle)
    init: dict[str, Any]  # what the weights started from
    optimizer: Any
    params: list[Any]  # the trained parameters (gradients clipped together)
    lr: float  # the base learning rate
    warmup: int  # iterations of linear warm-up


def _build_net(options: TrainOptions, plan: _Plan, weights: WeightPaths) -> _Net:
    """The model for `plan`'s classes and label sizes, its first weights ('random', 'base', 'coco'),
    the fast CPU ops, and SGD with a warm-up (shorter from pretrained weights)."""
    import torch

    from segmodel import fast_ops
    from segmodel.config import build_model_config, default_lr

    init = resolve_init(options.init, options.arch, weights, len(plan.classes))
    pretrained = init != "random"
    model_cfg = build_model_config(options.arch, len(plan.classes), plan.stats, plan.rescale,
                                   options.crop_size, pretrained_backbone=init == "coco",
                                   classes=plan.classes)
    from segmodel.detector import build_model

    model = build_model(model_cfg)
    init_info = load_init_weights(model, init, options.arch, weights)
    model.to(options.device).train()
    if fast_ops.enabled():  # same results, faster CPU RoIAlign and mask targets (segmodel/fast_ops.py)
        fast_ops.install(model, options.device)

    lr = options.lr or default_lr(options.arch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    total = plan.total
    warmup = min(100, max(1, total // 10)) if not pretrained else min(50, max(1, total // 20))
    return _Net(model, model_cfg, init_info, optimizer, params, lr, warmup)


@dataclass
class _Run:
    """One training run's parts and where its loop stands (what a checkpoint keeps), handed from step
    to step of train_model."""

    options: TrainOptions
    plan: _Plan
    net: _Net
    report: Callable[[TrainProgress], None]
    started: float  # time.monotonic() when train_model began
    governor: ThreadGovernor | None
    augment: Any  # trainer.dataset.Augmentation, or False
    source: Any  # trainer.dataset.SampleSource: the crops the batches are drawn from now
    start: int = 0  # the first iteration this process runs (a resumed checkpoint's)
    loss_avg: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    earlier_s: float = 0.0  # seconds spent before a resume
    stage: str = "training"


def _new_run(options: TrainOptions, plan: _Plan, net: _Net, report: Callable[[TrainProgress], None],
             started: float, governor: ThreadGovernor | None) -> _Run:
    """A run at iteration 0, drawing from every crop but the held-out one."""
    from trainer.dataset import Augmentation, SampleSource

    augment = (Augmentation(copy_paste_p=options.copy_paste, pile_p=options.copy_paste_pile)
               if options.augment else False)
    train_regions = [r for i, r in enumerate(plan.regions) if i != plan.holdout]
    source = SampleSource(train_regions, options.crop_size, augment, seed=options.seed)
    return _Run(options, plan, net, report, started, governor, augment, source)


def _every_crop(run: _Run) -> Any:
    """The sample source once the held-out crop has joined: every crop, its own random stream."""
    from trainer.dataset import SampleSource

    return SampleSource(run.plan.regions, run.options.crop_size, run.augment, seed=run.options.seed + 1)


def _resume(run: _Run, checkpoint: CheckpointPlan | None, resume_from: Path | None) -> None:
    """Go on from `resume_from` when it fits this run (try_resume decides): the weights, optimizer,
    loss, metrics, time spent and every random stream as the checkpoint left them."""
    total = run.plan.total
    resumed = try_resume(resume_from, checkpoint.tag if checkpoint else {}, total, run.net.model,
                         run.net.optimizer)
    if resumed is None:
        return
    run.start, run.loss_avg, run.metrics, run.earlier_s = (resumed.iteration, resumed.loss_avg,
                                                           resumed.metrics, resumed.elapsed_s)
    holdout_at = run.plan.holdout_at
    if holdout_at is not None and run.start > holdout_at:  # the held-out crop had joined already
        run.source = _every_crop(run)
    restore_rng(resumed.rng, run.source.rng)
    run.stage = f"training, resumed at {run.start:,} / {total:,}"
    run.report(TrainProgress(run.start, total, run.start // run.plan.ipe, run.loss_avg, None, run.stage))


def _train_loop(run: _Run, cancelled: Callable[[], bool], checkpoint: CheckpointPlan | None) -> float:
    """The iterations from run.start on, cancellable before each one and after the last, with the
    held-out crop scored on its way, progress after each step and checkpoints when due; the seconds
    the loop took."""
    plan = run.plan
    t0 = time.monotonic()
    for it in range(run.start, plan.total):
        if cancelled():
            raise TrainingCancelled("training cancelled")
        if plan.holdout_at is not None and it == plan.holdout_at:
            _score_holdout(run, it)
        if run.governor is not None:
            run.governor.tick()
        value = _train_step(run, it)
        run.loss_avg = value if run.loss_avg is None else 0.9 * run.loss_avg + 0.1 * value
        done = it + 1
        per_it = (time.monotonic() - t0) / (done - run.start)
        eta_s = per_it * (plan.total - done)
        run.report(TrainProgress(done, plan.total, done // plan.ipe, run.loss_avg, eta_s, run.stage))
        if checkpoint is not None and checkpoint.due(done, plan.total):
            _save_checkpoint(run, checkpoint, done)
    if cancelled():
        raise TrainingCancelled("training cancelled")
    return time.monotonic() - t0


def _score_holdout(run: _Run, it: int) -> None:
    """Score the held-out crop as the model is at iteration `it`, then let it join for the rest: the
    final model learns from every label."""
    plan = run.plan
    region = plan.regions[plan.holdout]  # type: ignore[index]
    run.report(TrainProgress(it, plan.total, it // plan.ipe, run.loss_avg, None, "validating"))
    val = _validate(run.net.model, region, plan.classes, plan.tile_size)
    run.metrics["holdout"] = {"region": region.name, "n_gt": region.n_objects, "iteration": it,
                              "threshold": VALIDATION_THRESHOLD, **val}
    run.source = _every_crop(run)


def _train_step(run: _Run, it: int) -> float:
    """One SGD step on a fresh batch at iteration `it`'s learning rate; its loss. FloatingPointError
    when the loss is no longer finite."""
    import torch

    net = run.net
    for group in net.optimizer.param_groups:
        group["lr"] = _lr_at(it, run.plan.total, net.lr, net.warmup)
    batch = _to_batch([run.source.draw() for _ in range(run.options.batch_size)])
    data = net.model.data_preprocessor(batch, training=True)
    losses = net.model(**data, mode="loss")
    loss, _log = net.model.parse_losses(losses)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training diverged at iteration {it + 1} (loss {float(loss)}); "
                                 "try a lower learning rate")
    net.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.params, max_norm=10.0)
    net.optimizer.step()
    return float(loss.detach())


def _save_checkpoint(run: _Run, checkpoint: CheckpointPlan, done: int) -> None:
    net = run.net
    save_checkpoint(checkpoint, TrainState(done, run.plan.total, net.model.state_dict(),
                                           net.optimizer.state_dict(), run.loss_avg, run.metrics,
                                           run.earlier_s + time.monotonic() - run.started,
                                           capture_rng(run.source.rng)))


def _record_metrics(run: _Run, n_images: int, loop_s: float) -> float:
    """The final loss, what the model learned from, the device and the measured speed, into
    run.metrics; the run's seconds (a resumed run's earlier ones included)."""
    plan, metrics = run.plan, run.metrics
    metrics["final_loss"] = run.loss_avg
    metrics["iterations_per_epoch"] = plan.ipe
    seconds = run.earlier_s + time.monotonic() - run.started
    metrics.update(trained_on=trained_on(plan.regions, plan.classes, n_images),
                   train_seconds=round(seconds, 1), **device_info(run.options.device))
    # where the weights started (the chat's "started from the base model" line); a fine-tuned
    # version's path stays out of what users see
    start = run.net.init["init"]  # load_init_weights' record: 'random', 'base', 'coco' or a path
    metrics["start"] = {"from": start if start in ("random", "base", "coco") else "bundle"}
    # Measured speed of this run (jobqueue/estimates.py learns the bot's estimates from it); the
    # setup (reading, building, saving) is what the iterations do not explain.
    ran = plan.total - run.start
    metrics["timing"] = {"sec_per_iter": loop_s / ran if plan.total > run.start else None,
                         "iterations_run": ran, "loop_s": round(loop_s, 2),
                         "setup_s": round(time.monotonic() - run.started - loop_s, 2),
                         "rescale": plan.rescale,
                         **(run.governor.summary() if run.governor is not None else {})}
    return seconds


def _bundle_meta(run: _Run, sources: Sequence[AnnotatedImage], seconds: float) -> dict[str, Any]:
    """bundle.json: how the model was built and trained, on what, and how it scored."""
    from segmodel.bundle import now_iso, versions
    from segmodel.config import describe

    options, plan = run.options, run.plan
    return {
        "format": 1,
        "arch": options.arch,
        "description": describe(run.net.config),
        "config": run.net.config,
        "classes": plan.classes,
        "rescale": plan.rescale,
        "tile_size": plan.tile_size,
        "options": options.to_dict(),
        "init": run.net.init,
        "label_stats": plan.stats.to_dict(),
        "metrics": run.metrics,
        "iterations": plan.total,
        "train_seconds": round(seconds, 1),
        "versions": versions(),
        "created": now_iso(),
        "sources": [ann.name for ann in sources],
    }


def _write_bundle(out_dir: Path, model: Any, meta: dict[str, Any]) -> Path:
    """The weights, bundle.json and the model card, written to `out_dir` all at once."""
    from segmodel.bundle import CARD, WEIGHTS, model_card, save_weights, write_bundle_atomic, write_meta

    def fill(tmp: Path) -> None:
        save_weights(tmp / WEIGHTS, model.state_dict())
        write_meta(tmp, meta)
        (tmp / CARD).write_text(model_card(meta), encoding="utf-8")

    return write_bundle_atomic(out_dir, fill)
