"""predict_image: a detector run over an image of any size, as outline polygons in image pixels.

The image is cut into overlapping tiles (tiling.py); each tile crop is rescaled by the
detector's factor on its own (an 8k image is never upscaled as a whole) and tiles go to the
detector in batches. Detections are reduced to polygons tile by tile, then merged across tile
borders (merge.py), filtered by size and optionally refined by a 2D Gaussian fit (refine.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from annotations.model import Instance
from segmodel.types import TileDetector


@dataclass
class PredictOptions:
    """What to keep and how to slice.

    tile: tile side in the detector's input pixels (after rescale), default detector.tile_size.
    overlap: overlap between tiles in ORIGINAL image pixels, default from the expected object
    size (detector.object_size if the detector has one) else a quarter tile.
    classes: class names to keep (None = all). min_area_px: smallest kept outline, original px^2.
    """

    threshold: float = 0.5
    tile: int | None = None
    overlap: int | None = None
    classes: set[str] | None = None
    min_area_px: float = 4.0
    refine: bool = False
    batch_size: int = 4


@dataclass
class Prediction:
    instances: list[Instance]  # original image pixels
    n_refined: int
    tiles: int
    seconds: float
    stats: dict = field(default_factory=dict)  # candidates, merged_away, too_small, refine_failed


def tile_geometry(image_shape: tuple[int, ...], detector: TileDetector, options: PredictOptions):
    """(tiles, scale): the tile plan in original pixels and the per-tile rescale factor."""
    from inference.tiling import default_overlap, plan_tiles

    scale = float(detector.rescale or 1.0)
    if scale <= 0:
        raise ValueError(f"detector.rescale must be positive, got {scale}")
    model_tile = int(options.tile or detector.tile_size)
    if model_tile < 8:
        raise ValueError(f"tile must be at least 8 px, got {model_tile}")
    tile = max(8, int(model_tile / scale))
    if options.overlap is not None:
        overlap = int(options.overlap)
    else:
        overlap = default_overlap(tile, getattr(detector, "object_size", None))
    height, width = image_shape[:2]
    return plan_tiles(height, width, tile, overlap), scale


def iter_tile_batches(
    image: np.ndarray, tiles: list, scale: float, batch_size: int
) -> Iterator[list[tuple]]:
    """Batches of (tile, pixels, sx, sy), pixels being the rescaled uint8 RGB tile crop."""
    from inference.tiling import read_tile

    batch_size = max(1, int(batch_size))
    for start in range(0, len(tiles), batch_size):
        yield [(t, *read_tile(image, t, scale)) for t in tiles[start : start + batch_size]]


def predict_image(
    image: np.ndarray,
    detector: TileDetector,
    options: PredictOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Find every object in `image` (uint8 RGB/gray, any size); polygons in original pixels."""
    from annotations.geometry import polygon_area
    from inference.merge import CandidateSet

    started = time.perf_counter()
    options = options or PredictOptions()
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W[, C]) image, got shape {image.shape}")
    allowed = _allowed_labels(detector.classes, options.classes)
    tiles, scale = tile_geometry(image.shape, detector, options)

    candidates = CandidateSet(tiles)
    done = 0
    if progress is not None:
        progress(0, len(tiles))
    for batch in iter_tile_batches(image, tiles, scale, options.batch_size):
        results = detector.detect([pixels for _, pixels, _, _ in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"detector returned {len(results)} results for {len(batch)} tiles")
        _collect(candidates, batch, results, options.threshold, allowed)
        done += len(batch)
        del batch, results  # full-tile masks: free them before the next batch is detected
        if progress is not None:
            progress(done, len(tiles))

    n_merged = candidates.finish()
    n_candidates = len(candidates)
    instances = []
    too_small = 0
    for obj in candidates.objects():  # unpacked one at a time: no second copy of every outline
        if polygon_area(obj.polygon) < options.min_area_px:
            too_small += 1
            continue
        instances.append(Instance(detector.classes[obj.label], obj.polygon, obj.score))
    del candidates

    n_refined, refine_failed = 0, 0
    if options.refine and instances:
        from inference.refine import refine_instances

        instances, n_refined = refine_instances(image, instances)
        refine_failed = len(instances) - n_refined
    return Prediction(
        instances=instances,
        n_refined=n_refined,
        tiles=len(tiles),
        seconds=time.perf_counter() - started,
        stats={
            "candidates": n_candidates,
            "merged_away": n_candidates - n_merged,
            "too_small": too_small,
            "refine_failed": refine_failed,
            "scale": scale,
        },
    )


def _collect(candidates, batch, results, threshold: float, allowed) -> None:
    # a function of its own so no loop variable keeps the last tile's masks alive
    for (tile, _, sx, sy), det in zip(batch, results, strict=True):
        candidates.add(tile, det, sx, sy, threshold, allowed)


def _allowed_labels(classes: list[str], wanted: set[str] | None) -> np.ndarray | None:
    if wanted is None:
        return None
    unknown = sorted(set(wanted) - set(classes))
    if unknown:
        raise ValueError(f"unknown class {', '.join(unknown)}; this model knows: {', '.join(classes)}")
    return np.array([i for i, name in enumerate(classes) if name in wanted], dtype=np.int64)
