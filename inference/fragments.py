"""Predictions that are parts of one particle, joined into one.

Mask R-CNN sometimes returns a particle as two or three pieces: a small detection lying mostly inside
a larger one (its box differs enough to survive box NMS), or two halves side by side. Two rules, per
class, on the outlines of one image:

- a part inside another: an outline covered for at least `nested` of its area by another one is
  dropped (the larger outline stays, with the higher of the two scores);
- two or more outlines inside one that together cover `blob_cover` of it: the large one is a blob over
  several particles and goes instead;
- halves (off unless `halves`): two outlines that touch or overlap (within `gap` px) become their union
  when the union is about as convex as a particle (area / convex hull area >= `solidity`) and no larger
  than a particle (<= `max_size` x the image's median predicted area) while one piece is small
  (<= `small` x that median). Measured, it joined small touching real particles too: off.

Pure geometry on `Instance` outlines (shapely), run after the tile merge; `PredictOptions.fragments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotations.geometry import to_shapely
from annotations.model import Instance


@dataclass(frozen=True)
class FragmentRules:
    nested: float = 0.6
    # Halves: off by default. On the figure series they added nothing to the nested rule (F1 0.683 ->
    # 0.684) and joined 38 of 1,237 real ground-truth particles (small touching ones) into one.
    halves: bool = False
    gap: float = 1.0
    solidity: float = 0.9
    max_size: float = 1.3
    small: float = 0.75
    # an outline holding two or more others that cover this share of it is a blob over several particles
    blob_cover: float = 0.5


def merge_fragments(instances: list[Instance], rules: FragmentRules | None = None
                    ) -> tuple[list[Instance], int]:
    """(the instances with fragments joined, how many outlines were merged away)."""
    rules = rules or FragmentRules()
    if len(instances) < 2:
        return list(instances), 0
    out: list[Instance] = []
    merged = 0
    labels = [i.label for i in instances]
    for label in dict.fromkeys(labels):
        group = [i for i in instances if i.label == label]
        kept, n = _merge_class(group, rules)
        out.extend(kept)
        merged += n
    return out, merged


def _merge_class(group: list[Instance], rules: FragmentRules) -> tuple[list[Instance], int]:
    import shapely

    geoms = shapely.make_valid(to_shapely([i.polygon for i in group]))
    areas = shapely.area(geoms)
    alive = areas > 0
    scores = [i.score for i in group]
    median = float(np.median(areas[alive])) if alive.any() else 0.0
    tree = shapely.STRtree(geoms)
    left, right = tree.query(shapely.buffer(geoms, rules.gap), predicate="intersects")
    pairs = [(int(a), int(b)) for a, b in zip(left, right, strict=True) if a < b]
    changed: set[int] = set()
    n = 0
    n += _drop_nested(geoms, areas, alive, scores, pairs, rules)
    halves = []
    for a, b in pairs if rules.halves else []:
        if not (alive[a] and alive[b]) or min(areas[a], areas[b]) > rules.small * median:
            continue
        union = _joined(geoms[a], geoms[b], rules.gap)
        area = float(shapely.area(union))
        if area > rules.max_size * median or union.geom_type != "Polygon":
            continue
        solid = area / max(float(shapely.area(shapely.convex_hull(union))), 1e-9)
        if solid >= rules.solidity:
            halves.append((solid, a, b, union))
    for _solid, a, b, union in sorted(halves, key=lambda h: -h[0]):
        if not (alive[a] and alive[b]):
            continue
        keep, gone = (a, b) if areas[a] >= areas[b] else (b, a)
        geoms[keep], areas[keep] = union, shapely.area(union)
        scores[keep] = _max_score(scores[keep], scores[gone])
        alive[gone] = False
        changed.add(keep)
        n += 1
    kept = []
    for k, inst in enumerate(group):
        if not alive[k]:
            continue
        polygon = inst.polygon
        if k in changed:
            polygon = np.asarray(geoms[k].exterior.coords)[:-1]
        kept.append(Instance(inst.label, polygon, scores[k]))
    return kept, n


def _drop_nested(geoms, areas, alive, scores, pairs, rules: FragmentRules) -> int:
    """Outlines mostly inside another: one such part is a fragment (dropped, the larger outline stays);
    two or more covering `blob_cover` of the larger one are particles under a blob (the blob goes)."""
    import shapely

    parts: dict[int, list[int]] = {}
    for a, b in pairs:
        if _inside_share(geoms, areas, a, b) >= rules.nested:
            small, big = (a, b) if areas[a] < areas[b] else (b, a)
            parts.setdefault(big, []).append(small)
    n = 0
    for big in sorted(parts, key=lambda k: -areas[k]):
        inner = [k for k in parts[big] if alive[k]]
        if not alive[big] or not inner:
            continue
        covered = float(shapely.area(shapely.union_all(geoms[inner]))) if len(inner) > 1 else 0.0
        if len(inner) > 1 and covered >= rules.blob_cover * areas[big]:
            alive[big] = False
            n += 1
            continue
        for k in inner:
            alive[k] = False
            scores[big] = _max_score(scores[big], scores[k])
            n += 1
    return n


def _inside_share(geoms, areas, a: int, b: int) -> float:
    """The share of the smaller outline that the other covers."""
    import shapely

    smaller = min(areas[a], areas[b])
    if smaller <= 0:
        return 0.0
    return float(shapely.area(shapely.intersection(geoms[a], geoms[b]))) / smaller


def _joined(a, b, gap: float):
    """The union of two outlines with a gap of up to `gap` px between them closed."""
    import shapely

    half = gap / 2
    return shapely.buffer(shapely.union(shapely.buffer(a, half), shapely.buffer(b, half)), -half)


def _max_score(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)
