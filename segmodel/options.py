"""The small typed set of training options, and the label statistics the config is tuned from.

Torch-free: the bot and the queue build and validate options without loading a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.errors import UserError

ARCHES = ("tiny", "r50", "x101")

# Per preset: iterations when neither iterations nor epochs are given, and the tile side used
# at inference (rescaled pixels).
DEFAULT_ITERATIONS = {"tiny": 600, "r50": 3000, "x101": 3000}
DEFAULT_TILE = {"tiny": 512, "r50": 800, "x101": 800}

# The auto rescale enlarges images so the median object is about this many pixels across.
TARGET_OBJECT_PX = 28.0
# Objects larger than this (x sqrt 2) are shrunk to about it, not below SHRINK_FLOOR: a 256 px
# training sub-crop then holds whole particles, within the 20-96 px the base model learnt from
# (5 figure series: the two of ~130 px spheres F1 0.698 / 0.902 -> 0.906 / 0.784, pooled 0.894 -> 0.924,
# the others unchanged; docs/benchmarks.md, "Large particles shrunk").
LARGE_OBJECT_PX = 64.0
SHRINK_FLOOR = 0.25
MAX_ITERATIONS = 200_000
USER_INITS = ("auto", "random", "base", "coco")
HOLDOUT_MIN_OBJECTS = 20  # total labelled objects before one crop may be held out for a check
# Detections scored below this are dropped unless the user sets another (/threshold, --threshold).
# 0.7 rather than 0.5: on images other than the labelled one the false detections are the unsure
# ones (EMPS, same models: same series F1 0.867 -> 0.903, other materials 0.594 -> 0.648, same
# image 0.923 either way; docs/benchmarks.md).
DEFAULT_SCORE_THRESHOLD = 0.7


class OptionsError(UserError, ValueError):
    """An option value a user can fix; str() is the message."""


@dataclass
class TrainOptions:
    arch: str = "tiny"
    iterations: int | None = None  # wins over epochs when both are given
    epochs: int | None = None
    rescale: float | None = None  # None = automatic 1..3 from the median object size
    augment: bool = True
    # probability a training sample gets labelled objects pasted onto its background (0 = off)
    copy_paste: float = 0.0
    # share of the pasted objects laid partly over a neighbour, its covered part cut from its mask
    copy_paste_pile: float = 0.0
    device: str = "cpu"
    seed: int = 0
    # 'auto' (the operator's base model when one is configured for this preset, else random) |
    # 'random' | 'coco' | 'base' | a path to a bundle or checkpoint (operator only)
    init: str = "auto"
    holdout: bool = True
    batch_size: int = 2
    crop_size: int = 256  # side of the random training sub-crops, in rescaled pixels
    lr: float | None = None  # None = per-preset default
    tile_size: int | None = None  # None = per-preset default

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.arch not in ARCHES:
            raise OptionsError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHES)}")
        for name in ("iterations", "epochs"):
            value = getattr(self, name)
            if value is not None and not (1 <= int(value) <= MAX_ITERATIONS):
                raise OptionsError(f"{name} must be between 1 and {MAX_ITERATIONS}")
        if self.rescale is not None and not (0.25 <= float(self.rescale) <= 4.0):
            raise OptionsError("rescale must be between 0.25 and 4")
        if not (1 <= self.batch_size <= 64):
            raise OptionsError("batch size must be between 1 and 64")
        if not (64 <= self.crop_size <= 2048):
            raise OptionsError("crop size must be between 64 and 2048 px")
        if self.tile_size is not None and not (64 <= self.tile_size <= 4096):
            raise OptionsError("tile size must be between 64 and 4096 px")
        if isinstance(self.copy_paste, bool) or not isinstance(self.copy_paste, int | float) \
                or not (0 <= self.copy_paste <= 1):
            raise OptionsError("copy-paste must be a probability between 0 and 1")
        if isinstance(self.copy_paste_pile, bool) or not isinstance(self.copy_paste_pile, int | float) \
                or not (0 <= self.copy_paste_pile <= 1):
            raise OptionsError("copy-paste must be a probability between 0 and 1")
        if self.lr is not None and not (0 < self.lr < 1):
            raise OptionsError("learning rate must be between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Build from a (user or stored) dict, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    @classmethod
    def from_user(cls, data: dict[str, Any]) -> TrainOptions:
        """Options a bot user sent: like from_dict, but `init` may only name the operator's
        configured weights ('auto', 'random', 'base', 'coco'), never a file path."""
        options = cls.from_dict(data)
        if options.init not in USER_INITS:  # a path would load any file: operators use `segbot train`
            raise OptionsError(f"init must be one of {', '.join(USER_INITS)}: training can start from "
                               "these weights only")
        return options

    @property
    def effective_tile_size(self) -> int:
        return int(self.tile_size or DEFAULT_TILE[self.arch])


@dataclass
class LabelStats:
    """What the labels look like; the config's anchors, sampling and rescale are chosen from it."""

    n_images: int
    n_regions: int
    n_objects: int
    counts: dict[str, int]
    median_d_px: float  # equivalent diameter 2*sqrt(area/pi), original pixels
    p10_d_px: float
    p90_d_px: float
    median_aspect: float  # long/short side of the box, >= 1
    p90_aspect: float
    objects_per_mpx: float  # density inside the labelled regions
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelStats:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def auto_rescale(median_d_px: float) -> float:
    """Enlarge small objects 1-3x (Okunev et al. 2020 trained on 1x, 2x and 3x images), in steps of 0.5;
    shrink large ones (over LARGE_OBJECT_PX x sqrt 2) to about LARGE_OBJECT_PX, in steps of sqrt 2 down
    to SHRINK_FLOOR, so a training sub-crop holds whole particles, as the base model saw them."""
    if not math.isfinite(median_d_px) or median_d_px <= 0:
        return 1.0
    if median_d_px > LARGE_OBJECT_PX * math.sqrt(2):
        steps = round(math.log(median_d_px / LARGE_OBJECT_PX, math.sqrt(2)))
        return float(max(SHRINK_FLOOR, round(math.sqrt(2) ** -steps, 3)))
    factor = TARGET_OBJECT_PX / median_d_px
    return float(min(3.0, max(1.0, round(factor * 2) / 2)))


def resolve_iterations(options: TrainOptions, iterations_per_epoch: int) -> int:
    if options.iterations is not None:
        return int(options.iterations)
    if options.epochs is not None:
        return max(1, int(options.epochs) * max(1, iterations_per_epoch))
    return DEFAULT_ITERATIONS[options.arch]
