"""The catalysis numbers of a summary (measures.stats / measures.sizes) in words and as a table:
weighted means with their intervals, how sure the mean is, the log-normal fit, dispersion, single sites
beside particles. Formats only: every number comes computed in the summary."""

from __future__ import annotations

from collections.abc import Mapping

from core.i18n import N_, NP_, Text, render
from measures.sizes import TARGET_PRECISION

BERGERET = "Bergeret & Gallezot 2008"


UNIT_TEXT = {"nm": N_("nm"), "px": N_("px")}


def unit_of(summary: Mapping) -> str:
    """nm when the summary's sizes are scaled, else px."""
    return "nm" if summary.get("mean_d_nm") is not None else "px"


def _ci(block: Mapping, key: str) -> str:
    ci = block.get(key)
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "–"


def precision_text(block: Mapping, noun: str = "particles") -> Text | None:
    """ "41 particles: mean known to ±9 %; about 130 would give ±5 %" (or: "... already within ±5 %")."""
    n, rel, need = int(block.get("n_objects") or 0), block.get("precision_mean"), block.get("n_for_5pct")
    if rel is None or need is None:
        return None
    pct = 100 * rel
    if rel <= TARGET_PRECISION:
        return NP_("{n} object: mean known to ±{pct:.1f} %, within ±5 %",
                   "{n} objects: mean known to ±{pct:.1f} %, within ±5 %", n=n, pct=pct)
    return NP_("{n} object: mean known to ±{pct:.0f} %; about {need} would give ±5 %",
               "{n} objects: mean known to ±{pct:.0f} %; about {need} would give ±5 %",
               n=n, pct=pct, need=need)


def size_texts(block: Mapping) -> list[Text]:
    """Weighted means with 95 % intervals, p10-p90, how sure, the log-normal fit and dispersion."""
    unit = unit_of(block)
    if block.get(f"sauter_d_{unit}") is None:
        return []
    lines = [
        N_("d_n {dn:.2f} {unit} (95 % CI {ci_n}), d_s {ds:.2f} {unit} (95 % CI {ci_s}), d_v {dv:.2f} {unit}",
           dn=block[f"mean_d_{unit}"], ds=block[f"sauter_d_{unit}"], dv=block[f"volume_d_{unit}"],
           unit=UNIT_TEXT[unit],
           ci_n=_ci(block, f"ci95_mean_d_{unit}"), ci_s=_ci(block, f"ci95_sauter_d_{unit}")),
        N_("median {median:.2f} {unit}, sd {sd:.2f} {unit}, p10–p90 {p10:.2f}–{p90:.2f} {unit}",
           median=block[f"median_d_{unit}"], sd=block[f"std_d_{unit}"], p10=block[f"p10_d_{unit}"],
           p90=block[f"p90_d_{unit}"], unit=UNIT_TEXT[unit]),
    ]
    sure = precision_text(block)
    if sure is not None:
        lines.append(sure)
    if block.get(f"lognorm_median_d_{unit}") is not None:
        lines.append(N_("log-normal fit (maximum likelihood): median {median:.2f} {unit}, σ {sigma:.3f}",
                        median=block[f"lognorm_median_d_{unit}"], sigma=block["lognorm_sigma"],
                        unit=UNIT_TEXT[unit]))
    lines += dispersion_texts(block)
    return lines


def dispersion_texts(block: Mapping) -> list[Text]:
    if block.get("dispersion") is None:
        return []
    return [
        N_("dispersion ({metal}) {value:.2f}", metal=block["metal"], value=block["dispersion"]),
        N_("  D = 6 (v_m / a_m) / d_s for spherical particles; v_m {v:.4f} nm³, a_m {a:.4f} nm² ({source})",
           v=block["metal_v_m_nm3"], a=block["metal_a_m_nm2"], source=BERGERET),
    ]


def pooled_texts(pooled: Mapping) -> list[Text]:
    """What measures.stats.pool_summaries adds, in words: d_s, how sure the mean is, dispersion."""
    unit = unit_of(pooled)
    lines: list[Text] = []
    if pooled.get(f"sauter_d_{unit}") is not None:
        ds = pooled[f"sauter_d_{unit}"]
        lines.append(N_("surface-weighted mean d_s = {ds:.3g} {unit}", ds=ds, unit=UNIT_TEXT[unit]))
    sure = precision_text(pooled)
    if sure is not None:
        lines.append(sure)
    return lines + dispersion_texts(pooled)


def sites_texts(summary: Mapping) -> list[Text]:
    """Particles and single sites side by side: count, density and spacing of the sites."""
    sites = summary.get("single_sites")
    if not sites:
        return []
    particles = summary["particles"]
    unit = "nm" if sites.get("mean_d_nm") is not None else "px"
    area = N_("per µm²") if sites.get("density_unit") == "per um2" else N_("per Mpx")
    nnd = sites.get(f"mean_nnd_{unit}")
    return [
        NP_("particles: {n} object, density {density:.4g} {area}",
            "particles: {n} objects, density {density:.4g} {area}", n=particles["n_objects"],
            density=particles["density"] or 0.0, area=area),
        NP_("single sites: {n} object, density {density:.4g} {area}, nearest neighbour {nnd} {unit}",
            "single sites: {n} objects, density {density:.4g} {area}, nearest neighbour {nnd} {unit}",
            n=sites["n_objects"], density=sites["density"] or 0.0, area=area,
            nnd="–" if nnd is None else f"{nnd:.2f}", unit=UNIT_TEXT[unit]),
    ]


def number_lines(summary: Mapping, lang: str) -> list[str]:
    """The summary text's lines for these numbers: of the particles when single sites are apart."""
    sized = summary.get("particles") or summary
    lines = [render(lang, text) for text in size_texts(sized)]
    lines += [render(lang, text) for text in sites_texts(summary)]
    return lines


# ---------------------------------------------------------------- the table (CSV, workbook)

ROW_KEYS = (  # (quantity, key pattern, unit pattern); {u} is nm or px
    ("objects", "n_objects", ""),
    ("number mean d_n", "mean_d_{u}", "{u}"),
    ("d_n 95% CI low", "ci95_mean_d_{u}.0", "{u}"),
    ("d_n 95% CI high", "ci95_mean_d_{u}.1", "{u}"),
    ("surface (Sauter) mean d_s", "sauter_d_{u}", "{u}"),
    ("d_s 95% CI low", "ci95_sauter_d_{u}.0", "{u}"),
    ("d_s 95% CI high", "ci95_sauter_d_{u}.1", "{u}"),
    ("volume mean d_v", "volume_d_{u}", "{u}"),
    ("median", "median_d_{u}", "{u}"),
    ("standard deviation", "std_d_{u}", "{u}"),
    ("p10", "p10_d_{u}", "{u}"),
    ("p90", "p90_d_{u}", "{u}"),
    ("mean known to +-", "precision_mean", "fraction"),
    ("objects for +-5%", "n_for_5pct", ""),
    ("log-normal median", "lognorm_median_d_{u}", "{u}"),
    ("log-normal sigma", "lognorm_sigma", ""),
    ("dispersion", "dispersion", "fraction"),
    ("density", "density", "density_unit"),
    ("coverage", "coverage", "fraction"),
    ("mean nearest-neighbour distance", "mean_nnd_{u}", "{u}"),
)


def value_of(block: Mapping, key: str):
    name, _, index = key.partition(".")
    value = block.get(name)
    if index and value is not None:
        value = value[int(index)]
    return value


def summary_rows(summary: Mapping) -> list[list]:
    """(group, quantity, value, unit) rows: the whole set, particles and single sites when apart, each
    class; the metal's name under `dispersion`."""
    u = unit_of(summary)
    groups: list[tuple[str, Mapping]] = [("all", summary)]
    groups += [(g.replace("_", " "), summary[g]) for g in ("particles", "single_sites") if summary.get(g)]
    groups += [(f"class {label}", block) for label, block in (summary.get("classes") or {}).items()]
    rows: list[list] = []
    for group, block in groups:
        for quantity, key, unit in ROW_KEYS:
            value = value_of(block, key.format(u=u))
            if value is None:
                continue
            unit_text = str(block.get("density_unit", "")) if unit == "density_unit" else unit.format(u=u)
            if key == "dispersion":
                quantity = f"dispersion ({block.get('metal')}, spheres, {BERGERET})"
            rows.append([group, quantity, value, unit_text])
    return rows
