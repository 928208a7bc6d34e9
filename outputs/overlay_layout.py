"""Where an overlay's id labels go, how thick its outlines are, and which region a zoomed inset shows.

Pure geometry on object boxes (no drawing), so a test can measure exactly what the renderer drew.
An id goes beside its object, never on it: on small, dense particles a number on the particle hides
it, and a number between two particles must still be nearer its own. When one id cannot be placed
so, none is drawn (a partial numbering sends the reader looking for ids that are not there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in overlay pixels

MAX_IDS = 3000  # more objects than this: ids are never tried (the CSV lists them)
GAP = 1.0  # px between an object's box and its id
LABEL_MARGIN = 1.0  # px kept free between two ids
VIEW_PX = 800  # about how wide a chat shows a photo
MIN_SCREEN_D = 12.0  # objects smaller than this on screen get a zoomed inset
INSET_D = 32.0  # object diameter in the inset, px
INSET_PX = 768  # the inset's longer side, px
MAX_ZOOM = 8.0


def median_d(d_px: np.ndarray) -> float:
    d = np.asarray(d_px, np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if len(d) else float("nan")


def line_width(d: float, shape: Sequence[int]) -> int:
    """Outline width: grows with the picture (a 4000 px image shown small needs more than 1 px) but stays
    under a tenth of the typical object, so the particle's own edge stays visible inside it."""
    base = max(1, round(min(shape[:2]) / 700))
    cap = max(1, int(d // 10)) if math.isfinite(d) else base
    return int(min(base, cap))


def id_font_px(d: float, shape: Sequence[int]) -> int:
    """Id text height: about 0.4 of the typical object, at least legible, at most a picture's 1/40."""
    upper = max(12, round(min(shape[:2]) / 40))
    wanted = round(0.4 * d) if math.isfinite(d) else upper
    return int(min(upper, max(9, wanted)))


def _overlap(a: Box, b: Box, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _box_distance(x: float, y: float, b: Box) -> float:
    dx = max(b[0] - x, 0.0, x - b[2])
    dy = max(b[1] - y, 0.0, y - b[3])
    return math.hypot(dx, dy)


class _Grid:
    """Boxes hashed into square cells: each query looks at the few boxes near it, not at all of them."""

    def __init__(self, cell: float) -> None:
        self.cell = max(4.0, cell)
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.boxes: list[Box] = []

    def _keys(self, b: Box) -> Iterable[tuple[int, int]]:
        c = self.cell
        for i in range(int(b[0] // c), int(b[2] // c) + 1):
            for j in range(int(b[1] // c), int(b[3] // c) + 1):
                yield i, j

    def add(self, b: Box) -> int:
        k = len(self.boxes)
        self.boxes.append(b)
        for key in self._keys(b):
            self.cells.setdefault(key, []).append(k)
        return k

    def near(self, b: Box, reach: float = 0.0) -> set[int]:
        grown = (b[0] - reach, b[1] - reach, b[2] + reach, b[3] + reach)
        found: set[int] = set()
        for key in self._keys(grown):
            found.update(self.cells.get(key, ()))
        return found


def _candidates(b: Box, tw: float, th: float) -> list[Box]:
    """Beside the box: right, above, left, below, then the four corners."""
    x0, y0, x1, y1 = b
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    spots = [
        (x1 + GAP, cy - th / 2),
        (cx - tw / 2, y0 - GAP - th),
        (x0 - GAP - tw, cy - th / 2),
        (cx - tw / 2, y1 + GAP),
        (x1 + GAP, y0 - GAP - th),
        (x0 - GAP - tw, y0 - GAP - th),
        (x1 + GAP, y1 + GAP),
        (x0 - GAP - tw, y1 + GAP),
    ]
    return [(x, y, x + tw, y + th) for x, y in spots]


def place_ids(
    boxes: np.ndarray,
    sizes: Sequence[tuple[float, float]],
    shape: Sequence[int],
    *,
    wanted: Sequence[int] | None = None,
    reserved: Sequence[Box] = (),
    pad: float = 0.0,
    force: bool = False,
) -> dict[int, Box] | None:
    """A box for the id of each object in `wanted` (default: all), or None when one does not fit.

    boxes: (n, 4) object boxes; sizes[k]: (w, h) of object k's id text; pad: how far the drawn outline
    reaches beyond an object's box. An id box lies inside the picture, overlaps no object box (so no
    object, nor its centre, is covered), no other id and nothing `reserved` (legend, scale bar), and its
    centre is nearer its own object than any other. `force` (the user asked for ids): an id that does
    not fit goes to its first spot inside the picture anyway."""
    h, w = shape[:2]
    n = len(boxes)
    wanted = list(range(n)) if wanted is None else list(wanted)
    if not wanted:
        return {}
    if len(wanted) > MAX_IDS and not force:
        return None
    objects = [(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad) for b in np.asarray(boxes, float).tolist()]
    label_area = sum(sizes[k][0] * sizes[k][1] for k in wanted)
    if label_area > 0.5 * w * h and not force:
        return None  # cannot fit, whatever the layout
    typical = float(np.median([max(o[2] - o[0], o[3] - o[1]) for o in objects])) if objects else 8.0
    tallest = max(max(s) for s in sizes) if sizes else 8.0
    grid = _Grid(2 * max(typical, tallest))
    for o in objects:
        grid.add(o)
    labels = _Grid(2 * tallest)
    for r in reserved:
        labels.add(r)
    # Crowded objects first: they have the fewest free spots.
    crowd = {k: len(grid.near(objects[k], tallest + GAP)) for k in wanted}
    placed: dict[int, Box] = {}
    for k in sorted(wanted, key=lambda k: (-crowd[k], k)):
        tw, th = sizes[k]
        spots = _candidates(objects[k], tw, th)
        spot = _first_free(k, spots, objects, grid, labels, (w, h))
        if spot is None and force:
            spot = _clamped(spots[0], w, h)
        elif spot is None:
            return None
        placed[k] = spot
        labels.add(spot)
    return placed


def _first_free(k: int, spots: list[Box], objects: list[Box], grid: _Grid, labels: _Grid,
                size: tuple[int, int]) -> Box | None:
    w, h = size
    for spot in spots:
        if spot[0] < 0 or spot[1] < 0 or spot[2] > w or spot[3] > h:
            continue
        if any(_overlap(spot, objects[j]) for j in grid.near(spot)):
            continue
        if any(_overlap(spot, labels.boxes[j], LABEL_MARGIN) for j in labels.near(spot, LABEL_MARGIN)):
            continue
        x, y = (spot[0] + spot[2]) / 2, (spot[1] + spot[3]) / 2
        own = _box_distance(x, y, objects[k])
        if any(_box_distance(x, y, objects[j]) <= own for j in grid.near(spot, own) if j != k):
            continue  # nearer another object: it would read as that one's id
        return spot
    return None


def _clamped(b: Box, w: float, h: float) -> Box:
    dx = max(0.0, -b[0]) - max(0.0, b[2] - w)
    dy = max(0.0, -b[1]) - max(0.0, b[3] - h)
    return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)


@dataclass(frozen=True)
class InsetWindow:
    x0: int
    y0: int
    width: int
    height: int
    zoom: float

    @property
    def box(self) -> Box:
        return (self.x0, self.y0, self.x0 + self.width, self.y0 + self.height)

    def to_inset(self, points: np.ndarray) -> np.ndarray:
        """Image pixel coordinates -> inset coordinates (pixel centres stay centres)."""
        return (np.asarray(points, float) - [self.x0, self.y0]) * self.zoom + (self.zoom - 1) / 2


def inset_window(centroids: np.ndarray, d: float, shape: Sequence[int]) -> InsetWindow | None:
    """The densest window to zoom into, when objects look smaller than MIN_SCREEN_D px on a chat's
    screen; None when the whole picture already shows them well (or the window would be most of it)."""
    h, w = shape[:2]
    if len(centroids) == 0 or not math.isfinite(d) or d * VIEW_PX / max(h, w) >= MIN_SCREEN_D:
        return None
    zoom = float(min(MAX_ZOOM, max(2.0, INSET_D / d)))
    side = max(8, int(round(INSET_PX / zoom)))
    ww, wh = min(side, w), min(side, h)
    if ww * wh > 0.5 * w * h:
        return None
    # Objects per cell of a quarter window; the window of 4 x 4 cells holding the most centroids.
    cell = max(1, side // 4)
    nx, ny = math.ceil(w / cell), math.ceil(h / cell)
    counts = np.zeros((ny + 1, nx + 1))
    c = np.asarray(centroids, float)
    ix = np.clip((c[:, 0] // cell).astype(int), 0, nx - 1)
    iy = np.clip((c[:, 1] // cell).astype(int), 0, ny - 1)
    np.add.at(counts, (iy + 1, ix + 1), 1)
    integral = counts.cumsum(0).cumsum(1)
    kx, ky = min(4, nx), min(4, ny)
    sums = (integral[ky:, kx:] - integral[:-ky, kx:] - integral[ky:, :-kx] + integral[:-ky, :-kx])
    best = np.argwhere(sums == sums.max())
    # Ties: the one nearest the picture's centre.
    j, i = min(best.tolist(), key=lambda p: (p[1] * cell - w / 2) ** 2 + (p[0] * cell - h / 2) ** 2)
    x0, y0 = min(i * cell, w - ww), min(j * cell, h - wh)
    return InsetWindow(int(x0), int(y0), int(ww), int(wh), zoom)


def text_sizes(texts: Sequence[str],
               measure: Callable[[str], tuple[float, float]]) -> list[tuple[float, float]]:
    """Each text's (w, h), measuring every distinct length once (digits are of equal width)."""
    cache: dict[int, tuple[float, float]] = {}
    out = []
    for text in texts:
        if len(text) not in cache:
            cache[len(text)] = measure("8" * len(text))
        out.append(cache[len(text)])
    return out
