"""Two sets compared, as the scientist reads it: the numbers side by side, B/A with its interval, the
tests' p-values in words, one picture (both histograms and ECDFs on one axis, fitted curves), and the
same as a CSV. Formats measures.compare.SetsCompared; computes nothing of its own."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from core.i18n import N_, Text, render
from measures.compare import SetsCompared
from measures.sizes import fit_lognormal
from outputs.numbers import ROW_KEYS, UNIT_TEXT, precision_text, value_of

ALPHA = 0.05  # the conventional level: below it the text says the sets differ


def p_text(p: float) -> str:
    """'p < 0.001' or 'p = 0.034'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def tests_texts(c: SetsCompared) -> list[Text]:
    """The two-sample tests in words (Kolmogorov-Smirnov: any difference of the distributions;
    Mann-Whitney: one set's sizes tending larger)."""
    p_ks, p_mw = c.comparison.ks_p, c.comparison.mw_p
    if p_ks < ALPHA:
        ks = N_("the size distributions differ: {p} (Kolmogorov-Smirnov)", p=p_text(p_ks))
    else:
        ks = N_("no difference of the size distributions shown: {p} (Kolmogorov-Smirnov)", p=p_text(p_ks))
    if p_mw < ALPHA:
        larger = c.name_b if c.comparison.b_tends_larger else c.name_a
        mw = N_("particles in '{name}' tend to be larger: {p} (Mann-Whitney)", name=larger, p=p_text(p_mw))
    else:
        mw = N_("neither set's particles tend to be larger: {p} (Mann-Whitney)", p=p_text(p_mw))
    return [ks, mw]


def ratio_text(c: SetsCompared) -> Text:
    ci = c.comparison.mean_ratio_ci
    return N_("mean size '{b}' / '{a}' = {ratio:.2f} (95 % CI {ci})", a=c.name_a, b=c.name_b,
              ratio=c.comparison.mean_ratio, ci="–" if ci is None else f"{ci[0]:.2f}–{ci[1]:.2f}")


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


SIDE_BY_SIDE = {  # the CSV's quantity (English, as files are) -> its words for the reader
    "objects": N_("objects"),
    "number mean d_n": N_("number mean d_n"),
    "surface (Sauter) mean d_s": N_("surface (Sauter) mean d_s"),
    "volume mean d_v": N_("volume mean d_v"),
    "median": N_("median"),
    "standard deviation": N_("standard deviation"),
    "p10": N_("p10"),
    "p90": N_("p90"),
    "log-normal median": N_("log-normal median"),
    "log-normal sigma": N_("log-normal σ"),
    "dispersion": N_("dispersion"),
}
CI_ROW = "  95% CI"


def table_rows(c: SetsCompared) -> list[list]:
    """(quantity, A, B, unit) rows; intervals as low–high in one cell."""
    rows: list[list] = []
    for quantity, key, unit in ROW_KEYS:
        if quantity not in SIDE_BY_SIDE:
            continue
        a, b = value_of(c.a, key.format(u=c.unit)), value_of(c.b, key.format(u=c.unit))
        if a is None and b is None:
            continue
        rows.append([quantity, a, b, unit.format(u=c.unit)])
        if key in ("mean_d_{u}", "sauter_d_{u}"):
            ci_key = "ci95_mean_d_{u}" if key == "mean_d_{u}" else "ci95_sauter_d_{u}"
            rows.append([CI_ROW, _ci(c.a, ci_key.format(u=c.unit)), _ci(c.b, ci_key.format(u=c.unit)),
                         c.unit])
    return rows


def _ci(block: dict, key: str) -> str:
    ci = block.get(key)
    return "–" if not ci else f"{ci[0]:.3g}–{ci[1]:.3g}"


def _label(c: SetsCompared, quantity: str, unit: str, lang: str) -> str:
    words = "  " + render(lang, N_("95 % CI")) if quantity == CI_ROW else render(lang, SIDE_BY_SIDE[quantity])
    if quantity == "dispersion" and c.a.get("metal"):
        words += f" ({c.a['metal']})"
    if unit in UNIT_TEXT:
        words += ", " + render(lang, UNIT_TEXT[unit])
    return words


def _cells(c: SetsCompared, lang: str) -> list[list[str]]:
    return [[_label(c, r[0], r[3], lang), r[1] if isinstance(r[1], str) else _fmt(r[1]),
             r[2] if isinstance(r[2], str) else _fmt(r[2])] for r in table_rows(c)]


def _verdict(c: SetsCompared, lang: str) -> list[str]:
    lines = [render(lang, ratio_text(c))]
    lines += [render(lang, t) for t in tests_texts(c)]
    for name, block in ((c.name_a, c.a), (c.name_b, c.b)):
        sure = precision_text(block)
        if sure is not None:
            lines.append(f"{name}: {render(lang, sure)}")
    return lines


def comparison_text(c: SetsCompared, lang: str = "en") -> str:
    """The side-by-side table (fixed width, for a file) and the verdict lines."""
    names = [render(lang, N_("quantity")), c.name_a, c.name_b]
    cells = _cells(c, lang)
    widths = [max(len(str(x[k])) for x in [names, *cells]) for k in range(3)]
    lines = ["  ".join(str(x[k]).ljust(widths[k]) if k == 0 else str(x[k]).rjust(widths[k]) for k in range(3))
             for x in [names, *cells]]
    return "\n".join([*lines, "", *_verdict(c, lang)])


def comparison_chat(c: SetsCompared, lang: str = "en") -> str:
    """The same for a chat (no fixed-width font): 'quantity: A | B' lines under the two names."""
    head = render(lang, N_("A: {a}\nB: {b}", a=c.name_a, b=c.name_b))
    lines = [f"{name}: {a} | {b}" for name, a, b in _cells(c, lang)]
    return "\n".join([head, "", *lines, "", *_verdict(c, lang)])


def comparison_csv(c: SetsCompared) -> str:
    """The side-by-side rows and B against A as CSV text (quantity, A, B, unit)."""
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(["quantity", c.name_a, c.name_b, "unit"])
    w.writerows(table_rows(c))
    k = c.comparison
    ci = k.mean_ratio_ci or (None, None)
    w.writerow(["mean ratio B/A", k.mean_ratio, "", ""])
    w.writerow(["mean ratio 95% CI", ci[0], ci[1], ""])
    w.writerow(["Kolmogorov-Smirnov D, p", k.ks_statistic, k.ks_p, ""])
    w.writerow(["Mann-Whitney U, p", k.mw_statistic, k.mw_p, ""])
    return buffer.getvalue()


def render_comparison(path, c: SetsCompared):
    """Both sets on one axis: density histograms with the fitted log-normals (left), ECDFs (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    hist, ecdf = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    both = np.concatenate([c.d_a, c.d_b])
    edges = np.histogram_bin_edges(both, bins="auto")[:41] if len(both) else np.array([0.0, 1.0])
    x = np.linspace(max(float(both.min()) * 0.8, 1e-9), float(both.max()) * 1.1, 300)
    for name, d, colour in ((c.name_a, c.d_a, "tab:blue"), (c.name_b, c.d_b, "tab:orange")):
        hist.hist(d, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                  label=f"{name} (n={len(d)})")
        fit = fit_lognormal(d)
        if fit is not None:
            hist.plot(x, fit.pdf(x), color=colour, linewidth=1.5, linestyle="--",
                      label=f"{name}: log-normal, median {fit.median:.3g}, σ {fit.sigma:.2f}")
        v = np.sort(d)
        ecdf.step(v, np.arange(1, len(v) + 1) / len(v), where="post", color=colour, label=name)
    hist.set_xlabel(f"D, {c.unit}")
    hist.set_ylabel("density")
    hist.legend(fontsize=7)
    ecdf.set_xlabel(f"D, {c.unit}")
    ecdf.set_ylabel("fraction of particles ≤ D")
    ecdf.set_title(f"KS {p_text(c.comparison.ks_p)}, Mann-Whitney {p_text(c.comparison.mw_p)}", fontsize=9)
    ecdf.legend(fontsize=8)
    fig.suptitle(f"{c.name_b} / {c.name_a}: mean ratio {c.comparison.mean_ratio:.2f}")
    fig.tight_layout()
    fig.savefig(path, format="png")  # a path or a binary file
    return path


def write_comparison(
    out_dir: Path, c: SetsCompared, lang: str = "en", stem: str = "compare"
) -> dict[str, Path]:
    """{stem}.txt (side by side, verdict), {stem}.csv, {stem}.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"text": out_dir / f"{stem}.txt", "csv": out_dir / f"{stem}.csv",
             "picture": out_dir / f"{stem}.png"}
    paths["text"].write_text(comparison_text(c, lang) + "\n", encoding="utf-8")
    paths["csv"].write_text(comparison_csv(c), encoding="utf-8", newline="")
    render_comparison(paths["picture"], c)
    return paths
