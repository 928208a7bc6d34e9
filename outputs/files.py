"""What the scientist takes home for one image: LabelMe JSON, overlay PNG, per-object CSV, summary
JSON + text, size histograms. Also the pooled tables over several images."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annotations.labelme import write_labelme
from annotations.model import Instance
from core.i18n import N_, NP_, Text, render
from measures.objects import MeasureArrays, measure_arrays
from measures.sizes import Metal, fit_lognormal
from measures.stats import ImageMeasures, image_stats, pooled_stats
from outputs.lab_formats import (
    SetEntry,
    mask_areas,
    rasterise,
    write_label_tiff,
    write_result_set,
    write_roi_zip,
)
from outputs.numbers import number_lines, summary_rows
from outputs.overlay import class_colours, render_pictures
from outputs.tables import csv_columns, csv_rows, usable_instances, write_csv


def summary_for(
    image: np.ndarray,
    instances: list[Instance],
    nm_per_px: float | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    region_area_px: float | None = None,
    arrays: MeasureArrays | None = None,
    metal: Metal | None = None,
) -> dict:
    """The summary dict: n_objects, counts, mean/std/median/percentiles of D (px, nm), density, coverage,
    weighted means, intervals, log-normal fit, dispersion with a metal..."""
    a = arrays if arrays is not None else measure_arrays(instances)
    out = {"name": name, "title": title}
    out.update(image_stats(a, image.shape, nm_per_px, region_area_px, metal))
    return out


# ---------------------------------------------------------------- overlay


def render_overlay(
    image: np.ndarray,
    instances: list[Instance],
    nm_per_px: float | None = None,
    *,
    show_ids: bool | None = None,
    title: str | None = None,
) -> np.ndarray:
    """The overlay picture alone (outputs.overlay.render_pictures has the inset and the id boxes)."""
    pictures = render_pictures(image, instances, nm_per_px, show_ids=show_ids, title=title, inset=False)
    return pictures.overlay.rgb


def write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover
        raise OSError(f"could not encode {path.name}")
    Path(path).write_bytes(buf.tobytes())
    return Path(path)


# ---------------------------------------------------------------- histograms


def bin_edges(values: np.ndarray, log: bool = False) -> np.ndarray:
    """Rice rule (2 n^(1/3) bins, 1..40): a handful of bins for a handful of objects, more for thousands."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return np.array([0.0, 1.0])
    k = 1 if n < 2 else int(np.clip(np.ceil(2 * n ** (1 / 3)), 2, 40))
    lo, hi = float(v.min()), float(v.max())
    if log:
        if hi <= lo:
            lo, hi = lo / 1.2, hi * 1.2
        return np.geomspace(lo, hi, k + 1)
    if hi <= lo:
        half = max(abs(lo) * 0.05, 0.5)
        lo, hi = lo - half, hi + half
    return np.linspace(lo, hi, k + 1)


def render_histogram(
    path: Path,
    a: MeasureArrays,
    nm_per_px: float | None = None,
    *,
    log: bool = False,
    title: str | None = None,
    summary: dict | None = None,
) -> Path:
    """D and area histograms per class (matplotlib, Agg canvas: no display, no pyplot state), the
    fitted log-normals, and the summary's weighted means (and dispersion) above the D panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    unit_d, unit_a = ("nm", "nm²") if nm_per_px else ("px", "px²")
    k = nm_per_px or 1.0
    d = a.d_px * k
    area = a.area_px * k * k
    labels = sorted(set(a.labels.tolist()))
    colours = class_colours(labels)
    for pos, (values, xlabel) in enumerate(((d, f"D, {unit_d}"), (area, f"area, {unit_a}")), 1):
        ax = fig.add_subplot(1, 2, pos)
        edges = bin_edges(values, log)
        for label in labels:
            sel = values[a.labels == label]
            if log:
                sel = sel[sel > 0]
            colour = tuple(c / 255 for c in colours[label])
            ax.hist(
                sel,
                bins=edges,
                histtype="stepfilled" if len(labels) == 1 else "step",
                color=colour,
                alpha=0.8,
                linewidth=1.5,
                label=f"{label} (n={len(sel)})",
            )
        if pos == 1:
            _fitted_curves(ax, values, a.labels, labels, colours, edges, log, unit_d)
            if summary is not None:
                ax.set_title(means_line(summary.get("particles") or summary), fontsize=9)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        if labels:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no objects", ha="center", va="center", transform=ax.transAxes)
        ax.yaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def fitted_curve(ax, values: np.ndarray, edges: np.ndarray, log: bool, colour, label: str) -> None:
    """The maximum-likelihood log-normal (measures.sizes.fit_lognormal) as expected counts per bin:
    n * pdf(x) * bin width (linear bins), n * x * pdf(x) * ln(ratio) (logarithmic bins)."""
    fit = fit_lognormal(values)
    if fit is None or len(edges) < 2:
        return
    x = np.geomspace(edges[0], edges[-1], 200) if log else np.linspace(max(edges[0], 1e-9), edges[-1], 200)
    width = x * np.log(edges[1] / edges[0]) if log else np.full_like(x, edges[1] - edges[0])
    ax.plot(x, len(values) * fit.pdf(x) * width, color=colour, linestyle="--", linewidth=1.2,
            label=f"{label}log-normal: median {fit.median:.3g}, σ {fit.sigma:.2f}")


def means_line(block: dict) -> str:
    """'d_n 2.77 · d_s 3.22 · d_v 3.39 nm · D(Pt) 0.35' (pictures' texts are English)."""
    unit = "nm" if block.get("mean_d_nm") is not None else "px"
    if block.get(f"sauter_d_{unit}") is None:
        return ""
    line = (f"d_n {block[f'mean_d_{unit}']:.3g} · d_s {block[f'sauter_d_{unit}']:.3g} · "
            f"d_v {block[f'volume_d_{unit}']:.3g} {unit}")
    if block.get("dispersion") is not None:
        line += f" · D({block['metal']}) {block['dispersion']:.2f}"
    return line


def _fitted_curves(ax, values, classes, labels, colours, edges, log, unit) -> None:
    """One fitted curve per class (of 5 objects or more): dashed, in the class colour."""
    for label in labels:
        sel = values[classes == label]
        sel = sel[sel > 0]
        if len(sel) >= 5:
            prefix = f"{label} " if len(labels) > 1 else ""
            fitted_curve(ax, sel, edges, log, tuple(c / 255 for c in colours[label]), prefix)


# ---------------------------------------------------------------- summary text


def _diameter_lines(summary: dict, lang: str) -> list[str]:
    """Mean D (with the spread) overall and, for several classes, per class: in nm where known."""
    in_nm = summary.get("mean_d_nm") is not None
    unit = N_("nm") if in_nm else N_("px")
    suffix = "nm" if in_nm else "px"
    lines = [render(lang, N_("mean D {mean:.2f} ± {std:.2f} {unit} (median {median:.2f})", unit=unit,
                             mean=summary[f"mean_d_{suffix}"], std=summary[f"std_d_{suffix}"],
                             median=summary[f"median_d_{suffix}"]))]
    classes = summary.get("classes", {})
    for label, block in classes.items() if len(classes) > 1 else ():
        d = block.get("mean_d_nm") if block.get("mean_d_nm") is not None else block.get("mean_d_px")
        if d is not None:
            line = N_("{label}: D {d:.2f} {unit} (n={n})", label=label, d=d, unit=unit, n=block["n_objects"])
            lines.append("  " + render(lang, line))
    return lines


def _spatial_lines(summary: dict) -> list[Text]:
    """Density, coverage and the nearest-neighbour distance, where measured."""
    lines: list[Text] = []
    if summary.get("density") is not None:
        if summary["density_unit"] == "per um2":
            lines.append(N_("density {value:.4g} per µm²", value=summary["density"]))
        else:
            lines.append(N_("density {value:.4g} per Mpx", value=summary["density"]))
    if summary.get("coverage") is not None:
        lines.append(N_("coverage {value:.1f} %", value=100 * summary["coverage"]))
    nnd_nm, nnd_px = summary.get("mean_nnd_nm"), summary.get("mean_nnd_px")
    if nnd_nm is not None or nnd_px is not None:
        value, unit = (nnd_nm, N_("nm")) if nnd_nm is not None else (nnd_px, N_("px"))
        lines.append(N_("mean nearest-neighbour distance {value:.2f} {unit}", value=value, unit=unit))
    return lines


def format_stats(summary: dict, lang: str = "en") -> str:
    """A short human summary of image_stats/pooled_stats output, in `lang`."""
    n = summary["n_objects"]
    head = summary.get("title") or summary.get("name")
    lines = [head] if head else []
    counts = ", ".join(f"{k} {v}" for k, v in summary.get("counts", {}).items())
    if counts:
        lines.append(render(lang, NP_("{n} object: {counts}", "{n} objects: {counts}", n=n, counts=counts)))
    else:
        lines.append(render(lang, NP_("{n} object", "{n} objects", n=n)))
    if n:
        lines += _diameter_lines(summary, lang)
        lines += number_lines(summary, lang)
    lines += [render(lang, line) for line in _spatial_lines(summary)]
    return "\n".join(lines)


# ---------------------------------------------------------------- all outputs


def write_outputs(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    instances: list[Instance],
    nm_per_px: float | None = None,
    title: str | None = None,
    *,
    region_area_px: float | None = None,
    show_ids: bool | None = None,
    log_hist: bool = False,
    lang: str = "en",
    image_name: str | None = None,
    crops: list | None = None,
    excluded: Sequence | None = None,
    scale_source: str | Text | None = None,
    metal: Metal | None = None,
) -> dict[str, Path]:
    """Write every output for one image; returns {role: path} for labelme, overlay, csv, summary,
    histogram, text, labels (ImageJ label TIFF), rois (ImageJ ROI set), and inset when the objects are
    too small to judge on the whole overlay. `crops` (optional) are kept as crop rectangles in the
    LabelMe file; `excluded` (info bar regions) and `scale_source` are recorded in the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    instances, dropped = usable_instances(instances, image.shape)
    a = measure_arrays(instances)
    labels = rasterise(instances, image.shape)
    a.mask_area_px = mask_areas(labels, len(instances))
    paths = {
        "labelme": out_dir / f"{stem}.json",
        "overlay": out_dir / f"{stem}_overlay.png",
        "csv": out_dir / f"{stem}_objects.csv",
        "summary": out_dir / f"{stem}_summary.json",
        "histogram": out_dir / f"{stem}_hist.png",
        "text": out_dir / f"{stem}_summary.txt",
        "labels": out_dir / f"{stem}_labels.tif",
        "rois": out_dir / f"{stem}_rois.zip",
    }
    write_label_tiff(paths["labels"], labels, nm_per_px)
    del labels
    write_roi_zip(paths["rois"], instances)
    write_labelme(
        paths["labelme"], image, instances, image_name or f"{stem}.png", nm_per_px=nm_per_px, crops=crops
    )
    pictures = render_pictures(image, instances, nm_per_px, show_ids=show_ids, title=title)
    write_png(paths["overlay"], pictures.overlay.rgb)
    if pictures.inset is not None:  # small objects: a zoomed look at the densest region
        paths["inset"] = write_png(out_dir / f"{stem}_inset.png", pictures.inset.rgb)
    write_csv(paths["csv"], a, nm_per_px)
    summary = summary_for(
        image, instances, nm_per_px, name=stem, title=title, region_area_px=region_area_px, arrays=a,
        metal=metal,
    )
    summary["dropped_invalid"] = dropped
    summary["scale_source"] = None if scale_source is None else str(scale_source)  # files are English
    summary["excluded_regions"] = [r.as_dict() if hasattr(r, "as_dict") else list(r) for r in excluded or []]
    paths["summary"].write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    render_histogram(paths["histogram"], a, nm_per_px, log=log_hist, title=title or stem, summary=summary)
    paths["text"].write_text(format_stats(summary, lang) + "\n", encoding="utf-8")
    return paths


def write_pooled(
    out_dir: Path,
    items: Sequence[tuple[str, MeasureArrays, tuple[int, ...], float | None, float | None]],
    *,
    log_hist: bool = False,
    stem: str = "pooled",
    instances: Sequence[list[Instance]] | None = None,
    file_names: Sequence[str] | None = None,
    metal: Metal | None = None,
    lang: str = "en",
) -> dict[str, Path]:
    """Pooled CSV (with an image column), summary JSON/text/CSV and histogram over several images.

    items: (name, arrays, image_shape, nm_per_px, region_area_px) per image. With `instances` (the
    outlines of each item, in order) also the set's COCO JSON and Excel workbook ({stem}_coco.json,
    {stem}.xlsx; `file_names` are the images' names for COCO, default name + ".png").
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = pooled_stats([ImageMeasures(n, a, shape, nm, reg) for n, a, shape, nm, reg in items], metal)
    summary["name"] = f"pooled over {len(items)} images"
    paths = {
        "csv": out_dir / f"{stem}_objects.csv",
        "summary": out_dir / f"{stem}_summary.json",
        "histogram": out_dir / f"{stem}_hist.png",
        "text": out_dir / f"{stem}_summary.txt",
        "table": out_dir / f"{stem}_summary.csv",
    }
    all_scaled = all(nm for _, _, _, nm, _ in items)
    with_mask = bool(items) and all(a.mask_area_px is not None for _, a, _, _, _ in items)
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(csv_columns(all_scaled, with_image=True, with_mask=with_mask))
        for name, a, _, nm, _ in items:
            if not with_mask:
                a = _without_mask(a)
            writer.writerows(csv_rows(a, nm if all_scaled else None, image=name))
    paths["summary"].write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    paths["text"].write_text(format_stats(summary, lang) + "\n", encoding="utf-8")
    write_summary_csv(paths["table"], summary)
    # histogram in nm when every image is scaled (each with its own scale), else px
    merged = _concat([a for _, a, _, _, _ in items], [nm if all_scaled else 1.0 for _, _, _, nm, _ in items])
    render_histogram(
        paths["histogram"], merged, 1.0 if all_scaled else None, log=log_hist, title=f"{len(items)} images",
        summary=summary,
    )
    if instances is not None:
        names = list(file_names) if file_names is not None else [f"{n}.png" for n, *_ in items]
        entries = [SetEntry(n, f, shape, list(inst), nm, reg)
                   for (n, _, shape, nm, reg), inst, f in zip(items, instances, names, strict=True)]
        paths.update(write_result_set(out_dir, entries, stem=stem, metal=metal))
    return paths


def write_summary_csv(path: Path, summary: dict) -> Path:
    """The set's numbers as group, quantity, value, unit rows (outputs.numbers.summary_rows)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["group", "quantity", "value", "unit"])
        writer.writerows(summary_rows(summary))
    return Path(path)


def _without_mask(a: MeasureArrays) -> MeasureArrays:
    from dataclasses import replace

    return replace(a, mask_area_px=None) if a.mask_area_px is not None else a


def _concat(arrays: Sequence[MeasureArrays], factors: Sequence[float]) -> MeasureArrays:
    def cat(get, power=1):
        parts = [get(a) * (f**power) for a, f in zip(arrays, factors, strict=True)]
        return np.concatenate(parts) if parts else np.zeros(0)

    return MeasureArrays(
        labels=np.concatenate([a.labels for a in arrays]) if arrays else np.zeros(0, dtype=object),
        area_px=cat(lambda a: a.area_px, 2),
        d_px=cat(lambda a: a.d_px),
        centroid=np.concatenate([a.centroid for a in arrays]) if arrays else np.zeros((0, 2)),
        perimeter_px=cat(lambda a: a.perimeter_px),
        circularity=cat(lambda a: a.circularity, 0),
        feret_min_px=cat(lambda a: a.feret_min_px),
        feret_max_px=cat(lambda a: a.feret_max_px),
        bbox=np.concatenate([a.bbox for a in arrays]) if arrays else np.zeros((0, 4)),
        score=cat(lambda a: a.score, 0),
        mask_area_px=(cat(lambda a: a.mask_area_px, 2)
                      if arrays and all(a.mask_area_px is not None for a in arrays) else None),
    )
