"""The texts under results: one image's caption, the pooled caption over many (/stats and the zip
of a big set, composed once here from annotations.stats), a model's metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from annotations.stats import pool_summaries
from bot.i18n import t


def fmt_num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"


def metrics_text(metrics: dict[str, Any]) -> str:
    keys = [k for k in ("f1", "precision", "recall", "segm_mAP", "bbox_mAP", "mAP", "ap50") if k in metrics]
    keys += [k for k, v in metrics.items() if k not in keys and isinstance(v, int | float)]
    shown = [f"{k} {fmt_num(metrics[k])}" for k in keys[:3]]
    return f" ({', '.join(shown)})" if shown else ""


def counts_text(counts: dict[str, Any]) -> str:
    """Per class, unless the only class is the default one."""
    if not counts or len(counts) < 2 and not any(k not in ("object", "particle") for k in counts):
        return ""
    return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")"


def size_of(summary: Mapping[str, Any]) -> tuple[Any, Any, str]:
    """Mean and std of D, in nm when the summary has them, else in px."""
    if summary.get("mean_d_nm") is not None:
        return summary.get("mean_d_nm"), summary.get("std_d_nm"), "nm"
    return summary.get("mean_d_px"), summary.get("std_d_px"), "px"


def caption_for(result: dict[str, Any], lang: str) -> str:
    s = result["summary"]
    mean, std, unit = size_of(s)
    density = s.get("density")
    dens = ""
    if density is not None:
        dens = f"\ndensity {fmt_num(density)} {s.get('density_unit', '')}".rstrip()
    return t(
        lang,
        "predict_caption",
        name=result["name"],
        n=s.get("n_objects", 0),
        counts=counts_text(s.get("counts") or {}),
        size="" if mean is None else t(lang, "size_line", mean=fmt_num(mean), std=fmt_num(std), unit=unit),
        density=dens,
    )[:1024]


def pooled_caption(lang: str, key: str, summaries: Sequence[Mapping[str, Any]]) -> str:
    """Text `key` ("stats" or "predict_big") with the images' objects pooled: count per class and
    mean D ± sample std, in nm when every image is scaled."""
    pooled = pool_summaries(summaries)
    unit = "nm" if "mean_d_nm" in pooled else "px"
    return t(
        lang,
        key,
        n=pooled["n_images"],
        total=pooled["n_objects"],
        counts=counts_text(pooled["counts"]),
        mean=fmt_num(pooled[f"mean_d_{unit}"]),
        std=fmt_num(pooled[f"std_d_{unit}"]),
        unit=unit,
    )
