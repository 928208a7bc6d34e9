"""Data passed between a tile detector and the pipeline (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Detections:
    """Detections in one tile, in that tile's (rescaled) pixel coordinates.

    boxes float32 (N, 4) x0, y0, x1, y1; scores float32 (N,); labels int64 (N,) indexes into
    `detector.classes`; masks bool (N, h, w), the full size of the tile that was passed in.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.masks = np.asarray(self.masks, dtype=bool)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n or (self.masks.ndim != 3 and n > 0):
            raise ValueError(
                f"inconsistent detections: {n} boxes, {len(self.scores)} scores, "
                f"{len(self.labels)} labels, masks {self.masks.shape}"
            )
        if self.masks.ndim == 3 and self.masks.shape[0] != n:
            raise ValueError(f"{n} boxes but {self.masks.shape[0]} masks")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, height: int, width: int) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            labels=np.zeros(0, np.int64),
            masks=np.zeros((0, height, width), bool),
        )


@runtime_checkable
class TileDetector(Protocol):
    """Anything that finds objects in tiles: the mmdet model, or a fake in tests.

    `rescale`: the pipeline enlarges each tile crop by this factor before `detect` (objects then
    look the size they had in training). `tile_size`: side of the (rescaled) tiles the detector
    wants. `detect` gets uint8 RGB tiles, already rescaled, and returns one Detections per tile.
    """

    classes: list[str]
    rescale: float
    tile_size: int

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]: ...
