"""measures.sizes: weighted means, dispersion, bootstrap intervals, the log-normal fit and two sets
compared, against hand-computed sets and scipy on the same data; measures.stats carries them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from annotations.model import Instance
from measures.objects import measure
from measures.sizes import (
    METALS,
    bootstrap_ci,
    compare_sizes,
    dispersion,
    find_metal,
    fit_lognormal,
    number_mean,
    particles_needed,
    relative_precision,
    sauter_mean,
    size_numbers,
    volume_mean,
)
from measures.stats import ImageMeasures, image_stats, pooled_stats


def test_weighted_means_of_a_hand_computed_set():
    d = np.array([1.0, 2.0, 3.0])
    assert number_mean(d) == pytest.approx(2.0)
    assert sauter_mean(d) == pytest.approx((1 + 8 + 27) / (1 + 4 + 9))  # 36/14
    assert volume_mean(d) == pytest.approx((1 + 16 + 81) / (1 + 8 + 27))  # 98/36
    numbers = size_numbers(d, "nm")
    assert numbers["sauter_d_nm"] == pytest.approx(36 / 14)
    assert numbers["volume_d_nm"] == pytest.approx(98 / 36)


def test_dispersion_of_platinum_and_the_table():
    pt = METALS["Pt"]
    # Bergeret & Gallezot: v_m 15.10 Å^3, a_m 8.07 Å^2 -> D * d_s = 6 v_m / a_m = 1.123 nm
    assert pt.d_times_dispersion_nm == pytest.approx(1.13, abs=0.01)
    assert dispersion(36 / 14, pt) == pytest.approx(6 * 0.01510 / 0.0807 / (36 / 14))
    assert dispersion(2.0, pt) * 2.0 == pytest.approx(1.1227, abs=1e-3)
    assert dispersion(0.5, pt) == 1.0  # every atom at the surface: capped, not 2.2
    assert find_metal("pt") is pt and find_metal(" PD ") is METALS["Pd"] and find_metal("Xx") is None
    assert set(METALS) == {"Pt", "Pd", "Rh", "Ru", "Ir", "Au", "Ag", "Ni", "Co", "Cu"}
    for metal in METALS.values():  # every tabulated metal: D * d_s between 0.9 and 1.3 nm
        assert 0.9 < metal.d_times_dispersion_nm < 1.3, metal


def test_precision_of_the_mean_and_particles_needed():
    # 41 particles, sd/mean 0.3: 1.96 * 0.3 / sqrt(41) = 9.2 %; (1.96 * 0.3 / 0.05)^2 = 138.3 -> 139
    assert relative_precision(41, 10.0, 3.0) == pytest.approx(1.959964 * 0.3 / math.sqrt(41))
    assert particles_needed(10.0, 3.0) == 139
    assert particles_needed(10.0, 2.0, precision=0.10) == math.ceil((1.959964 * 0.2 / 0.10) ** 2)
    assert relative_precision(1, 10.0, 0.0) is None


def test_bootstrap_interval_covers_the_true_mean_in_most_trials():
    mu, sigma, n = math.log(2.0), 0.4, 40
    true_mean, true_sauter = math.exp(mu + sigma**2 / 2), math.exp(mu + 2.5 * sigma**2)
    covered = covered_s = 0
    for trial in range(200):
        d = np.random.default_rng(1000 + trial).lognormal(mu, sigma, n)
        lo, hi = bootstrap_ci(d, number_mean, seed=trial, n_resamples=1000)
        covered += lo <= true_mean <= hi
    assert covered >= 180, covered  # >= 90 % of 200
    # d_s leans on the few largest particles: near nominal with 150 of them (82 % with 40, see docs)
    for trial in range(100):
        d = np.random.default_rng(2000 + trial).lognormal(mu, sigma, 150)
        lo, hi = bootstrap_ci(d, sauter_mean, seed=trial, n_resamples=1000)
        covered_s += lo <= true_sauter <= hi
    assert covered_s >= 85, covered_s


def test_bootstrap_interval_is_seeded_and_order_free():
    d = np.random.default_rng(5).lognormal(0.5, 0.3, 60)
    assert bootstrap_ci(d) == bootstrap_ci(d[::-1])
    assert bootstrap_ci([2.0]) is None and bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)


def test_lognormal_fit_recovers_its_parameters():
    d = np.random.default_rng(7).lognormal(math.log(3.0), 0.35, 5000)
    fit = fit_lognormal(d)
    assert fit.sigma == pytest.approx(0.35, rel=0.03) and fit.median == pytest.approx(3.0, rel=0.02)
    # maximum likelihood with loc 0 is the mean and (population) sd of ln d
    assert fit.mu == pytest.approx(np.log(d).mean(), rel=1e-6)
    assert fit.sigma == pytest.approx(np.log(d).std(), rel=1e-6)
    x = np.linspace(0.5, 8, 50)
    assert np.allclose(fit.pdf(x), sps.lognorm.pdf(x, fit.sigma, scale=fit.median))
    assert fit_lognormal([1.0]) is None


def test_two_sets_compared_as_scipy_does():
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(math.log(1.8), 0.25, 120), rng.lognormal(math.log(2.6), 0.3, 90)
    c = compare_sizes(a, b)
    assert c.n_a == 120 and c.n_b == 90
    assert c.mean_ratio == pytest.approx(b.mean() / a.mean())
    lo, hi = c.mean_ratio_ci
    assert lo < c.mean_ratio < hi and lo > 1.2  # B is clearly larger
    assert c.ks_p == pytest.approx(sps.ks_2samp(a, b).pvalue) and c.ks_p < 1e-6
    assert c.mw_p == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert c.b_tends_larger and not compare_sizes(b, a).b_tends_larger
    same = compare_sizes(a[:60], a[60:])
    assert same.ks_p > 0.01 and same.mw_p > 0.01 and same.mean_ratio_ci[0] < 1 < same.mean_ratio_ci[1]
    with pytest.raises(ValueError):
        compare_sizes([1.0], b)


def _disc(label: str, x: float, y: float, r: float) -> Instance:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    return Instance(label, np.column_stack([x + r * np.cos(t), y + r * np.sin(t)]))


def test_image_stats_carry_the_numbers_and_keep_single_sites_apart():
    parts = [_disc("particle", 20 + 30 * k, 30, 4 + k) for k in range(5)]
    sites = [_disc("single_atom", 10 + 20 * k, 150, 1) for k in range(8)]
    s = image_stats(measure(parts + sites), (200, 200), 0.5, metal=METALS["Pt"])
    d_parts = np.array([m.d_nm for m in measure(parts, nm_per_px=0.5)])
    p = s["particles"]
    assert p["n_objects"] == 5 and p["sauter_d_nm"] == pytest.approx(sauter_mean(d_parts))
    assert p["dispersion"] == pytest.approx(1.1227 / sauter_mean(d_parts), rel=1e-3) and p["metal"] == "Pt"
    assert "dispersion" not in s  # the whole set mixes sites into the sizes
    site = s["single_sites"]
    assert site["n_objects"] == 8 and "dispersion" not in site
    region_um2 = 200 * 200 * (0.5 / 1000) ** 2
    assert site["density"] == pytest.approx(8 / region_um2)
    assert site["mean_nnd_nm"] == pytest.approx(20 * 0.5, rel=1e-3)
    assert p["mean_nnd_nm"] == pytest.approx(30 * 0.5, rel=1e-3)
    only = image_stats(measure(parts), (200, 200), 0.5, metal=METALS["Pt"])
    assert only["dispersion"] == pytest.approx(p["dispersion"]) and "particles" not in only
    assert only["ci95_mean_d_nm"][0] < only["mean_d_nm"] < only["ci95_mean_d_nm"][1]
    unscaled = image_stats(measure(parts), (200, 200), None, metal=METALS["Pt"])
    assert "dispersion" not in unscaled and unscaled["sauter_d_px"] == pytest.approx(sauter_mean(d_parts * 2))


def test_pooled_numbers_use_each_image_scale():
    a = [_disc("particle", 20 + 30 * k, 30, 4 + k) for k in range(5)]
    b = [_disc("particle", 20 + 30 * k, 60, 3 + k) for k in range(4)] + [_disc("SAC", 100, 150, 1)]
    pooled = pooled_stats([ImageMeasures("a", measure(a), (200, 200), 0.5),
                           ImageMeasures("b", measure(b), (200, 200), 0.25)], metal=METALS["Pd"])
    d = np.concatenate([[m.d_px * 0.5 for m in measure(a)], [m.d_px * 0.25 for m in measure(b[:4])]])
    assert pooled["particles"]["sauter_d_nm"] == pytest.approx(sauter_mean(d))
    pd_ds = METALS["Pd"].d_times_dispersion_nm
    assert pooled["particles"]["dispersion"] == pytest.approx(pd_ds / sauter_mean(d))
    assert pooled["single_sites"]["n_objects"] == 1
    assert pooled["particles"]["n_for_5pct"] == particles_needed(d.mean(), d.std(ddof=1))


def test_summaries_pool_into_the_sauter_mean_and_precision_of_all_objects():
    from measures.stats import pool_summaries

    a = [_disc("particle", 20 + 30 * k, 30, 4 + k) for k in range(5)]
    b = [_disc("particle", 20 + 30 * k, 60, 3 + 2 * k) for k in range(4)]
    items = [ImageMeasures("a", measure(a), (200, 200), 0.5),
             ImageMeasures("b", measure(b), (200, 200), 0.25)]
    summaries = [image_stats(i.measures, i.image_shape, i.nm_per_px) for i in items]
    pooled = pool_summaries(summaries, METALS["Pt"])
    reference = pooled_stats(items, METALS["Pt"])
    for key in ("sauter_d_nm", "precision_mean", "n_for_5pct", "dispersion"):
        assert pooled[key] == pytest.approx(reference[key], rel=1e-9), key


def test_how_sure_in_words():
    from core.i18n import render
    from outputs.numbers import precision_text

    block = {"n_objects": 41, "precision_mean": relative_precision(41, 10.0, 3.0),
             "n_for_5pct": particles_needed(10.0, 3.0)}
    assert render("en", precision_text(block)) == "41 objects: mean known to ±9 %; about 139 would give ±5 %"
    assert render("ru", precision_text(block)).startswith("41 объект: среднее известно с точностью ±9 %")
    block = {"n_objects": 400, "precision_mean": 0.029, "n_for_5pct": 139}
    assert render("en", precision_text(block)) == "400 objects: mean known to ±2.9 %, within ±5 %"


def test_histogram_title_carries_the_weighted_means(tmp_path):
    from PIL import Image as PILImage

    from outputs.files import means_line, render_histogram

    parts = [_disc("particle", 20 + 30 * k, 30, 4 + k) for k in range(6)]
    a = measure(parts, nm_per_px=0.5)
    s = image_stats(measure(parts), (200, 200), 0.5, metal=METALS["Pt"])
    d = np.array([m.d_nm for m in a])
    line = means_line(s)
    assert line == (f"d_n {d.mean():.3g} · d_s {sauter_mean(d):.3g} · d_v {volume_mean(d):.3g} nm · "
                    f"D(Pt) {s['dispersion']:.2f}")
    from measures.objects import measure_arrays

    path = render_histogram(tmp_path / "h.png", measure_arrays(parts), 0.5, summary=s)
    assert PILImage.open(path).size[0] > 800
