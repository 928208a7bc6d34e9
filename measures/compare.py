"""Two sets of particle sizes compared (fresh vs spent catalyst, two preparations, two supports):
each set's numbers side by side (measures.stats.size_block), the ratio of mean sizes with its
bootstrap interval and the two-sample tests (measures.sizes.compare_sizes). Sets in nm and sets in
px are never mixed: a scaled set is not comparable with an unscaled one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.i18n import N_
from measures.sizes import Comparison, Metal, compare_sizes
from measures.stats import is_single_site, size_block


class ScaleMismatchError(InputError):
    code = "scale_mismatch"


class TooFewObjectsError(InputError):
    code = "too_few_objects"


@dataclass
class SizeSet:
    """One set's objects: class and diameter in nm (when scaled) or px, and how many images."""

    name: str
    labels: np.ndarray
    diameters: np.ndarray
    scaled: bool
    n_images: int = 1


@dataclass(frozen=True)
class SetImage:
    """One image's objects as a set is built from them; d_nm None when the image has no scale."""

    labels: Sequence[str]
    d_px: np.ndarray
    d_nm: np.ndarray | None


def size_set(name: str, images: Sequence[SetImage]) -> SizeSet:
    """The set of `images`: in nm when every image is scaled, in px when none is; a folder that mixes
    the two is refused (its sizes would be in two units)."""
    scaled = [im.d_nm is not None for im in images]
    if any(scaled) and not all(scaled):
        raise ScaleMismatchError(N_(
            "Set '{name}' mixes images with a scale ({scaled}) and without one ({unscaled}): its sizes "
            "would be in nm and in pixels. Give every image its scale (or none) and compare again.",
            name=name, scaled=sum(scaled), unscaled=len(scaled) - sum(scaled)))
    in_nm = bool(images) and all(scaled)
    labels = np.array([lab for im in images for lab in im.labels], dtype=object)
    parts = [np.asarray(im.d_nm if in_nm else im.d_px, dtype=np.float64) for im in images]
    return SizeSet(name, labels, np.concatenate(parts) if parts else np.zeros(0), in_nm, len(images))


def particles_of(s: SizeSet, label: str | None = None) -> np.ndarray:
    """The diameters compared: one class when named, else every class but single sites."""
    keep = (s.labels == label) if label else ~np.array([is_single_site(x) for x in s.labels], dtype=bool)
    return s.diameters[keep] if len(s.labels) else s.diameters


@dataclass(frozen=True)
class SetsCompared:
    """A's and B's numbers (size_block dicts), the unit, and B against A."""

    name_a: str
    name_b: str
    unit: str
    a: dict
    b: dict
    comparison: Comparison
    d_a: np.ndarray
    d_b: np.ndarray


def compare_sets(
    a: SizeSet, b: SizeSet, metal: Metal | None = None, label: str | None = None
) -> SetsCompared:
    """B against A. Refused: one set scaled and the other not; fewer than 2 objects in either."""
    if a.scaled != b.scaled:
        scaled, unscaled = (a, b) if a.scaled else (b, a)
        raise ScaleMismatchError(N_(
            "Cannot compare '{scaled}' (sizes in nm) with '{unscaled}' (sizes in pixels, no scale): give "
            "'{unscaled}' its scale first (the pixel size of its images), then compare again.",
            scaled=scaled.name, unscaled=unscaled.name))
    d_a, d_b = particles_of(a, label), particles_of(b, label)
    for s, d in ((a, d_a), (b, d_b)):
        if len(d) < 2:
            raise TooFewObjectsError(N_(
                "Set '{name}' has {n} particle(s) to compare; at least 2 are needed.", name=s.name, n=len(d)))
    unit = "nm" if a.scaled else "px"
    return SetsCompared(a.name, b.name, unit, size_block(d_a, unit, metal), size_block(d_b, unit, metal),
                        compare_sizes(d_a, d_b), d_a, d_b)
