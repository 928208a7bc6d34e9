"""Per-tile detections -> candidates in original pixels -> one object per real object.

Memory stays bounded: a tile's full-size masks are reduced right away to an outline polygon, and
only candidates lying in a tile overlap keep a small bool mask cropped to their box (original
resolution) for the cross-tile comparison. No full-image mask is ever made.

Merging: two candidates from different tiles are the same object when, inside the region both
tiles saw, one covers at least `match` of the other (intersection over the smaller). Candidates
are then kept greedily by priority (not cut by an inner tile edge, centre in its tile's core,
score), dropping any that match an already kept one. An object cut by tile edges in every tile
(larger than the overlap) has its pieces joined into one.

Settling as we go: a group of matching candidates is resolved as soon as every tile next to its
tiles has been seen (greedy within a group gives the same result as greedy over everything), and
its masks are freed; settled outlines are packed. With tiles in row order only the last row or
two of tiles hold masks, so memory does not grow with the image beyond the outlines themselves.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from annotations.geometry import DEFAULT_TOLERANCE, mask_to_polygon
from inference.tiling import Tile
from segmodel.types import Detections

MATCH_IOS = 0.5
BOX_MARGIN = 2  # px searched around a detection's box for its mask
PACK_SCALE = 16  # settled outlines are stored in 1/16 px steps (far below the 0.25 px tolerance)


@dataclass(slots=True)
class Merged:
    label: int
    score: float
    polygon: np.ndarray  # (N, 2) x, y original px (float32 or float64)


@dataclass
class CandidateSet:
    """Everything kept from the tiles seen so far, indexed by candidate.

    Compact on purpose (an 8k image yields ~10^5 candidates): scalars in typed arrays, outlines
    as float32, masks only for candidates lying in a tile overlap.
    """

    tiles: list[Tile]
    tolerance: float = DEFAULT_TOLERANCE
    tile_of: array = field(default_factory=lambda: array("i"))
    label: array = field(default_factory=lambda: array("i"))
    score: array = field(default_factory=lambda: array("d"))
    truncated: array = field(default_factory=lambda: array("b"))
    in_core: array = field(default_factory=lambda: array("b"))
    boxes: array = field(default_factory=lambda: array("i"))  # x0, y0, x1, y1 (exclusive) per candidate
    polygon: list[np.ndarray | None] = field(default_factory=list)  # None: outlined after the merge
    mask: list[np.ndarray | None] = field(default_factory=list)  # only for candidates in overlaps
    source: list[tuple | None] = field(default_factory=list)  # rescaled mask crop + mapping, ditto

    match: float = MATCH_IOS

    def __post_init__(self) -> None:
        self._neighbours = _neighbour_rects(self.tiles)
        self._adjacent: dict[int, list[int]] = {t.index: [] for t in self.tiles}
        for a, b in _tile_pairs(self.tiles):
            self._adjacent[a.index].append(b.index)
            self._adjacent[b.index].append(a.index)
        self._span: dict[int, tuple[int, int]] = {}  # tile -> its candidates [start, end)
        self._closed: set[int] = set()  # tiles whose neighbours have all been seen
        self._adjacency: dict[int, list[int]] = {}  # candidate -> same object in other tiles
        self._done = bytearray()  # candidate settled (output or dropped)
        # settled objects, packed: outline vertices as int16 1/16 px steps from an integer
        # origin (4 bytes a vertex), where each outline starts, its origin, label and score
        self._out_xy = array("h")
        self._out_start = array("q", [0])
        self._out_origin = array("i")
        self._out_label = array("i")
        self._out_score = array("d")
        self._out_big: dict[int, np.ndarray] = {}  # outlines too large for int16 offsets

    def __len__(self) -> int:
        return len(self.label)

    def box(self, i: int) -> tuple[int, int, int, int]:
        b = self.boxes[4 * i : 4 * i + 4]
        return b[0], b[1], b[2], b[3]

    def add(
        self,
        tile: Tile,
        det: Detections,
        sx: float,
        sy: float,
        threshold: float,
        allowed: np.ndarray | None,
        ceiling: float | None = None,
    ) -> int:
        """Take one tile's detections (in rescaled tile px) scored from `threshold` (up to `ceiling`,
        excluded, when given); returns how many were kept."""
        keep = det.scores >= threshold
        if ceiling is not None:
            keep &= det.scores < ceiling
        if allowed is not None:
            keep &= np.isin(det.labels, allowed)
        if not keep.any():
            return 0
        h, w = det.masks.shape[1:]
        before = len(self)
        if tile.index in self._span:
            raise ValueError(f"tile {tile.index} added twice")
        for k in np.flatnonzero(keep):
            extent = _mask_extent(det.masks[k], det.boxes[k])
            if extent is None:
                continue
            rx0, ry0, rx1, ry1 = extent
            hi = np.array(det.masks[k, ry0:ry1, rx0:rx1])  # copy: the tile's masks are released
            self._add_one(tile, hi, (rx0, ry0, rx1, ry1), (w, h), sx, sy, int(det.labels[k]), det.scores[k])
        self._span[tile.index] = (before, len(self))
        self._done.extend(bytes(len(self) - before))
        for other in self._adjacent[tile.index]:
            if other in self._span:
                self._link(self.tiles[other], tile)
        self._settle([tile.index, *self._adjacent[tile.index]])
        return len(self) - before

    def _add_one(self, tile, hi, extent, size, sx, sy, label, score) -> None:
        rx0, ry0, rx1, ry1 = extent
        w, h = size
        lo, (ox, oy) = _downsample(hi, rx0, ry0, sx, sy)
        box = (tile.x0 + ox, tile.y0 + oy, tile.x0 + ox + lo.shape[1], tile.y0 + oy + lo.shape[0])
        in_overlap = any(_intersects(box, rect) for rect in self._neighbours[tile.index])
        source = (hi, tile.x0, tile.y0, rx0, ry0, sx, sy)
        if in_overlap:
            poly = None  # outlined later, only if it survives the merge
        else:
            poly = _outline(source, self.tolerance)
            if poly is None:
                return
            poly = poly.astype(np.float32)
        cx = tile.x0 + (rx0 + rx1) / (2 * sx) - 0.5
        cy = tile.y0 + (ry0 + ry1) / (2 * sy) - 0.5
        c = tile.core
        left, top, right, bottom = tile.inner
        self.tile_of.append(tile.index)
        self.label.append(label)
        self.score.append(float(score))
        self.truncated.append(
            bool((left and rx0 == 0) or (top and ry0 == 0) or (right and rx1 == w) or (bottom and ry1 == h))
        )
        self.in_core.append(bool(c[0] <= cx < c[2] and c[1] <= cy < c[3]))
        self.polygon.append(poly)
        self.boxes.extend(box)
        self.mask.append(lo if in_overlap else None)
        self.source.append(source if in_overlap else None)

    def finish(self) -> int:
        """Settle everything once every tile is in; returns the number of objects.

        Objects are settled as soon as every tile that could hold a duplicate has been seen, so
        only the candidates of the last row or two of tiles keep masks; this settles the rest.
        """
        for t in self.tiles:  # tiles never added (a caller's partial run) count as empty
            self._span.setdefault(t.index, (len(self), len(self)))
        self._settle([t.index for t in self.tiles])
        return len(self._out_label)

    def objects(self) -> Iterator[Merged]:
        """The settled objects (after finish()), each once; the packed store is emptied."""
        xy = np.frombuffer(self._out_xy, np.int16).reshape(-1, 2) if self._out_xy else np.zeros((0, 2))
        starts, origin = self._out_start, self._out_origin
        for k in range(len(self._out_label)):
            poly = self._out_big.get(k)
            if poly is None:
                poly = xy[starts[k] : starts[k + 1]].astype(np.float64) / PACK_SCALE
                poly += (origin[2 * k], origin[2 * k + 1])
            yield Merged(label=self._out_label[k], score=self._out_score[k], polygon=poly)
        del xy
        self._out_xy, self._out_start, self._out_origin = array("h"), array("q", [0]), array("i")
        self._out_label, self._out_score, self._out_big = array("i"), array("d"), {}

    def resolve(self) -> list[Merged]:
        """finish() and all objects as a list."""
        self.finish()
        return list(self.objects())

    def _settle(self, tiles: list[int]) -> None:
        """Resolve the match groups that can no longer change: all their tiles' neighbours seen."""
        for t in tiles:
            if t in self._closed or t not in self._span:
                continue
            if any(n not in self._span for n in self._adjacent[t]):
                continue
            self._closed.add(t)
        for t in tiles:
            if t not in self._closed:
                continue
            start, end = self._span[t]
            for i in range(start, end):
                if self._done[i]:
                    continue
                group = self._group(i)
                if all(self.tile_of[j] in self._closed for j in group):
                    self._resolve_group(group)

    def _group(self, i: int) -> list[int]:
        """Candidates connected to i by matches."""
        if i not in self._adjacency:
            return [i]
        seen, stack = {i}, [i]
        while stack:
            for j in self._adjacency.get(stack.pop(), ()):
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
        return sorted(seen)

    def _resolve_group(self, group: list[int]) -> None:
        """Greedy by priority (whole, central, confident); pieces cut in every tile are joined."""
        adjacency = self._adjacency
        order = sorted(group, key=lambda i: (self.truncated[i], not self.in_core[i], -self.score[i], i))
        rank = {i: r for r, i in enumerate(order)}
        joined: dict[int, list[int]] = {}
        absorbed: set[int] = set()
        truncated = {i: bool(self.truncated[i]) for i in group}
        for comp in _components({i: adjacency.get(i, []) for i in group}, truncated):
            if len(comp) < 2 or any(not truncated[j] for i in comp for j in adjacency[i]):
                continue
            rep = min(comp, key=lambda i: rank[i])
            joined[rep] = comp
            absorbed.update(j for j in comp if j != rep)
        kept: set[int] = set()
        for i in order:
            if i not in absorbed and not any(j in kept for j in adjacency.get(i, ())):
                kept.add(i)
        for i in order:
            if i not in kept:
                continue
            score = self.score[i]
            if i in joined:
                poly = self._union_polygon(joined[i])
                score = max(self.score[j] for j in joined[i])
            else:
                poly = self.polygon[i]
                if poly is None:
                    poly = _outline(self.source[i], self.tolerance)
            if poly is not None:
                self._pack(poly, self.label[i], score)
        for i in group:  # settled: free what only the merge needed
            self._done[i] = 1
            self.polygon[i] = self.mask[i] = self.source[i] = None
            adjacency.pop(i, None)

    def _pack(self, poly: np.ndarray, label: int, score: float) -> None:
        poly = np.asarray(poly, np.float64)
        ox, oy = np.floor(poly.min(axis=0))
        steps = np.round((poly - (ox, oy)) * PACK_SCALE)
        if steps.max() > np.iinfo(np.int16).max:  # larger than 2,048 px: keep as is
            self._out_big[len(self._out_label)] = poly
            steps = steps[:0]
        self._out_xy.extend(steps.astype(np.int16).ravel())
        self._out_start.append(len(self._out_xy) // 2)
        self._out_origin.extend((int(ox), int(oy)))
        self._out_label.append(label)
        self._out_score.append(score)

    def _link(self, a: Tile, b: Tile) -> None:
        """Record which candidates of two overlapping tiles are the same object."""
        shared = (max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1))
        ia = self._in_rect(a.index, shared)
        ib = self._in_rect(b.index, shared)
        if len(ia) == 0 or len(ib) == 0:
            return
        boxes = np.frombuffer(self.boxes, np.int32).reshape(-1, 4)
        ba, bb = boxes[ia].astype(np.int64), boxes[ib].astype(np.int64)
        hit = (
            (np.minimum(ba[:, None, 2], bb[None, :, 2]) > np.maximum(ba[:, None, 0], bb[None, :, 0]))
            & (np.minimum(ba[:, None, 3], bb[None, :, 3]) > np.maximum(ba[:, None, 1], bb[None, :, 1]))
        )
        for p, q in zip(*np.nonzero(hit), strict=True):
            i, j = int(ia[p]), int(ib[q])
            if self._overlap_ios(i, j, shared) >= self.match:
                self._adjacency.setdefault(i, []).append(j)
                self._adjacency.setdefault(j, []).append(i)

    def _in_rect(self, tile: int, rect) -> np.ndarray:
        """Candidates of a tile that keep a mask and whose box meets rect."""
        start, end = self._span[tile]
        idx = np.array([i for i in range(start, end) if self.mask[i] is not None], dtype=np.int64)
        if len(idx) == 0:
            return idx
        boxes = np.frombuffer(self.boxes, np.int32).reshape(-1, 4)
        return _boxes_hitting(boxes, idx, rect)

    def _overlap_ios(self, i: int, j: int, shared: tuple[int, int, int, int]) -> float:
        """Intersection over the smaller of two masks, both restricted to the shared tile region."""
        bi, bj = self.box(i), self.box(j)
        ai = _pixels_in(self.mask[i], bi, shared)
        aj = _pixels_in(self.mask[j], bj, shared)
        if ai == 0 or aj == 0:
            return 0.0
        win = (max(bi[0], bj[0]), max(bi[1], bj[1]), min(bi[2], bj[2]), min(bi[3], bj[3]))
        if win[2] <= win[0] or win[3] <= win[1]:
            return 0.0
        mi = self.mask[i][win[1] - bi[1] : win[3] - bi[1], win[0] - bi[0] : win[2] - bi[0]]
        mj = self.mask[j][win[1] - bj[1] : win[3] - bj[1], win[0] - bj[0] : win[2] - bj[0]]
        inter = int(np.count_nonzero(mi & mj))
        return inter / min(ai, aj)

    def _union_polygon(self, members: list[int]) -> np.ndarray:
        boxes = np.asarray([self.box(m) for m in members])
        x0, y0 = boxes[:, :2].min(axis=0)
        x1, y1 = boxes[:, 2:].max(axis=0)
        union = np.zeros((y1 - y0, x1 - x0), bool)
        for m in members:
            b = self.box(m)
            union[b[1] - y0 : b[3] - y0, b[0] - x0 : b[2] - x0] |= self.mask[m]
        return mask_to_polygon(union, self.tolerance, offset=(x0, y0))


def _components(adjacency: dict[int, list[int]], truncated) -> list[list[int]]:
    """Connected groups of truncated candidates linked by matches among themselves."""
    seen: set[int] = set()
    comps = []
    for start in adjacency:
        if start in seen or not truncated[start]:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            i = stack.pop()
            comp.append(i)
            for j in adjacency[i]:
                if truncated[j] and j not in seen:
                    seen.add(j)
                    stack.append(j)
        comps.append(comp)
    return comps


def _outline(source: tuple, tolerance: float) -> np.ndarray | None:
    """Polygon in original px of a mask crop cut from a rescaled tile."""
    hi, tx0, ty0, rx0, ry0, sx, sy = source
    poly = mask_to_polygon(hi, tolerance)
    if poly is None:
        return None
    # rescaled px u -> original px: pixel edges map onto pixel edges
    poly[:, 0] = tx0 + (poly[:, 0] + rx0 + 0.5) / sx - 0.5
    poly[:, 1] = ty0 + (poly[:, 1] + ry0 + 0.5) / sy - 0.5
    return poly


def _mask_extent(mask: np.ndarray, box: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight [x0, x1) x [y0, y1) of a tile-sized mask, searched near its box first."""
    h, w = mask.shape
    bx0, by0, bx1, by1 = (float(v) for v in box)
    x0 = min(max(int(bx0) - BOX_MARGIN, 0), w)
    y0 = min(max(int(by0) - BOX_MARGIN, 0), h)
    x1 = min(max(int(bx1) + BOX_MARGIN + 2, 0), w)
    y1 = min(max(int(by1) + BOX_MARGIN + 2, 0), h)
    window = mask[y0:y1, x0:x1]
    leaks = window.size == 0 or (
        (x0 > 0 and window[:, 0].any())
        or (y0 > 0 and window[0].any())
        or (x1 < w and window[:, -1].any())
        or (y1 < h and window[-1].any())
    )
    if leaks:  # the mask reaches beyond its box: search the whole tile
        x0, y0, window = 0, 0, mask
    rows = np.flatnonzero(window.any(axis=1))
    if len(rows) == 0:
        if leaks or not mask.any():
            return None
        x0, y0, window = 0, 0, mask  # empty near its box but not elsewhere: a wrong box
        rows = np.flatnonzero(window.any(axis=1))
    cols = np.flatnonzero(window[rows[0] : rows[-1] + 1].any(axis=0))
    return x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1


def _downsample(
    hi: np.ndarray, rx0: int, ry0: int, sx: float, sy: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The mask on the original pixel grid (nearest sample at each original pixel centre).

    Returns (mask, (ox, oy)): the tile-local original pixel of mask[0, 0]. Never empty: a
    speck smaller than one original pixel keeps the pixel under its centre.
    """
    if sx == 1.0 and sy == 1.0:
        return hi, (rx0, ry0)
    hh, hw = hi.shape

    def axis(r0: int, n: int, s: float) -> tuple[int, np.ndarray, np.ndarray]:
        o0 = int(np.floor(r0 / s))
        o1 = int(np.ceil((r0 + n) / s))
        idx = np.floor((np.arange(o0, o1) + 0.5) * s).astype(np.int64) - r0
        return o0, idx, (idx >= 0) & (idx < n)

    ox, ci, cv = axis(rx0, hw, sx)
    oy, ri, rv = axis(ry0, hh, sy)
    lo = np.zeros((len(ri), len(ci)), bool)
    lo[np.ix_(rv, cv)] = hi[np.ix_(ri[rv], ci[cv])]
    if not lo.any():
        ys, xs = np.nonzero(hi)
        j = int(np.clip(np.floor((rx0 + xs.mean() + 0.5) / sx) - ox, 0, lo.shape[1] - 1))
        i = int(np.clip(np.floor((ry0 + ys.mean() + 0.5) / sy) - oy, 0, lo.shape[0] - 1))
        lo[i, j] = True
    # trim to the tight extent
    rows, cols = np.flatnonzero(lo.any(axis=1)), np.flatnonzero(lo.any(axis=0))
    lo = lo[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return lo, (ox + int(cols[0]), oy + int(rows[0]))


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _neighbour_rects(tiles: list[Tile]) -> dict[int, list[tuple[int, int, int, int]]]:
    rects: dict[int, list[tuple[int, int, int, int]]] = {t.index: [] for t in tiles}
    for a, b in _tile_pairs(tiles):
        rects[a.index].append(_rect(b))
        rects[b.index].append(_rect(a))
    return rects


def _tile_pairs(tiles: list[Tile]) -> list[tuple[Tile, Tile]]:
    """Overlapping pairs of grid neighbours (including diagonals), each pair once."""
    at = {(t.row, t.col): t for t in tiles}
    pairs = []
    for t in tiles:
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
            other = at.get((t.row + dr, t.col + dc))
            if other is not None and _intersects(_rect(t), _rect(other)):
                pairs.append((t, other))
    return pairs


def _rect(t: Tile) -> tuple[int, int, int, int]:
    return (t.x0, t.y0, t.x1, t.y1)


def _boxes_hitting(boxes: np.ndarray, idx: np.ndarray, rect) -> np.ndarray:
    b = boxes[idx]
    ok = (b[:, 0] < rect[2]) & (rect[0] < b[:, 2]) & (b[:, 1] < rect[3]) & (rect[1] < b[:, 3])
    return idx[ok]


def _pixels_in(mask: np.ndarray, box, rect) -> int:
    x0, y0 = max(box[0], rect[0]), max(box[1], rect[1])
    x1, y1 = min(box[2], rect[2]), min(box[3], rect[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    return int(np.count_nonzero(mask[y0 - box[1] : y1 - box[1], x0 - box[0] : x1 - box[0]]))
