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
    import torch

    from segmodel import fast_ops
    from segmodel.bundle import (
        CARD,
        WEIGHTS,
        model_card,
        now_iso,
        save_weights,
        versions,
        write_bundle_atomic,
    )
    from segmodel.config import build_model_config, default_lr, describe
    from trainer.dataset import Augmentation, SampleSource, build_regions, iterations_per_epoch, label_stats

    options = options or TrainOptions()
    options.validate()
    started = time.monotonic()
    report = progress or (lambda p: None)
    cancelled = should_cancel or (lambda: False)

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
    train_regions = [r for i, r in enumerate(regions) if i != holdout]
    ipe = iterations_per_epoch(regions, options.crop_size, options.batch_size)
    total = resolve_iterations(options, ipe)
    report(TrainProgress(0, total, 0, None, None, "preparing"))

    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    device = options.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionsError(f"device {device!r} requested but CUDA is not available")
    governor = ThreadGovernor(threads or ThreadPlan(), torch.set_num_threads) if device == "cpu" else None
    if governor is not None:
        governor.start()

    weights = weights or WeightPaths()
    init = resolve_init(options.init, options.arch, weights)
    pretrained = init != "random"
    model_cfg = build_model_config(options.arch, len(classes), stats, rescale, options.crop_size,
                                   pretrained_backbone=init == "coco")
    from segmodel.detector import build_model

    model = build_model(model_cfg)
    init_info = load_init_weights(model, init, options.arch, weights)
    model.to(device).train()
    if fast_ops.enabled():  # same results, faster CPU RoIAlign and mask targets (segmodel/fast_ops.py)
        fast_ops.install(model, device)

    lr = options.lr or default_lr(options.arch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = min(100, max(1, total // 10)) if not pretrained else min(50, max(1, total // 20))

    augment = Augmentation(copy_paste_p=options.copy_paste) if options.augment else False
    source = SampleSource(train_regions, options.crop_size, augment, seed=options.seed)
    holdout_at = int(total * HOLDOUT_AT) if holdout is not None else None
    metrics: dict[str, Any] = {}
    loss_avg: float | None = None
    start, earlier_s, stage = 0, 0.0, "training"
    resumed = try_resume(resume_from, checkpoint.tag if checkpoint else {}, total, model, optimizer)
    if resumed is not None:
        start, loss_avg, metrics, earlier_s = (resumed.iteration, resumed.loss_avg, resumed.metrics,
                                               resumed.elapsed_s)
        if holdout_at is not None and start > holdout_at:  # the held-out crop had joined already
            source = SampleSource(regions, options.crop_size, augment, seed=options.seed + 1)
        restore_rng(resumed.rng, source.rng)
        stage = f"training, resumed at {start:,} / {total:,}"
        report(TrainProgress(start, total, start // ipe, loss_avg, None, stage))
    t0 = time.monotonic()
    for it in range(start, total):
        if cancelled():
            raise TrainingCancelled("training cancelled")
        if holdout_at is not None and it == holdout_at:
            report(TrainProgress(it, total, it // ipe, loss_avg, None, "validating"))
            val = _validate(model, regions[holdout], classes, tile_size)
            metrics["holdout"] = {"region": regions[holdout].name, "n_gt": regions[holdout].n_objects,
                                  "iteration": it, "threshold": VALIDATION_THRESHOLD, **val}
            # The held-out crop joins for the rest: the final model learns from every label.
            source = SampleSource(regions, options.crop_size, augment, seed=options.seed + 1)
        if governor is not None:
            governor.tick()
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(it, total, lr, warmup)
        batch = _to_batch([source.draw() for _ in range(options.batch_size)])
        data = model.data_preprocessor(batch, training=True)
        losses = model(**data, mode="loss")
        loss, _log = model.parse_losses(losses)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at iteration {it + 1} (loss {float(loss)}); "
                                     "try a lower learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        optimizer.step()
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
        done = it + 1
        per_it = (time.monotonic() - t0) / (done - start)
        report(TrainProgress(done, total, done // ipe, loss_avg, per_it * (total - done), stage))
        if checkpoint is not None and checkpoint.due(done, total):
            save_checkpoint(checkpoint, TrainState(done, total, model.state_dict(), optimizer.state_dict(),
                                                   loss_avg, metrics, earlier_s + time.monotonic() - started,
                                                   capture_rng(source.rng)))
    if cancelled():
        raise TrainingCancelled("training cancelled")
    loop_s = time.monotonic() - t0

    metrics["final_loss"] = loss_avg
    metrics["iterations_per_epoch"] = ipe
    report(TrainProgress(total, total, total // ipe, loss_avg, 0.0, "saving"))
    seconds = earlier_s + time.monotonic() - started
    metrics.update(trained_on=trained_on(regions, classes, len(sources)), train_seconds=round(seconds, 1),
                   **device_info(device))
    # Measured speed of this run (jobqueue/estimates.py learns the bot's estimates from it); the
    # setup (reading, building, saving) is what the iterations do not explain.
    metrics["timing"] = {"sec_per_iter": loop_s / (total - start) if total > start else None,
                         "iterations_run": total - start, "loop_s": round(loop_s, 2),
                         "setup_s": round(time.monotonic() - started - loop_s, 2), "rescale": rescale,
                         **(governor.summary() if governor is not None else {})}
    meta = {
        "format": 1,
        "arch": options.arch,
        "description": describe(model_cfg),
        "config": model_cfg,
        "classes": classes,
        "rescale": rescale,
        "tile_size": tile_size,
        "options": options.to_dict(),
        "init": init_info,
        "label_stats": stats.to_dict(),
        "metrics": metrics,
        "iterations": total,
        "train_seconds": round(seconds, 1),
        "versions": versions(),
        "created": now_iso(),
        "sources": [ann.name for ann in sources],
    }

    def fill(tmp: Path) -> None:
        from segmodel.bundle import write_meta

        save_weights(tmp / WEIGHTS, model.state_dict())
        write_meta(tmp, meta)
        (tmp / CARD).write_text(model_card(meta), encoding="utf-8")

    bundle_dir = write_bundle_atomic(Path(out_dir), fill)
    report(TrainProgress(total, total, total // ipe, loss_avg, 0.0, "done"))
    return TrainResult(bundle_dir=bundle_dir, classes=classes, metrics=metrics, iterations=total,
                       seconds=time.monotonic() - started, rescale=rescale, label_stats=stats.to_dict(),
                       init=init_info, resumed_at=start or None)
