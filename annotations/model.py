"""The shared vocabulary: instances (one object's polygon), crops, an annotated image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError
from core.i18n import Text


class AnnotationError(InputError):
    """A LabelMe file (or a shape in it) a user can fix; `str(error)` is the message shown to them.

    Subclasses name the problem (see annotations.errors); `code` is a stable identifier
    for tests and translations.
    """

    code = "bad_annotation"


@dataclass(frozen=True)
class Instance:
    """One object: its class label and outline in image pixels (x, y), optionally a score."""

    label: str
    polygon: np.ndarray  # (N, 2) float64, x then y, not closed (first point not repeated)
    score: float | None = None

    def __post_init__(self) -> None:
        poly = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "polygon", poly)


@dataclass(frozen=True)
class Crop:
    """A fully labelled rectangle, [x0, x1) x [y0, y1) in image pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


@dataclass
class AnnotatedImage:
    """An image with its labelled objects; `crops` empty means the whole image is labelled."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    instances: list[Instance] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    nm_per_px: float | None = None
    notes: list[Text] = field(default_factory=list)  # what the user should know (skipped shapes, ...)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def classes(self) -> list[str]:
        return sorted({inst.label for inst in self.instances})
