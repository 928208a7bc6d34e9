"""The mmdet model behind the TileDetector protocol, and loading it safely from a bundle.

Bundles are loaded only from inside the trusted roots (segbot's file store, the operator's
configured base model); weights are read with torch's weights-only loader, never unpickled.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segmodel.types import Detections


class UntrustedModelError(Exception):
    """A model path outside the trusted roots; str() is the message."""


def build_model(model_cfg: dict[str, Any]) -> Any:
    """An mmdet detector from a plain config dict (random weights)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger

    register_all_modules(init_default_scope=True)
    model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
    # init_weights logs one INFO block per tensor through mmengine's logger; keep it quiet.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def is_trusted(path: Path, trusted_roots: Iterable[Path]) -> bool:
    real = Path(path).resolve()
    for root in trusted_roots:
        root_real = Path(root).resolve()
        if real == root_real or real.is_relative_to(root_real):
            return True
    return False


def _device(device: str) -> str:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; set SEGBOT_DEVICE=cpu")
    return device


class MMDetDetector:
    """Runs tiles through an mmdet model in batches; implements segmodel.types.TileDetector.

    `score_thr` is the floor below which detections are dropped inside the model, before masks
    are pasted at full tile size (2,000 masks of a 512 px tile would be 0.5 GB); set it to the
    user's threshold to save time and memory, lower it only when scores below 0.25 matter.
    """

    def __init__(self, model: Any, classes: Sequence[str], rescale: float, tile_size: int,
                 device: str = "cpu", half: bool = False, batch_size: int = 4,
                 score_thr: float = 0.25) -> None:
        self.model = model.to(_device(device)).eval()
        self.classes = list(classes)
        self.rescale = float(rescale)
        self.tile_size = int(tile_size)
        self.device = device
        self.half = bool(half) and device.startswith("cuda")
        self.batch_size = max(1, int(batch_size))
        self.score_thr = float(score_thr)
        self.meta: dict[str, Any] = {}
        self.object_size: float | None = None  # typical large object, original px (tile overlap)

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(tiles), self.batch_size):
            out.extend(self._detect_batch(tiles[start:start + self.batch_size]))
        return out

    def _detect_batch(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        import contextlib

        import torch
        from mmdet.structures import DetDataSample

        self.model.test_cfg.rcnn.score_thr = self.score_thr
        inputs, samples = [], []
        for tile in tiles:
            tile = np.asarray(tile)
            if tile.ndim == 2:
                tile = np.repeat(tile[:, :, None], 3, axis=2)
            h, w = tile.shape[:2]
            pixels = np.require(tile[:, :, :3], requirements=["C", "W"])  # torch wants writable memory
            inputs.append(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
            samples.append(DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                                       scale_factor=(1.0, 1.0))))
        autocast = (torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext())
        with torch.no_grad(), autocast, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # mmdet's mask head: new_tensor(tensor)
            data = self.model.data_preprocessor({"inputs": inputs, "data_samples": samples}, training=False)
            results = self.model(**data, mode="predict")
        dets = []
        for tile, res in zip(tiles, results, strict=True):
            h, w = np.asarray(tile).shape[:2]
            pred = res.pred_instances
            if len(pred) == 0:
                dets.append(Detections.empty(h, w))
                continue
            masks = pred.masks
            masks = masks.to_ndarray() if hasattr(masks, "to_ndarray") else masks.cpu().numpy()
            dets.append(Detections(
                boxes=pred.bboxes.float().cpu().numpy(), scores=pred.scores.float().cpu().numpy(),
                labels=pred.labels.cpu().numpy(), masks=masks[:, :h, :w].astype(bool),
            ))
        return dets


def load_detector(bundle_dir: Path, device: str = "cpu", *, trusted_roots: Sequence[Path],
                  half: bool = False, batch_size: int = 4, score_thr: float = 0.25) -> MMDetDetector:
    """Load a bundle written by trainer.train; refuse one outside `trusted_roots`.

    The caller names the roots (the worker: its file store's models/; the CLI: the folder it was
    given), so loading never depends on settings read here.
    Raises UntrustedModelError, or segmodel.bundle.BundleError for a missing/broken bundle.
    """
    from segmodel.bundle import WEIGHTS, BundleError, load_state_dict, read_meta

    bundle_dir = Path(bundle_dir)
    if not is_trusted(bundle_dir, trusted_roots):
        raise UntrustedModelError(
            f"refusing to load a model from {bundle_dir}: it is outside segbot's model store "
            "and the configured model paths")
    meta = read_meta(bundle_dir)
    state = load_state_dict(bundle_dir / WEIGHTS)
    model = build_model(meta["config"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BundleError(f"weights in {bundle_dir} do not fit its config "
                          f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    detector = MMDetDetector(model, meta["classes"], meta["rescale"], meta["tile_size"], device=device,
                             half=half, batch_size=batch_size, score_thr=score_thr)
    detector.meta = meta
    stats = meta.get("label_stats") or {}
    size = stats.get("p90_d_px")
    detector.object_size = float(size) if isinstance(size, (int, float)) and size == size else None
    return detector
