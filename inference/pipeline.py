"""predict_image: a detector run over an image of any size, as outline polygons in image pixels.

The image is cut into overlapping tiles (tiling.py); each tile crop is rescaled by the
detector's factor on its own (an 8k image is never upscaled as a whole) and tiles go to the
detector in batches. Detections are reduced to polygons tile by tile, then merged across tile
borders (merge.py), filtered by size and optionally refined by a 2D Gaussian fit (refine.py).

Regions to leave out (options.exclude: an info bar, a scale-bar box; imaging.infobar) are handled
here, so every caller gets the same: full-width or full-height bands at an edge are cropped away before
tiling (no detector time, no objects cut by the crop edge reported inside them), and an object whose
centre lies inside any other excluded box is dropped. Outlines come back in the whole image's pixels.

Particles cut by the image border: the model, trained on crops where such cuts continue into more
image, misses most of them (13 of the 24 it missed on one EMPS image). The image is mirrored outward
by about half a particle first, so a cut particle and its reflection look like one whole particle;
outlines are then clipped back to the image, and reflections of particles that do not touch the
border (nearly all outside once clipped) are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from annotations.model import Instance
from segmodel.options import DEFAULT_SCORE_THRESHOLD
from segmodel.types import TileDetector

if TYPE_CHECKING:
    from inference.merge import CandidateSet


@dataclass
class PredictOptions:
    """What to keep and how to slice.

    tile: tile side in the detector's input pixels (after rescale), default detector.tile_size.
    overlap: overlap between tiles in ORIGINAL image pixels, default from the expected object
    size (detector.object_size if the detector has one) else a quarter tile.
    classes: class names to keep (None = all). min_area_px: smallest kept outline, original px^2.
    """

    threshold: float = DEFAULT_SCORE_THRESHOLD
    tile: int | None = None
    overlap: int | None = None
    classes: set[str] | None = None
    min_area_px: float = 4.0
    refine: bool = False
    batch_size: int = 4
    # boxes (x0, y0, x1, y1) or objects with those attributes (imaging.infobar.Region) to leave out
    exclude: list = field(default_factory=list)
    # Mirror this many original px around the image so particles cut by its border are found
    # (None: from the detector's object size; 0: off). See _predict_padded.
    edge_pad: int | None = None
    # Extra enlargement for an image at another magnification than the training image (2.0: its
    # particles look half the labelled size); auto_scale chooses it per image (inference/scale.py).
    scale: float = 1.0
    auto_scale: bool = False
    # Drop predictions that are parts of one particle, and blobs over several (inference/fragments.py):
    # on the figure series (5 EMPS figures, 487 particles) F1 0.629 -> 0.683 at 1x, 0.519 -> 0.756
    # with auto scale (docs/benchmarks.md).
    fragments: bool = True
    # Also keep the detections scored from this floor up to the threshold (None: not kept), merged on
    # their own: where the model was unsure, for "Label where it helps most" (annotations.suggest).
    # The kept outlines are the same with or without them.
    unsure_floor: float | None = None


@dataclass
class Prediction:
    instances: list[Instance]  # original image pixels
    n_refined: int
    tiles: int
    seconds: float
    stats: dict = field(default_factory=dict)  # candidates, merged_away, too_small, refine_failed
    # detections under the threshold (options.unsure_floor) none centred in a kept outline
    unsure: list[Instance] = field(default_factory=list)


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
    started = time.perf_counter()
    options = options or PredictOptions()
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W[, C]) image, got shape {image.shape}")
    if options.exclude:
        return _predict_outside(image, detector, options, progress, started)
    if options.auto_scale or options.scale != 1.0:
        return _predict_scaled(image, detector, options, progress, started)
    pad = edge_pad(image.shape, detector, options)
    if pad:
        return _predict_padded(image, detector, options, progress, started, pad)
    allowed = _allowed_labels(detector.classes, options.classes)
    tiles, scale = tile_geometry(image.shape, detector, options)

    candidates, below = _detect_tiles(image, detector, tiles, scale, options, allowed, progress)
    n_merged = candidates.finish()
    n_candidates = len(candidates)
    instances, too_small = _large_enough(candidates, detector.classes, options.min_area_px)
    del candidates
    fragments = 0
    if options.fragments:
        from inference.fragments import merge_fragments

        instances, fragments = merge_fragments(instances)

    n_refined, refine_failed = 0, 0
    if options.refine and instances:
        from inference.refine import refine_instances

        instances, n_refined = refine_instances(image, instances)
        refine_failed = len(instances) - n_refined
    stats = {"candidates": n_candidates, "merged_away": n_candidates - n_merged, "too_small": too_small,
             "refine_failed": refine_failed, "scale": scale, "fragments_joined": fragments}
    unsure = _unsure(below, detector.classes, options.min_area_px, instances) if below is not None else []
    return Prediction(instances=instances, n_refined=n_refined, tiles=len(tiles),
                      seconds=time.perf_counter() - started, stats=stats, unsure=unsure)


def _detect_tiles(image: np.ndarray, detector: TileDetector, tiles: list, scale: float,
                  options: PredictOptions, allowed: np.ndarray | None,
                  progress: Callable[[int, int], None] | None) -> tuple[CandidateSet, CandidateSet | None]:
    """The detector over every tile, batch by batch, its detections above the threshold collected as
    candidates (not yet merged across tile borders), and those from options.unsure_floor up to it in a
    set of their own (None when not asked); progress as (tiles done, tiles)."""
    from inference.merge import CandidateSet

    candidates = CandidateSet(tiles)
    floor = options.unsure_floor
    below = CandidateSet(tiles) if floor is not None and floor < options.threshold else None
    done = 0
    if progress is not None:
        progress(0, len(tiles))
    for batch in iter_tile_batches(image, tiles, scale, options.batch_size):
        results = detector.detect([pixels for _, pixels, _, _ in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"detector returned {len(results)} results for {len(batch)} tiles")
        _collect(candidates, batch, results, options.threshold, allowed)
        if below is not None:
            _collect(below, batch, results, float(floor), allowed, ceiling=options.threshold)
        done += len(batch)
        del batch, results  # full-tile masks: free them before the next batch is detected
        if progress is not None:
            progress(done, len(tiles))
    return candidates, below


def _unsure(below: CandidateSet, classes: list[str], min_area_px: float,
            kept: list[Instance]) -> list[Instance]:
    """The merged detections under the threshold whose centre no kept outline holds (a kept object's
    weaker duplicate is no doubt about it)."""
    import shapely

    from annotations.geometry import area_centroid_perimeter, to_shapely

    below.finish()
    found, _ = _large_enough(below, classes, min_area_px)
    if not found or not kept:
        return found
    centre = area_centroid_perimeter([i.polygon for i in found])[1]
    tree = shapely.STRtree(shapely.make_valid(to_shapely([i.polygon for i in kept])))
    inside = set(tree.query(shapely.points(centre), predicate="within")[0].tolist())
    return [inst for k, inst in enumerate(found) if k not in inside]


def _large_enough(candidates: CandidateSet, classes: list[str], min_area_px: float
                  ) -> tuple[list[Instance], int]:
    """The merged candidates of at least `min_area_px` as instances, and how many were smaller."""
    from annotations.geometry import polygon_area

    instances = []
    too_small = 0
    for obj in candidates.objects():  # unpacked one at a time: no second copy of every outline
        if polygon_area(obj.polygon) < min_area_px:
            too_small += 1
            continue
        instances.append(Instance(classes[obj.label], obj.polygon, obj.score))
    return instances, too_small


def _as_box(region) -> tuple[int, int, int, int]:
    if hasattr(region, "x0"):
        return int(region.x0), int(region.y0), int(region.x1), int(region.y1)
    x0, y0, x1, y1 = (int(v) for v in region)
    return x0, y0, x1, y1


def _crop_for(shape: tuple[int, ...], boxes: list[tuple[int, int, int, int]]):
    """(the crop without the edge bands, the boxes that are not such bands)."""
    h, w = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = 0, 0, w, h
    inner = []
    for bx0, by0, bx1, by1 in boxes:
        if bx0 <= 0 and bx1 >= w and by0 <= 0:
            y0 = max(y0, by1)
        elif bx0 <= 0 and bx1 >= w and by1 >= h:
            y1 = min(y1, by0)
        elif by0 <= 0 and by1 >= h and bx0 <= 0:
            x0 = max(x0, bx1)
        elif by0 <= 0 and by1 >= h and bx1 >= w:
            x1 = min(x1, bx0)
        else:
            inner.append((bx0, by0, bx1, by1))
    return (x0, y0, x1, y1), inner


def _predict_outside(image, detector, options: PredictOptions, progress, started: float) -> Prediction:
    """predict_image over the image less its excluded regions (see the module docstring)."""
    from dataclasses import replace

    from annotations.geometry import area_centroid_perimeter

    boxes = [_as_box(r) for r in options.exclude]
    (x0, y0, x1, y1), inner = _crop_for(image.shape, boxes)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError("the excluded regions cover the whole image")
    pred = predict_image(image[y0:y1, x0:x1], detector, replace(options, exclude=[]), progress)

    def shifted(instances: list[Instance]) -> list[Instance]:
        """In the whole image's pixels, less those centred in an inner excluded box."""
        offset = np.array([x0, y0], dtype=np.float64)
        moved = [Instance(i.label, i.polygon + offset, i.score) for i in instances]
        centres = area_centroid_perimeter([i.polygon for i in moved])[1] if moved else np.zeros((0, 2))
        return [inst for inst, (cx, cy) in zip(moved, centres, strict=True)
                if not any(bx0 <= cx < bx1 and by0 <= cy < by1 for bx0, by0, bx1, by1 in inner)]

    kept = shifted(pred.instances)
    stats = dict(pred.stats, excluded=len(pred.instances) - len(kept), crop=(x0, y0, x1, y1))
    return Prediction(instances=kept, n_refined=pred.n_refined, tiles=pred.tiles,
                      seconds=time.perf_counter() - started, stats=stats, unsure=shifted(pred.unsure))


def _predict_scaled(image, detector, options: PredictOptions, progress, started: float) -> Prediction:
    """predict_image with the detector enlarging tiles by options.scale, or by the chosen factor."""
    from dataclasses import replace

    from inference.scale import ScaledDetector, choose_scale

    probes: dict[float, float] = {}
    factor = float(options.scale)
    if options.auto_scale:
        choice = choose_scale(image, detector)
        factor, probes = choice.factor, choice.probes
    inner = replace(options, scale=1.0, auto_scale=False)
    pred = predict_image(image, ScaledDetector(detector, factor) if factor != 1.0 else detector, inner,
                         progress)
    pred.stats.update(scale_factor=factor, scale_probes={f"{f:.3g}": round(v, 1) for f, v in probes.items()})
    pred.seconds = time.perf_counter() - started
    return pred


def _collect(candidates, batch, results, threshold: float, allowed, ceiling: float | None = None) -> None:
    # a function of its own so no loop variable keeps the last tile's masks alive
    for (tile, _, sx, sy), det in zip(batch, results, strict=True):
        candidates.add(tile, det, sx, sy, threshold, allowed, ceiling)


def _allowed_labels(classes: list[str], wanted: set[str] | None) -> np.ndarray | None:
    if wanted is None:
        return None
    unknown = sorted(set(wanted) - set(classes))
    if unknown:
        raise ValueError(f"unknown class {', '.join(unknown)}; this model knows: {', '.join(classes)}")
    return np.array([i for i, name in enumerate(classes) if name in wanted], dtype=np.int64)


EDGE_PAD_OF_SIZE = 0.6  # mirrored margin per typical large object diameter
EDGE_PAD_DEFAULT = 16  # px, when the detector knows no object size
EDGE_PAD_MAX = 96
EDGE_KEEP_FRACTION = 0.3  # a mirrored cut particle is ~half inside; a mere reflection ~none


def edge_pad(shape: tuple[int, ...], detector: TileDetector, options: PredictOptions) -> int:
    """The mirrored margin in original px for this image (0: none)."""
    if options.edge_pad is not None:
        pad = int(options.edge_pad)
    else:
        size = getattr(detector, "object_size", None)
        ok = isinstance(size, (int, float)) and size == size and size > 0
        pad = round(EDGE_PAD_OF_SIZE * size) if ok else EDGE_PAD_DEFAULT
        pad = min(max(pad, 4), EDGE_PAD_MAX)
    return max(0, min(pad, int(shape[0]) - 1, int(shape[1]) - 1))  # reflection needs pad < side


def _predict_padded(image, detector, options: PredictOptions, progress, started: float,
                    pad: int) -> Prediction:
    """predict_image on the image mirrored by `pad` px, outlines clipped back (module docstring)."""
    from dataclasses import replace

    import cv2

    height, width = image.shape[:2]
    padded = cv2.copyMakeBorder(np.ascontiguousarray(image), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    pred = predict_image(padded, detector, replace(options, edge_pad=0), progress)

    def clipped(instances: list[Instance]) -> list[Instance]:
        """Back in the image's pixels, clipped to it, less the reflections."""
        out = []
        for inst in instances:
            polygon = _clip_to_image(inst.polygon - pad, width, height, options.min_area_px)
            if polygon is not None:
                out.append(Instance(inst.label, polygon, inst.score))
        return out

    kept = clipped(pred.instances)
    stats = dict(pred.stats, reflections=len(pred.instances) - len(kept), edge_pad=pad)
    return Prediction(instances=kept, n_refined=pred.n_refined, tiles=pred.tiles,
                      seconds=time.perf_counter() - started, stats=stats, unsure=clipped(pred.unsure))


def _clip_to_image(polygon: np.ndarray, width: int, height: int, min_area: float) -> np.ndarray | None:
    """The part of `polygon` on the image (pixel centres at integer coordinates, so the image spans
    -0.5 .. side - 0.5); None when that part is a reflection's sliver."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    if lo[0] >= -0.5 and lo[1] >= -0.5 and hi[0] <= width - 0.5 and hi[1] <= height - 0.5:
        return polygon  # wholly inside: nearly every object
    from shapely.geometry import Polygon, box

    whole = Polygon(polygon).buffer(0)
    part = whole.intersection(box(-0.5, -0.5, width - 0.5, height - 0.5))
    if part.is_empty or part.area < min_area or part.area < EDGE_KEEP_FRACTION * whole.area:
        return None
    if part.geom_type != "Polygon":
        part = max((g for g in getattr(part, "geoms", []) if g.geom_type == "Polygon"), key=lambda g: g.area,
                   default=None)
        if part is None:
            return None
    return np.asarray(part.exterior.coords, dtype=np.float64)[:-1]
