"""The numbers a catalysis paper gives for a set of particle diameters: number-, surface- (Sauter) and
volume-weighted means, how sure the mean is (bootstrap intervals, particles needed for +-5 %), a
log-normal fitted by maximum likelihood, dispersion of a named metal, and two sets compared.

Plain functions over 1-D arrays of diameters (any unit; the caller says which); every formula of the
summaries, tables and pictures is here, written once. Sources are in docs/annotations.md."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
TARGET_PRECISION = 0.05  # "particles needed for a mean within +-5 %"
N_RESAMPLES = 2000
SEED = 0  # bootstrap intervals are reproducible: the same objects give the same interval
BCA_MAX_N = 500  # BCa's jackknife is O(n^2): beyond this the percentile interval (as good for large n)
BATCH = 200  # resamples at a time: memory stays ~BATCH * n floats


# ---------------------------------------------------------------- weighted means


def _clean(d) -> np.ndarray:
    """Finite values, sorted: the seeded resamples then depend on the values, not on their order."""
    v = np.asarray(d, dtype=np.float64).ravel()
    return np.sort(v[np.isfinite(v)])


def number_mean(d, axis: int = -1) -> np.ndarray:
    """d_n = sum d / n."""
    return np.mean(d, axis=axis)


def sauter_mean(d, axis: int = -1) -> np.ndarray:
    """Surface-weighted (Sauter) mean d_s = sum d^3 / sum d^2: what dispersion and chemisorption see."""
    d = np.asarray(d, dtype=np.float64)
    return np.sum(d**3, axis=axis) / np.sum(d**2, axis=axis)


def volume_mean(d, axis: int = -1) -> np.ndarray:
    """Volume-weighted mean d_v = sum d^4 / sum d^3 (what XRD line broadening is compared with)."""
    d = np.asarray(d, dtype=np.float64)
    return np.sum(d**4, axis=axis) / np.sum(d**3, axis=axis)


# ---------------------------------------------------------------- how sure


def _mean_and_sauter(d, axis: int = -1) -> np.ndarray:
    """(d_n, d_s) of each resample at once: one set of resamples serves both intervals."""
    d2 = d * d
    return np.stack([np.mean(d, axis=axis), np.sum(d2 * d, axis=axis) / np.sum(d2, axis=axis)])


def bootstrap_ci(d, statistic=number_mean, seed: int = SEED,
                 n_resamples: int = N_RESAMPLES) -> tuple[float, float] | None:
    """95 % bootstrap interval of `statistic` (vectorised over `axis`, one value or a vector of them:
    then a pair of arrays), BCa up to BCA_MAX_N values, percentile beyond; None below 2 values. All
    values equal: the interval is that value."""
    from scipy.stats import bootstrap

    v = _clean(d)
    if len(v) < 2:
        return None
    if np.ptp(v) == 0:
        value = statistic(v)
        return value, value
    method = "BCa" if len(v) <= BCA_MAX_N else "percentile"
    ci = None
    for how in (method, "percentile"):  # BCa can be degenerate on odd samples: percentile then
        res = bootstrap((v,), statistic, vectorized=True, n_resamples=n_resamples,
                        confidence_level=CONFIDENCE, method=how, rng=np.random.default_rng(seed), batch=BATCH)
        ci = res.confidence_interval.low, res.confidence_interval.high
        if np.all(np.isfinite(ci)):
            break
    assert ci is not None
    if np.ndim(ci[0]) == 0:
        return float(ci[0]), float(ci[1])
    return ci


def mean_and_sauter_ci(d, seed: int = SEED) -> tuple[list[float], list[float]] | None:
    """95 % intervals of d_n and d_s from one set of seeded resamples: ([lo, hi] of d_n, [lo, hi] of
    d_s); fewer resamples above BCA_MAX_N values (their percentiles are as steady there)."""
    v = _clean(d)
    ci = bootstrap_ci(v, _mean_and_sauter, seed, N_RESAMPLES if len(v) <= BCA_MAX_N else N_RESAMPLES // 2)
    if ci is None:
        return None
    lo, hi = (np.asarray(x, dtype=np.float64) for x in ci)
    return [float(lo[0]), float(hi[0])], [float(lo[1]), float(hi[1])]


def relative_precision(n: int, mean: float | None, sd: float | None) -> float | None:
    """Half-width of the mean's 95 % interval relative to the mean: z * sd / (sqrt(n) * mean)."""
    if n < 2 or not mean or sd is None:
        return None
    return Z95 * float(sd) / (math.sqrt(n) * float(mean))


def particles_needed(mean: float | None, sd: float | None, precision: float = TARGET_PRECISION) -> int | None:
    """How many particles give a mean within +-precision (95 %): n = (z * sd / (precision * mean))^2."""
    if not mean or sd is None:
        return None
    return max(2, math.ceil((Z95 * float(sd) / (precision * float(mean))) ** 2))


# ---------------------------------------------------------------- fitted distribution


@dataclass(frozen=True)
class LogNormal:
    """ln d ~ N(mu, sigma^2); `median` = exp(mu) is scipy's `scale`, sigma its shape `s`."""

    sigma: float
    median: float

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    @property
    def mode(self) -> float:
        return self.median * math.exp(-self.sigma**2)

    def pdf(self, x) -> np.ndarray:
        from scipy.stats import lognorm

        return lognorm.pdf(np.asarray(x, dtype=np.float64), self.sigma, loc=0, scale=self.median)


def fit_lognormal(d) -> LogNormal | None:
    """Maximum-likelihood log-normal (scipy.stats.lognorm, location fixed at 0); None below 2 positive
    values or when they are all equal."""
    from scipy.stats import lognorm

    v = _clean(d)
    v = v[v > 0]
    if len(v) < 2 or np.ptp(v) == 0:
        return None
    sigma, _, scale = lognorm.fit(v, floc=0)
    return LogNormal(float(sigma), float(scale))


# ---------------------------------------------------------------- dispersion


@dataclass(frozen=True)
class Metal:
    """Bulk atomic volume v_m (nm^3) and mean surface area per atom a_m (nm^2), from the table of
    Bergeret & Gallezot (Handbook of Heterogeneous Catalysis, 2008)."""

    symbol: str
    v_m_nm3: float
    a_m_nm2: float

    @property
    def d_times_dispersion_nm(self) -> float:
        """D * d_s for spheres: 6 v_m / a_m."""
        return 6 * self.v_m_nm3 / self.a_m_nm2


# v_m in Å^3 and a_m in Å^2 as tabulated, stored in nm^3 / nm^2
METALS: dict[str, Metal] = {
    symbol: Metal(symbol, v_m / 1000.0, a_m / 100.0)
    for symbol, v_m, a_m in (
        ("Ag", 17.06, 8.75),
        ("Au", 16.96, 8.75),
        ("Co", 11.07, 6.59),
        ("Cu", 11.81, 6.85),
        ("Ir", 14.15, 7.65),
        ("Ni", 10.94, 6.51),
        ("Pd", 14.70, 7.93),
        ("Pt", 15.10, 8.07),
        ("Rh", 13.78, 7.58),
        ("Ru", 13.57, 6.35),
    )
}


def find_metal(name: str | None) -> Metal | None:
    """The table's metal by symbol, any case ("pt", "PT"); None when not tabulated."""
    if not name:
        return None
    return {k.lower(): m for k, m in METALS.items()}.get(name.strip().lower())


def dispersion(d_s_nm: float | None, metal: Metal) -> float | None:
    """Fraction of surface atoms of spheres with Sauter mean d_s: D = 6 (v_m / a_m) / d_s, at most 1
    (below ~1 nm the formula runs past 1: every atom is at the surface)."""
    if not d_s_nm or d_s_nm <= 0:
        return None
    return min(1.0, metal.d_times_dispersion_nm / float(d_s_nm))


# ---------------------------------------------------------------- one set


def size_numbers(d, unit: str, seed: int = SEED) -> dict:
    """The weighted means, their 95 % intervals, the precision of the mean and the log-normal fit, as
    summary keys (`sauter_d_nm`, `ci95_mean_d_nm` ...); mean/median/std/percentiles are measures.stats'."""
    v = _clean(d)
    n = len(v)
    out: dict = {f"sauter_d_{unit}": None, f"volume_d_{unit}": None, f"ci95_mean_d_{unit}": None,
                 f"ci95_sauter_d_{unit}": None, f"lognorm_median_d_{unit}": None, "lognorm_sigma": None,
                 "precision_mean": None, "n_for_5pct": None}
    if n == 0 or not np.any(v > 0):
        return out
    out[f"sauter_d_{unit}"] = float(sauter_mean(v))
    out[f"volume_d_{unit}"] = float(volume_mean(v))
    both = mean_and_sauter_ci(v, seed)
    if both is not None:
        out[f"ci95_mean_d_{unit}"], out[f"ci95_sauter_d_{unit}"] = both
    fit = fit_lognormal(v)
    if fit is not None:
        out[f"lognorm_median_d_{unit}"], out["lognorm_sigma"] = fit.median, fit.sigma
    mean, sd = float(v.mean()), float(v.std(ddof=1)) if n > 1 else 0.0
    out["precision_mean"] = relative_precision(n, mean, sd)
    out["n_for_5pct"] = particles_needed(mean, sd) if n > 1 else None
    return out


def with_dispersion(block: dict, metal: Metal | None) -> dict:
    """`dispersion` and the metal's table values added to a block holding `sauter_d_nm`."""
    if metal is None or block.get("sauter_d_nm") is None:
        return block
    block["metal"] = metal.symbol
    block["metal_v_m_nm3"], block["metal_a_m_nm2"] = metal.v_m_nm3, metal.a_m_nm2
    block["dispersion"] = dispersion(block["sauter_d_nm"], metal)
    return block


# ---------------------------------------------------------------- two sets


@dataclass(frozen=True)
class Comparison:
    """Set B against set A: the ratio of number means B/A with its 95 % bootstrap interval, and the
    two-sample Kolmogorov-Smirnov and Mann-Whitney U tests (two-sided)."""

    n_a: int
    n_b: int
    mean_ratio: float
    mean_ratio_ci: tuple[float, float] | None
    ks_statistic: float
    ks_p: float
    mw_statistic: float
    mw_p: float

    @property
    def b_tends_larger(self) -> bool:
        """U (of A) under n_A n_B / 2: fewer pairs where A's particle is the larger one."""
        return self.mw_statistic < self.n_a * self.n_b / 2


def _ratio_of_means(a, b, axis: int = -1):
    return np.mean(b, axis=axis) / np.mean(a, axis=axis)


def compare_sizes(a, b, seed: int = SEED, n_resamples: int = N_RESAMPLES) -> Comparison:
    """Set B's diameters against set A's (the same unit); both need at least 2 values."""
    from scipy.stats import bootstrap, ks_2samp, mannwhitneyu

    va, vb = _clean(a), _clean(b)
    if len(va) < 2 or len(vb) < 2:
        raise ValueError("each set needs at least 2 objects")
    ratio = float(vb.mean() / va.mean())
    ci: tuple[float, float] | None = None
    if np.ptp(va) > 0 or np.ptp(vb) > 0:
        res = bootstrap((va, vb), _ratio_of_means, vectorized=True, paired=False, n_resamples=n_resamples,
                        confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed))
        ci = float(res.confidence_interval.low), float(res.confidence_interval.high)
    ks = ks_2samp(va, vb)
    mw = mannwhitneyu(va, vb, alternative="two-sided")
    return Comparison(len(va), len(vb), ratio, ci, float(ks.statistic), float(ks.pvalue),
                      float(mw.statistic), float(mw.pvalue))
