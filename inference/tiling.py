"""Cutting an image of any size into overlapping tiles, and reading one tile rescaled.

Coordinates are original image pixels; a tile is the half-open box [x0, x1) x [y0, y1). Each
tile also owns a "core": the part of it closer to its own centre line than to any neighbour's
(the overlaps are split down the middle). Cores partition the image, so an object whose centre
lies in a tile's core is seen most centrally by that tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_OVERLAP = 16


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    col: int
    x0: int
    y0: int
    x1: int
    y1: int
    # ownership box cx0, cy0, cx1, cy1 (outer tiles reach to +-inf: every point has one owner)
    core: tuple[float, float, float, float]
    # which sides (left, top, right, bottom) lie inside the image, i.e. border a neighbour tile
    inner: tuple[bool, bool, bool, bool]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def default_overlap(tile: int, object_size: float | None = None) -> int:
    """Overlap (original px) wide enough that an object is whole in the tile that owns its centre.

    An object of diameter D whose centre is in a tile's core is at least overlap/2 - D/2 from the
    tile's edge, so overlap >= D plus a margin keeps it whole; 2.5 D leaves room for objects a bit
    larger than typical. Without a known size, a quarter of the tile.
    """
    if object_size is None or not math.isfinite(object_size) or object_size <= 0:
        overlap = tile // 4
    else:
        overlap = int(math.ceil(2.5 * object_size)) + 4
    return int(min(max(overlap, MIN_OVERLAP), tile // 2))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread start offsets covering [0, length) with tiles of `tile`, overlapping >= overlap."""
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    n = int(math.ceil((length - tile) / step)) + 1
    return [int(round(v)) for v in np.linspace(0, length - tile, n)]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles of side `tile` (smaller only where the image is) covering the image."""
    if tile < 1:
        raise ValueError(f"tile size must be positive, got {tile}")
    overlap = max(0, min(overlap, tile - 1))
    ys = tile_starts(height, tile, overlap)
    xs = tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)

    def bounds(starts: list[int], size: int, length: int) -> list[float]:
        # boundary between tile i and i + 1: middle of their overlap
        cuts = [(starts[i + 1] + starts[i] + size) / 2.0 for i in range(len(starts) - 1)]
        return [-math.inf, *cuts, math.inf]

    by, bx = bounds(ys, th, height), bounds(xs, tw, width)
    tiles = []
    for r, y0 in enumerate(ys):
        for c, x0 in enumerate(xs):
            tiles.append(
                Tile(
                    index=len(tiles),
                    row=r,
                    col=c,
                    x0=x0,
                    y0=y0,
                    x1=x0 + tw,
                    y1=y0 + th,
                    core=(bx[c], by[r], bx[c + 1], by[r + 1]),
                    inner=(x0 > 0, y0 > 0, x0 + tw < width, y0 + th < height),
                )
            )
    return tiles


def as_rgb(region: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) view/copy of an image region given as gray, gray+1, RGB or RGBA."""
    if region.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {region.dtype}")
    if region.ndim == 2:
        return np.repeat(region[:, :, None], 3, axis=2)
    if region.ndim == 3 and region.shape[2] == 1:
        return np.repeat(region, 3, axis=2)
    if region.ndim == 3 and region.shape[2] >= 3:
        return np.ascontiguousarray(region[:, :, :3])
    raise ValueError(f"unsupported image shape {region.shape}")


def read_tile(image: np.ndarray, tile: Tile, scale: float) -> tuple[np.ndarray, float, float]:
    """The tile's pixels as uint8 RGB, resized by `scale`; returns (pixels, sx, sy).

    Only the crop is resized, never the whole image. sx, sy are the exact factors used
    (rescaled size / original size), which can differ from `scale` by rounding.
    """
    import cv2

    crop = as_rgb(image[tile.y0 : tile.y1, tile.x0 : tile.x1])
    h, w = crop.shape[:2]
    if scale == 1.0:
        return crop, 1.0, 1.0
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(crop, (nw, nh), interpolation=interp)
    return resized, nw / w, nh / h
