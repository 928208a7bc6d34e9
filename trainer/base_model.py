"""A base model of our own, pretrained on synthetic particles and public EM images.

No pretrained weights can be downloaded here, so per-user training would start from random
weights. Instead an operator builds one base bundle (`segbot weights base`) from what is at hand:
synthetic scenes made in code and fully labelled instance-map datasets such as EMPS (MIT). Users
then train with `--init base` (SEGBOT_BASE_MODEL): every tensor whose shape fits is loaded, so a
one-class user model gets the whole network and a multi-class one all but the class heads.

All objects are one class, `particle`: the base model learns what an object on a micrograph is,
the user's labels teach their classes. Each image is resized so its median object is 20-96 px
across, the range per-user training's automatic rescale brings objects into.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from annotations.model import AnnotatedImage, Instance
from segmodel.options import TrainOptions

BASE_CLASS = "particle"
MEDIAN_D_RANGE = (20.0, 96.0)  # px after resizing: small objects enlarged, huge ones shrunk
MAX_SIDE = 1024  # px: larger images are shrunk (training sees 256 px sub-crops anyway)


def median_d(ann: AnnotatedImage) -> float:
    from annotations.geometry import area_centroid_perimeter

    if not ann.instances:
        return float("nan")
    area, _c, _p = area_centroid_perimeter([inst.polygon for inst in ann.instances])
    return float(np.median(2 * np.sqrt(np.abs(area) / np.pi)))


def normalise_scale(ann: AnnotatedImage, d_range: tuple[float, float] = MEDIAN_D_RANGE,
                    max_side: int = MAX_SIDE) -> AnnotatedImage:
    """Resize image, outlines and crops so the median object is within d_range and the image fits max_side."""
    import cv2

    d = median_d(ann)
    factor = 1.0
    if np.isfinite(d) and 0 < d < d_range[0]:
        factor = d_range[0] / d
    elif np.isfinite(d) and d > d_range[1]:
        factor = d_range[1] / d
    factor = min(factor, max_side / max(ann.width, ann.height))
    if abs(factor - 1.0) < 0.02:
        return ann
    w, h = max(1, round(ann.width * factor)), max(1, round(ann.height * factor))
    fx, fy = w / ann.width, h / ann.height
    image = cv2.resize(ann.image, (w, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    scale = np.array([fx, fy])
    # pixel centres move as cv2.resize moves them: j -> (j + 0.5) * f - 0.5
    instances = [Instance(i.label, (i.polygon + 0.5) * scale - 0.5, i.score) for i in ann.instances]
    crops = [replace(c, x0=c.x0 * fx, y0=c.y0 * fy, x1=c.x1 * fx, y1=c.y1 * fy) for c in ann.crops]
    return replace(ann, image=image, instances=instances, crops=crops,
                   nm_per_px=None if ann.nm_per_px is None else ann.nm_per_px / fx)


def one_class(ann: AnnotatedImage, label: str = BASE_CLASS) -> AnnotatedImage:
    return replace(ann, instances=[Instance(label, inst.polygon, inst.score) for inst in ann.instances])


def synthetic_sources(count: int, seed: int = 1000) -> list[AnnotatedImage]:
    """Varied synthetic scenes: sizes, densities, noise and touching pairs differ from image to image."""
    from trainer.synthetic import synthetic_scene

    rng = np.random.default_rng(seed)
    scenes = []
    for k in range(count):
        r = float(rng.uniform(4.0, 14.0))
        scenes.append(synthetic_scene(seed=seed + k, size=(384, 384), n_particles=int(rng.integers(20, 90)),
                                      n_pits=int(rng.integers(0, 20)), radius=(r, r * 1.8),
                                      pairs=float(rng.uniform(0.0, 0.4)), noise=float(rng.uniform(4, 18)),
                                      name=f"synthetic_base_{seed + k}.png"))
    return scenes


def base_sources(datasets: Sequence[Path], n_synthetic: int, exclude: set[str] | frozenset[str] = frozenset(),
                 seed: int = 1000) -> list[AnnotatedImage]:
    """Every image to pretrain on, one class, scale-normalised; images without objects are dropped."""
    from annotations.instance_maps import read_dataset

    images = synthetic_sources(n_synthetic, seed)
    for folder in datasets:
        images += read_dataset(Path(folder), BASE_CLASS, exclude)
    return [normalise_scale(one_class(ann)) for ann in images if ann.instances]


def build_base_model(sources: list[AnnotatedImage], out_dir: Path, options: TrainOptions,
                     progress: Callable | None = None, should_cancel: Callable[[], bool] | None = None):
    """Train the base bundle: random init, no hold-out, no extra rescale (sources are normalised)."""
    from trainer.train import train_model

    options = replace(options, init="random", holdout=False, rescale=1.0)
    return train_model(sources, Path(out_dir), options, progress=progress, should_cancel=should_cancel)
