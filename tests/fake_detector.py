"""A TileDetector without a neural network, for tests and benchmarks of the pipeline.

It "detects" bright blobs by thresholding each tile and labelling connected components, and
returns full-tile masks exactly like a real detector. Score = the blob's mean brightness / 255;
with two classes, blobs brighter than `class_split` are the second class.
"""

from __future__ import annotations

import numpy as np

from segmodel.types import Detections


class ThresholdDetector:
    def __init__(
        self,
        classes: tuple[str, ...] = ("particle",),
        rescale: float = 1.0,
        tile_size: int = 256,
        level: int = 100,
        class_split: int = 200,
        object_size: float | None = None,
    ) -> None:
        self.classes = list(classes)
        self.rescale = float(rescale)
        self.tile_size = int(tile_size)
        self.level = int(level)
        self.class_split = int(class_split)
        self.object_size = object_size
        self.calls: list[list[tuple[int, ...]]] = []  # shapes of the tiles of each call

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        import cv2

        self.calls.append([t.shape for t in tiles])
        out = []
        for tile in tiles:
            gray = tile.mean(axis=2) if tile.ndim == 3 else tile.astype(np.float64)
            fg = (gray > self.level).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
            ids = np.arange(1, n)
            masks = labels[None, :, :] == ids[:, None, None]
            x, y, w, h = (stats[1:, k] for k in range(4))
            boxes = np.stack([x, y, x + w - 1, y + h - 1], axis=1).astype(np.float32)
            sums = np.bincount(labels.ravel(), weights=gray.ravel(), minlength=n)[1:]
            means = sums / np.maximum(stats[1:, cv2.CC_STAT_AREA], 1)
            scores = np.clip(means / 255.0, 0, 1).astype(np.float32)
            cls = (means > self.class_split).astype(np.int64)
            if len(self.classes) == 1:
                cls[:] = 0
            out.append(Detections(boxes=boxes, scores=scores, labels=cls, masks=masks))
        return out


def disc_image(
    height: int, width: int, discs: list[tuple[float, float, float]], value: int = 220, background: int = 20
) -> np.ndarray:
    """uint8 RGB image with filled discs (cx, cy, r) of `value` on `background`."""
    img = np.full((height, width), background, np.uint8)
    for cx, cy, r in discs:
        x0, x1 = max(0, int(cx - r - 1)), min(width, int(cx + r + 2))
        y0, y1 = max(0, int(cy - r - 1)), min(height, int(cy + r + 2))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = value
    return np.repeat(img[:, :, None], 3, axis=2)
