"""The texts under results: one image's caption, the pooled caption over many (/stats and the zip
of a big set, composed once here from measures.stats), a trained model's figures (the ready
message and /models); and the summary of images sent (their scale and what is left out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.i18n import t
from core.i18n import N_, render
from measures.sizes import find_metal, with_dispersion
from measures.stats import pool_summaries
from outputs.numbers import dispersion_texts, pooled_texts, precision_text
from segmodel.options import HOLDOUT_MIN_OBJECTS


def fmt_num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"


def counts_text(counts: dict[str, Any]) -> str:
    """Per class, unless the only class is the default one."""
    if not counts or len(counts) < 2 and not any(k not in ("object", "particle") for k in counts):
        return ""
    return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")"

DENSITY_UNITS = {"per um2": N_("per µm²"), "per Mpx": N_("per Mpx")}  # measures.stats' density_unit


def size_of(summary: Mapping[str, Any]) -> tuple[Any, Any, str]:
    """Mean and std of D, in nm when the summary has them, else in px."""
    if summary.get("mean_d_nm") is not None:
        return summary.get("mean_d_nm"), summary.get("std_d_nm"), "nm"
    return summary.get("mean_d_px"), summary.get("std_d_px"), "px"


def caption_for(result: dict[str, Any], lang: str, metal: str | None = None) -> str:
    """One result's caption; with the user's metal (/metal) and a scale, its particles' dispersion."""
    s = result["summary"]
    mean, std, unit = size_of(s)
    density = s.get("density")
    dens = ""
    if density is not None:
        per = DENSITY_UNITS.get(s.get("density_unit") or "", s.get("density_unit") or "")
        dens = t(lang, "density_line", density=fmt_num(density), unit=render(lang, per)).rstrip()
    factor = s.get("scale_factor")  # recognised on the image shrunk by this (inference/scale.py)
    sure = precision_text(s)  # "41 objects: mean known to ±9 %; about 130 would give ±5 %"
    size = "" if mean is None else t(lang, "size_line", mean=fmt_num(mean), std=fmt_num(std), unit=unit)
    if size and sure is not None:
        size += "\n" + render(lang, sure)
    sized = with_dispersion(dict(s.get("particles") or s), find_metal(metal))
    if size and sized.get("dispersion") is not None:
        size += "\n" + render(lang, dispersion_texts(sized)[0])
    return t(
        lang,
        "predict_caption",
        name=result["name"],
        n=s.get("n_objects", 0),
        counts=counts_text(s.get("counts") or {}),
        size=size,
        density=dens,
        scaled=t(lang, "scaled_line", factor=fmt_num(factor)) if factor else "",
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


def numbers_caption(lang: str, summaries: Sequence[Mapping[str, Any]], metal: str | None = None) -> str:
    """/stats' lines under the pooled caption: d_s, how sure the mean is and, with the user's metal,
    the dispersion (measures.stats.pool_summaries, in words by outputs.numbers)."""
    pooled = pool_summaries(summaries, find_metal(metal))
    return "\n".join(render(lang, text) for text in pooled_texts(pooled))


# ---------------------------------------------------------------- a trained model's figures

FEW_LABELS = 10  # below this many labelled objects a class is learned unreliably (hint to label more)


def duration_text(lang: str, seconds: float) -> str:
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    if h:
        return t(lang, "duration_h", h=h, m=m)
    return t(lang, "duration_min", m=m, s=sec) if m else t(lang, "duration_s", s=sec)


def device_text(metrics: dict[str, Any]) -> str:
    device = str(metrics.get("device") or "")
    if device.startswith("cuda"):
        name = metrics.get("device_name")
        return f"GPU ({name})" if name else "GPU"
    return device.upper()


def model_figures(lang: str, metrics: dict[str, Any], short: bool = False) -> list[str]:
    """What a scientist can judge a model by: what it learned from, the held-out crop's precision and
    recall, the training time and device, classes with few labels. `short`: phrases for /models.

    Models trained before these figures were kept have only final_loss (meaningless to a user) and
    perhaps the held-out scores: they get the held-out line or nothing."""
    pre = "short_" if short else ""
    lines = []
    data = metrics.get("trained_on") if isinstance(metrics.get("trained_on"), dict) else None
    counts: dict[str, int] = dict(data.get("counts") or {}) if data else {}
    if data:
        per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
        lines.append(t(lang, pre + "fig_learned", n_objects=int(data.get("n_objects", 0)),
                       n_crops=int(data.get("n_crops", 0)), counts=per_class))
    start = fine_tune_figure(lang, metrics.get("fine_tune"), pre) or base_start_figure(lang, metrics, pre)
    if start:
        lines.append(start)
    hold = metrics.get("holdout")
    if isinstance(hold, dict) and "precision" in hold and "recall" in hold:
        line = t(lang, pre + "fig_holdout", n=hold.get("n_gt", "?"), precision=f"{hold['precision']:.2f}",
                 recall=f"{hold['recall']:.2f}")
        if not short and all(isinstance(hold.get(k), float) for k in ("f1", "f1_low", "f1_high")):
            line += " " + t(lang, "fig_holdout_range", f1=f"{hold['f1']:.2f}", low=f"{hold['f1_low']:.2f}",
                            high=f"{hold['f1_high']:.2f}")
        if not short:
            line += " " + t(lang, "fig_holdout_caveat")
        lines.append(line)
    elif data:  # a new model without a held-out crop: say why there is no check
        lines.append(t(lang, pre + "fig_no_holdout", min_objects=HOLDOUT_MIN_OBJECTS))
    if isinstance(metrics.get("train_seconds"), int | float):
        lines.append(t(lang, pre + "fig_time", time=duration_text(lang, metrics["train_seconds"]),
                       device=device_text(metrics) or "?"))
    few = [f"{k} ({v})" for k, v in counts.items() if v < FEW_LABELS]
    if few:
        lines.append(t(lang, pre + "fig_few", classes=", ".join(few), enough=FEW_LABELS))
    return lines


def base_start_figure(lang: str, metrics: dict[str, Any], pre: str = "") -> str | None:
    """A training that started from the base model (trainer/train.py metrics["start"]), not from scratch."""
    start = metrics.get("start")
    if not isinstance(start, dict) or start.get("from") != "base":
        return None
    return t(lang, pre + "fig_from_base")


def fine_tune_figure(lang: str, note: Any, pre: str = "") -> str | None:
    """A correction's training: fine-tuned from the version it corrects, or why it started afresh
    (jobs/fine_tune.py writes the note)."""
    if not isinstance(note, dict) or "from_version" not in note:
        return None
    version = note["from_version"]
    if "skipped" not in note:
        return t(lang, pre + "fig_fine_tuned", version=version)
    if note["skipped"] == "classes":
        change = [f"+{c}" for c in note.get("added") or []] + [f"-{c}" for c in note.get("dropped") or []]
        return t(lang, pre + "fig_fresh_classes", version=version, classes=", ".join(change))
    return t(lang, pre + "fig_fresh", version=version)


def ready_text(lang: str, version: Any, metrics: dict[str, Any]) -> str:
    """The message when a model is ready."""
    figures = model_figures(lang, metrics)
    return t(lang, "train_done", version=version, figures="".join("\n" + line for line in figures))[:4096]


def model_line_figures(lang: str, metrics: dict[str, Any]) -> str:
    """The same figures for one /models line, compact."""
    figures = model_figures(lang, metrics, short=True)
    return "\n   " + "; ".join(figures) if figures else ""


# The upload summary of images: where each one's scale comes from (the rule of jobs/predict.py: the
# user's scale > the file's own > its scale bar's) and what is left out of recognition.


def _nm(value: float) -> str:
    return f"{value:.3g}"  # as imaging.images.LoadedImage.scale_summary writes it


def scale_text(lang: str, facts: Any, user_scale: float | None) -> str:
    """'scale 0.52 nm/px from the DM4 file's calibration; /scale to change' (facts: files_in.ImageFacts)."""
    if user_scale is not None:
        own = ""
        if facts.nm_per_px:
            own = t(lang, "scale_yours_own", value=_nm(facts.nm_per_px), source=facts.scale_source or "?")
        return t(lang, "scale_yours", value=_nm(user_scale), own=own)
    if not facts.nm_per_px:
        return t(lang, "scale_none")
    text = t(lang, "scale_from", value=_nm(facts.nm_per_px), source=facts.scale_source or "?",
             hint=t(lang, "scale_hint"))
    return f"{text} ({t(lang, 'scale_check')})" if facts.unsure else text


def image_line(lang: str, name: str, facts: Any, user_scale: float | None) -> str:
    line = f"• {name}: {scale_text(lang, facts, user_scale)}"
    if facts.excluded:
        line += "\n  " + t(lang, "scale_left_out", regions="; ".join(render(lang, r) for r in facts.excluded))
    return line


def images_summary(lang: str, named: Sequence[tuple[str, Any]], user_scale: float | None) -> str:
    lines = [t(lang, "images_head")]
    lines += [image_line(lang, name, facts, user_scale) for name, facts in named]
    return "\n".join(lines)


def scale_question(lang: str, name: str, facts: Any) -> str:
    return t(lang, "scale_unsure", name=name, value=_nm(facts.bar_nm_per_px), source=facts.scale_source,
             conf=f"{facts.scale_confidence:.2f}")
