"""Where labelling helps the model most: 2-3 crop rectangles, spread over the image, each where the
model's outlines are of the usual size and stand apart yet it is not sure of them.

After a recognition the model's doubt is in its own output: a score near 0.5 (it could not decide),
and an outline far from the typical size (two particles merged into one, or one split in two). Aiming
at the most doubt alone lost to random crops in bench_scenarios' correction round (docs/benchmarks.md,
issue 28): one large window took all of it, on the densest pile of overlapping particles, and the
fine-tune followed labels that contradict the model most. With few labels typical examples help more
than the most uncertain ones (Hacohen, Dekel and Weinshall, ICML 2022), so an object's doubt counts
as far as it is typical: of the usual size, off the image's edge, not crowded by other outlines;
atypical objects in a window count against it (they cost labels and teach fragments). Square windows
of a few particle diameters are placed greedily where that sum is largest, apart from each other, each
grown to hold whole the outlines whose centres it holds. Label mode opens with them as crops, the
model's outlines inside as proposals.

The model's outlines at her threshold show only what it found; its misses, where recall is lost, leave
no outline. Its detections under the threshold do (`unsure`: scored between the detector's floor and
her threshold, none centred in a kept outline, inference.pipeline's Prediction.unsure): each counts as
an object of its score's doubt where it is of the usual size and off the edge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from annotations.geometry import area_centroid_perimeter, bboxes, to_shapely
from annotations.model import Instance

WINDOW_DS = 4.0  # a window's side in median diameters
MIN_SIDE, MAX_SIDE_FRACTION = 64.0, 1 / 3  # px; of the image's shorter side (room for 3 apart)
ODD_SIZE = 0.5  # doubt added to an outline over 2x or under 0.4x the median area
TYPICAL_FLOOR = 0.2  # a sure but typical object's weight: coverage of the usual case counts too
ATYPICAL_COST = 0.2  # what an atypical object in a window takes off its sum
PILED = 3.0  # an outline a third under others is not typical at all
GAP = 0.5  # x the side: the least distance between two suggested windows
MAX_GRID = 20_000  # grid windows at most (a large image's grid is coarser than a quarter side)
CHUNK = 4_000_000  # window x object cells evaluated at once
MAX_UNSURE = 5_000  # detections under the threshold stored per result


def doubt(instances: Sequence[Instance]) -> np.ndarray:
    """Per object, 0 (sure) .. 1.5: 1 - |2 score - 1| (no score: 0), plus ODD_SIZE for an odd size."""
    if not instances:
        return np.zeros(0)
    area, _, _ = area_centroid_perimeter([i.polygon for i in instances])
    return _score_doubt(instances) + ODD_SIZE * _odd(area)


def typicality(instances: Sequence[Instance], width: int, height: int) -> np.ndarray:
    """Per object, 0 .. 1: 1 for an outline of the usual size (not odd), off the image's edge, that no
    other outline overlaps; less by PILED times the share of its area under others (a pile of
    crossing particles, which the labels split into partial shapes)."""
    import shapely

    if not instances:
        return np.zeros(0)
    polygons = [i.polygon for i in instances]
    area, _, _ = area_centroid_perimeter(polygons)
    shapes = shapely.make_valid(to_shapely(polygons))
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    under = np.zeros(len(instances))
    for k in np.unique(left[left != right]):
        others = shapely.union_all(shapes[right[(left == k) & (right != k)]])
        under[k] = shapely.intersection(shapes[k], others).area / max(float(shapely.area(shapes[k])), 1e-9)
    usual = ~_odd(area, _usual_area(area)) & ~_on_edge(polygons, width, height)
    return np.clip(1.0 - PILED * under, 0.0, 1.0) * usual


def suggest_crops(instances: Sequence[Instance], width: int, height: int, n: int = 3,
                  unsure: Sequence[Instance] = ()) -> list[list[float]]:
    """Up to `n` [x0, y0, x1, y1] squares apart from each other, best first: the summed doubt of the
    typical objects they centre, less the atypical ones (none where the model is sure of everything);
    `unsure`: the model's detections under the threshold (module docstring)."""
    if not instances and not unsure:
        return []
    side = window_side(instances or unsure, width, height)
    typical = typicality(instances, width, height)
    weight = typical * (TYPICAL_FLOOR + _score_doubt(instances)) - ATYPICAL_COST * (1.0 - typical)
    useful = ((typical > 0) & (_score_doubt(instances) > 0)).astype(float)
    if unsure:
        below = _score_doubt(unsure) * _typical_unsure(instances, unsure, width, height)
        weight, useful = np.concatenate([weight, below]), np.concatenate([useful, (below > 0).astype(float)])
    everything = [*instances, *unsure]
    _, centre, _ = area_centroid_perimeter([i.polygon for i in everything])
    boxes = bboxes([i.polygon for i in everything])
    windows = _windows(centre, side, width, height)
    total, free = _window_sums(centre, windows, weight, useful)
    chosen: list[list[float]] = []
    for _ in range(n):
        if not free.any():
            break
        best = windows[int(np.argmax(np.where(free, total, -np.inf)))].tolist()
        chosen.append([round(v, 1) for v in _whole(best, boxes, centre, width, height)])
        free &= ~_overlap(windows, np.array(chosen[-1]), GAP * side)
    return chosen


def _typical_unsure(instances: Sequence[Instance], unsure: Sequence[Instance], width: int,
                    height: int) -> np.ndarray:
    """Per detection under the threshold, 1 where it is of the usual size (the kept outlines', or its
    own kind's without them) and off the image's edge, else 0."""
    area, _, _ = area_centroid_perimeter([i.polygon for i in unsure])
    kept = area_centroid_perimeter([i.polygon for i in instances])[0] if instances else area
    usual = ~_odd(area, _usual_area(kept)) & ~_on_edge([i.polygon for i in unsure], width, height)
    return usual.astype(float)


def _on_edge(polygons: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Whether each outline touches the image's edge (cut by it: not a typical example)."""
    box = bboxes(polygons)
    return (box[:, 0] <= 1) | (box[:, 1] <= 1) | (box[:, 2] >= width - 1) | (box[:, 3] >= height - 1)


def unsure_json(unsure: Sequence[Instance]) -> bytes:
    """The detections under the threshold as stored beside a result (its "unsure" file), the most
    doubtful MAX_UNSURE of them."""
    order = np.argsort(-_score_doubt(unsure), kind="stable")[:MAX_UNSURE] if unsure else []
    shapes = [{"label": unsure[k].label, "score": round(float(unsure[k].score or 0.0), 4),
               "points": np.round(unsure[k].polygon, 1).tolist()} for k in order]
    return json.dumps({"unsure": shapes}).encode()


def read_unsure(data: bytes | None) -> list[Instance]:
    """unsure_json's detections back; [] for none or a file that is not one (a result from before)."""
    try:
        shapes = json.loads(data or b"{}").get("unsure", [])
        found = [Instance(str(s["label"]), np.asarray(s["points"], float).reshape(-1, 2), float(s["score"]))
                 for s in shapes]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    return [i for i in found if len(i.polygon) >= 3 and np.isfinite(i.polygon).all()]


def _window_sums(centre: np.ndarray, windows: np.ndarray, weight: np.ndarray,
                 useful: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the summed weight of the objects it centres and whether it holds a useful one; in
    chunks, so a window x object matrix never exceeds CHUNK cells (a large image's thousands of
    objects and windows took 1.8 GB at once)."""
    total, free = np.empty(len(windows)), np.empty(len(windows), bool)
    step = max(1, CHUNK // max(1, len(centre)))
    for start in range(0, len(windows), step):
        held = _inside(centre, windows[start:start + step]).astype(float)  # window x object
        total[start:start + step] = held @ weight
        free[start:start + step] = held @ useful > 0  # a window holds a useful object, or it is no use
    return total, free


def _windows(centre: np.ndarray, side: float, width: int, height: int) -> np.ndarray:
    """Candidate [x0, y0, x1, y1] squares of `side` inside the image: one centred on each object and a
    grid a quarter side apart (a window between objects may hold more of them), coarser on an image
    that would need more than MAX_GRID grid windows."""
    room = max(0.0, width - side) * max(0.0, height - side)
    step = max(side / 4, 1.0, float(np.sqrt(room / MAX_GRID)))
    xs = np.arange(0.0, max(0.0, width - side) + step, step)
    ys = np.arange(0.0, max(0.0, height - side) + step, step)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    corner = np.concatenate([centre - side / 2, grid])
    corner = np.clip(corner, 0.0, [max(0.0, width - side), max(0.0, height - side)])
    return np.column_stack([corner, np.minimum(corner + side, [width, height])])


def window_side(instances: Sequence[Instance], width: int, height: int) -> float:
    """A suggested window's side before it grows: WINDOW_DS median diameters, within the limits."""
    area, _, _ = area_centroid_perimeter([i.polygon for i in instances])
    return float(np.clip(WINDOW_DS * _diameter(area), MIN_SIDE, MAX_SIDE_FRACTION * min(width, height)))


def grown(box: list[float], instances: Sequence[Instance], width: int, height: int) -> list[float]:
    """`box` grown as a suggestion is (bench_scenarios grows its random crops the same way)."""
    _, centre, _ = area_centroid_perimeter([i.polygon for i in instances])
    return _whole(box, bboxes([i.polygon for i in instances]), centre, width, height)


def _score_doubt(instances: Sequence[Instance]) -> np.ndarray:
    """1 - |2 score - 1| per object: 1 at 0.5, 0 at 0 or 1 or without a score."""
    scores = np.array([np.nan if i.score is None else float(i.score) for i in instances])
    return np.where(np.isnan(scores), 0.0, 1.0 - np.abs(2.0 * np.nan_to_num(scores) - 1.0))


def _odd(area: np.ndarray, usual: float | None = None) -> np.ndarray:
    """Outlines over 2x or under 0.4x the usual (default: median) area: merged or split particles, or
    not particles."""
    usual = float(np.median(area)) if usual is None else usual
    return (area > 2.0 * usual) | (area < 0.4 * usual)


def _usual_area(area: np.ndarray) -> float:
    """The area-weighted median: the size of the outlines that cover half of the outlined area. A young
    model's many fragments (a figure's spheres, cut in halves and slivers) do not make it small."""
    order = np.sort(area)
    return float(order[np.searchsorted(np.cumsum(order), order.sum() / 2)])


def _diameter(area: np.ndarray) -> float:
    return float(2.0 * np.sqrt(np.median(area) / np.pi))


def _inside(centre: np.ndarray, boxes: np.ndarray | list[float]) -> np.ndarray:
    """Whether each box [x0, y0, x1, y1] holds each centre: (centres,) for one box, (boxes, centres)."""
    box = np.asarray(boxes, dtype=float)[..., None]
    x, y = centre[:, 0], centre[:, 1]
    return (x >= box[..., 0, :]) & (x < box[..., 2, :]) & (y >= box[..., 1, :]) & (y < box[..., 3, :])


def _whole(box: list[float], boxes: np.ndarray, centre: np.ndarray, width: int, height: int) -> list[float]:
    """The box grown to hold whole every outline whose centre it holds: a crop must not cut one."""
    inside = _inside(centre, box)
    if not inside.any():
        return box
    held = boxes[inside]
    return [
        max(0.0, min(box[0], float(held[:, 0].min()) - 1)),
        max(0.0, min(box[1], float(held[:, 1].min()) - 1)),
        min(float(width), max(box[2], float(held[:, 2].max()) + 1)),
        min(float(height), max(box[3], float(held[:, 3].max()) + 1)),
    ]


def _overlap(boxes: np.ndarray, box: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """Whether each of `boxes` overlaps `box` or comes closer to it than `gap`."""
    return ((boxes[:, 0] < box[2] + gap) & (box[0] < boxes[:, 2] + gap)
            & (boxes[:, 1] < box[3] + gap) & (box[1] < boxes[:, 3] + gap))
