"""Statistics per image, per class and pooled over images: count, density, coverage, D distribution
(with measures.sizes' weighted means, intervals, fit and dispersion), nearest-neighbour distance
(KD-tree, not O(n^2)); single sites apart from particles when both are there."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from measures.objects import MeasureArrays, ObjectMeasure, to_arrays
from measures.sizes import Metal, particles_needed, relative_precision, size_numbers, with_dispersion

PERCENTILES = (5, 10, 25, 75, 90, 95)
# classes named so are single atoms/sites: counted and spaced, never sized into a dispersion
SINGLE_SITE_WORDS = ("single", "atom", "sac")


def is_single_site(label: str) -> bool:
    """A class of single sites ("single_atom", "single site", "SAC" ...), by its name."""
    name = str(label).lower()
    return any(word in name for word in SINGLE_SITE_WORDS)


@dataclass
class ImageMeasures:
    """One image's objects as measured, with what statistics need to know about the image."""

    name: str
    measures: list[ObjectMeasure] | MeasureArrays
    image_shape: tuple[int, ...]
    nm_per_px: float | None = None
    region_area_px: float | None = None  # the labelled area (crops); whole image when None


def nearest_neighbour(points: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest other point (nan when alone)."""
    n = len(points)
    if n < 2:
        return np.full(n, np.nan)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(points).query(points, k=2)
    return dist[:, 1]


def _dist(values: np.ndarray, prefix: str, unit: str) -> dict:
    out: dict = {}
    if len(values) == 0:
        for key in ("mean", "median", "std", "min", "max", *(f"p{p}" for p in PERCENTILES)):
            out[f"{key}_{prefix}_{unit}"] = None
        return out
    out[f"mean_{prefix}_{unit}"] = float(np.mean(values))
    out[f"median_{prefix}_{unit}"] = float(np.median(values))
    out[f"std_{prefix}_{unit}"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    out[f"min_{prefix}_{unit}"] = float(np.min(values))
    out[f"max_{prefix}_{unit}"] = float(np.max(values))
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        out[f"p{p}_{prefix}_{unit}"] = float(v)
    return out


def size_block(d: np.ndarray, unit: str, metal: Metal | None = None) -> dict:
    """The size numbers of one set of diameters in `unit` alone (no areas, no positions): n_objects,
    mean/median/std/percentiles, weighted means, intervals, fit, dispersion (nm and a metal)."""
    out: dict = {"n_objects": int(len(d))}
    out.update(_dist(d, "d", unit))
    out.update(size_numbers(d, unit))
    return with_dispersion(out, metal if unit == "nm" else None)


def _block(
    d: np.ndarray, area: np.ndarray, nnd: np.ndarray, region_px: float, nm: float | None,
    metal: Metal | None = None, sizes: bool = True,
) -> dict:
    n = len(d)
    out: dict = {"n_objects": int(n)}
    if nm:
        region_um2 = region_px * (nm / 1000.0) ** 2
        out["density"] = n / region_um2 if region_um2 > 0 else None
        out["density_unit"] = "per um2"
    else:
        out["density"] = n / (region_px / 1e6) if region_px > 0 else None
        out["density_unit"] = "per Mpx"
    out["coverage"] = float(min(1.0, area.sum() / region_px)) if region_px > 0 else None
    out.update(_dist(d, "d", "px"))
    out["mean_area_px"] = float(area.mean()) if n else None
    finite = nnd[np.isfinite(nnd)]
    out["mean_nnd_px"] = float(finite.mean()) if len(finite) else None
    out["median_nnd_px"] = float(np.median(finite)) if len(finite) else None
    if nm:
        out.update(_dist(d * nm, "d", "nm"))
        out["mean_area_nm2"] = float(area.mean() * nm * nm) if n else None
        out["mean_nnd_nm"] = out["mean_nnd_px"] * nm if out["mean_nnd_px"] is not None else None
        out["median_nnd_nm"] = out["median_nnd_px"] * nm if out["median_nnd_px"] is not None else None
    # intervals and fit in the unit the user reads (nm when scaled): computed once, not per unit
    if sizes:
        out.update(size_numbers(d * nm, "nm") if nm else size_numbers(d, "px"))
    return with_dispersion(out, metal)


def _as_arrays(measures: list[ObjectMeasure] | MeasureArrays) -> MeasureArrays:
    return measures if isinstance(measures, MeasureArrays) else to_arrays(list(measures))


Prepared = tuple[MeasureArrays, np.ndarray, dict[str, np.ndarray], float, dict[str, np.ndarray]]


def _site_mask(labels: np.ndarray) -> np.ndarray:
    return np.array([is_single_site(lab) for lab in labels.tolist()], dtype=bool)


def _prepared(item: ImageMeasures) -> Prepared:
    """The arrays, nearest-neighbour distances (all, per class, and per group: particles and single
    sites when both are there), and the analysed area."""
    a = _as_arrays(item.measures)
    nnd_all = nearest_neighbour(a.centroid)
    nnd_class = {}
    for label in sorted(set(a.labels.tolist())):
        mask = a.labels == label
        nnd_class[label] = nearest_neighbour(a.centroid[mask])
    sites = _site_mask(a.labels)
    if not sites.any():  # the usual case: no second KD-tree
        groups = {"particles": nnd_all, "single_sites": np.zeros(0)}
    elif sites.all():
        groups = {"particles": np.zeros(0), "single_sites": nnd_all}
    else:
        groups = {"particles": nearest_neighbour(a.centroid[~sites]),
                  "single_sites": nearest_neighbour(a.centroid[sites])}
    h, w = item.image_shape[:2]
    region = float(item.region_area_px) if item.region_area_px else float(h * w)
    return a, nnd_all, nnd_class, region, groups


def _sites_apart(
    out: dict, d: np.ndarray, area: np.ndarray, labels: np.ndarray, groups: dict[str, np.ndarray],
    region: float, nm: float | None, metal: Metal | None, sizes: bool = True,
) -> None:
    """Dispersion of the whole set when it holds no single sites; with single sites and particles both
    present a `particles` block (dispersion from particles only) and a `single_sites` block (count per
    area, nearest-neighbour distances among sites) instead."""
    sites = _site_mask(labels)
    if not sites.any():
        with_dispersion(out, metal)
    if sites.all() or not sites.any():
        return
    for group, members, group_metal in (("particles", ~sites, metal), ("single_sites", sites, None)):
        names = set(labels[members].tolist())
        if len(names) == 1:  # one class: its block already (same objects, same distances)
            out[group] = dict(out["classes"][names.pop()])
        else:
            out[group] = _block(d[members], area[members], groups[group], region, nm, group_metal, sizes)


def _with_classes(
    prepared: Prepared, nm: float | None, metal: Metal | None = None
) -> dict:
    a, nnd_all, nnd_class, region, groups = prepared
    out = _block(a.d_px, a.area_px, nnd_all, region, nm)
    labels = sorted(set(a.labels.tolist()))
    out["counts"] = {label: int((a.labels == label).sum()) for label in labels}
    out["classes"] = {}
    for label in labels:
        mask = a.labels == label
        out["classes"][label] = _block(a.d_px[mask], a.area_px[mask], nnd_class[label], region, nm,
                                       None if is_single_site(label) else metal)
    _sites_apart(out, a.d_px, a.area_px, a.labels, groups, region, nm, metal)
    out["nm_per_px"] = nm
    out["region_area_px"] = region
    if nm:
        out["region_area_um2"] = region * (nm / 1000.0) ** 2
    return out


def image_stats(
    measures: list[ObjectMeasure] | MeasureArrays,
    image_shape: tuple[int, ...],
    nm_per_px: float | None = None,
    region_area_px: float | None = None,
    metal: Metal | None = None,
) -> dict:
    """Statistics of one image: totals at the top level, the same per class under 'classes'; with a
    metal and a scale also its dispersion (of the particles, single sites left out)."""
    item = ImageMeasures("image", measures, image_shape, nm_per_px, region_area_px)
    out = _with_classes(_prepared(item), nm_per_px, metal)
    out["image_width_px"], out["image_height_px"] = int(image_shape[1]), int(image_shape[0])
    return out


def pooled_stats(items: Sequence[ImageMeasures | tuple], metal: Metal | None = None) -> dict:
    """The same tables pooled over images: all objects together, density over the summed area.

    nm values appear only when every image has the same scale (otherwise sizes in nm are pooled from
    per-object nm values where all images are scaled, and density is per um^2 then too).
    """
    prepared = []
    for item in items:
        if not isinstance(item, ImageMeasures):
            item = ImageMeasures(f"image{len(prepared) + 1}", *item)
        prepared.append((item, *_prepared(item)))
    scales = [it.nm_per_px for it, *_ in prepared]
    all_scaled = bool(prepared) and all(s for s in scales)

    def pooled(scaled: bool, sizes: bool = True) -> dict:
        # scaled: every image's values converted with its own nm/px, pooled as if 1 px were 1 nm
        parts_d, parts_area, parts_nnd, labels, region = [], [], [], [], 0.0
        class_nnd: dict[str, list[np.ndarray]] = {}
        group_nnd: dict[str, list[np.ndarray]] = {}
        for item, a, nnd_all, nnd_class, reg, groups in prepared:
            k = float(item.nm_per_px) if scaled else 1.0
            parts_d.append(a.d_px * k)
            parts_area.append(a.area_px * k * k)
            parts_nnd.append(nnd_all * k)
            region += reg * k * k
            labels.append(a.labels)
            for label, v in nnd_class.items():
                class_nnd.setdefault(label, []).append(v * k)
            for group, v in groups.items():
                group_nnd.setdefault(group, []).append(v * k)
        d = np.concatenate(parts_d) if parts_d else np.zeros(0)
        area = np.concatenate(parts_area) if parts_area else np.zeros(0)
        nnd = np.concatenate(parts_nnd) if parts_nnd else np.zeros(0)
        lab = np.concatenate(labels) if labels else np.zeros(0, dtype=object)
        nm = 1.0 if scaled else None
        out = _block(d, area, nnd, region, nm, sizes=sizes)
        names = sorted(set(lab.tolist()))
        out["counts"] = {label: int((lab == label).sum()) for label in names}
        out["classes"] = {
            label: _block(d[lab == label], area[lab == label], np.concatenate(class_nnd[label]), region, nm,
                          None if is_single_site(label) or not scaled else metal, sizes)
            for label in names
        }
        _sites_apart(out, d, area, lab, {g: np.concatenate(v) for g, v in group_nnd.items()}, region, nm,
                     metal if scaled else None, sizes)
        out["region_area_px"] = region
        return out

    out = pooled(False, sizes=not all_scaled)  # scaled: the size numbers come in nm below
    if all_scaled:
        nm_out = pooled(True)
        # unit-free numbers of the set as read in nm (fit, precision, dispersion)
        keep = ("density", "density_unit", "lognorm_sigma", "precision_mean", "n_for_5pct", "dispersion",
                "metal", "metal_v_m_nm3")
        groups = [g for g in ("particles", "single_sites") if g in out]
        for block, nm_block in [
            (out, nm_out),
            *((out["classes"][k], nm_out["classes"][k]) for k in out["classes"]),
            *((out[g], nm_out[g]) for g in groups),
        ]:
            for key, value in nm_block.items():
                if key.endswith(("_nm", "_nm2")) or key in keep:
                    block[key] = value
        out["region_area_um2"] = nm_out["region_area_px"] / 1e6
    out["n_images"] = len(prepared)
    out["images"] = [it.name for it, *_ in prepared]
    out["nm_per_px"] = scales[0] if all_scaled and len(set(scales)) == 1 else None
    return out


def _is_scaled(summary: Mapping) -> bool:
    return bool(summary.get("nm_per_px")) or summary.get("mean_d_nm") is not None


def _pool_d(parts: list[tuple[int, float | None, float | None]]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of the union, from each part's (n, mean, sample std)."""
    used = [(n, float(m), float(s or 0.0)) for n, m, s in parts if n > 0 and m is not None]
    total = sum(n for n, _, _ in used)
    if total == 0:
        return None, None
    mean = sum(n * m for n, m, _ in used) / total
    if total == 1:
        return mean, 0.0  # as _dist: one object has no spread
    # within-image squares (n-1)s^2 plus between-image squares n(m-M)^2: the union's sum of squares
    squares = sum((n - 1) * s * s + n * (m - mean) ** 2 for n, m, s in used)
    return mean, math.sqrt(max(squares, 0.0) / (total - 1))


def _pool_sauter(parts: list[tuple[int, float | None, float | None, float | None]]) -> float | None:
    """d_s of the union from each part's (n, mean, sample std, d_s): sum d^2 = (n-1) s^2 + n m^2,
    sum d^3 = d_s * sum d^2, so d_s = sum(d_s,i S2_i) / sum(S2_i), exactly."""
    used = [(n, float(m), float(s or 0.0), ds) for n, m, s, ds in parts if n > 0 and m is not None]
    if not used or any(ds is None for *_, ds in used):
        return None
    s2 = [(n - 1) * s * s + n * m * m for n, m, s, _ in used]
    total = sum(s2)
    return sum(float(ds) * w for (*_, ds), w in zip(used, s2, strict=True)) / total if total > 0 else None


def pool_summaries(summaries: Sequence[Mapping], metal: Metal | None = None) -> dict:
    """Pool per-image summaries (image_stats' dicts) without their objects: n_images, n_objects,
    counts, and mean/std of D (sample std, ddof=1) and the Sauter mean d_s in px, and in nm when every
    image is scaled; how sure the mean is (precision_mean, n_for_5pct) and, with a metal and nm, the
    dispersion.

    Exactly what pooled_stats gives for the same objects, for those keys."""
    out: dict = {"n_images": len(summaries), "n_objects": 0, "counts": {}}
    for s in summaries:
        out["n_objects"] += int(s.get("n_objects") or 0)
        for label, count in (s.get("counts") or {}).items():
            out["counts"][label] = out["counts"].get(label, 0) + int(count)
    units = ("px", "nm") if summaries and all(_is_scaled(s) for s in summaries) else ("px",)
    for unit in units:
        parts = [
            (int(s.get("n_objects") or 0), s.get(f"mean_d_{unit}"), s.get(f"std_d_{unit}")) for s in summaries
        ]
        out[f"mean_d_{unit}"], out[f"std_d_{unit}"] = _pool_d(parts)
        sauters = [s.get(f"sauter_d_{unit}") for s in summaries]
        sauter = _pool_sauter([(*part, ds) for part, ds in zip(parts, sauters, strict=True)])
        if sauter is not None:
            out[f"sauter_d_{unit}"] = sauter
    unit = units[-1]
    if out["n_objects"] > 1:
        mean, sd = out[f"mean_d_{unit}"], out[f"std_d_{unit}"]
        out["precision_mean"] = relative_precision(out["n_objects"], mean, sd)
        out["n_for_5pct"] = particles_needed(mean, sd)
    if any(s.get("single_sites") for s in summaries):  # sizes mixed with sites: no dispersion of them
        return out
    return with_dispersion(out, metal)
