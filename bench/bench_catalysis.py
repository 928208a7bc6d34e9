"""The catalysis numbers (measures.sizes): how often the 95 % bootstrap intervals hold the true d_n and
d_s of a known log-normal, how close the log-normal fit comes, and what the numbers cost per set.

    .venv/bin/python bench/bench_catalysis.py [--trials 200] [--sigma 0.4]

Prints, per sample size, the intervals' coverage (goal: >= 0.90 for d_n; nominal 0.95), the fit's
median and sigma error over the trials, and the wall time of size_numbers (intervals + fit) beside
the time of the plain mean/std/percentiles of the same values, as a ratio measured in this run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measures.sizes import fit_lognormal, mean_and_sauter_ci, size_numbers  # noqa: E402


def coverage(n: int, trials: int, sigma: float, median: float = 2.0) -> dict[str, float]:
    mu = math.log(median)
    true_n, true_s = math.exp(mu + sigma**2 / 2), math.exp(mu + 2.5 * sigma**2)
    hit_n = hit_s = 0
    err_median, err_sigma = [], []
    for trial in range(trials):
        d = np.random.default_rng(10_000 + trial).lognormal(mu, sigma, n)
        ci_n, ci_s = mean_and_sauter_ci(d, seed=trial)
        hit_n += ci_n[0] <= true_n <= ci_n[1]
        hit_s += ci_s[0] <= true_s <= ci_s[1]
        fit = fit_lognormal(d)
        err_median.append(abs(fit.median / median - 1))
        err_sigma.append(abs(fit.sigma / sigma - 1))
    return {"d_n": hit_n / trials, "d_s": hit_s / trials, "median": float(np.median(err_median)),
            "sigma": float(np.median(err_sigma))}


def cost(n: int, repeats: int = 3) -> tuple[float, float]:
    d = np.random.default_rng(1).lognormal(0.7, 0.4, n)

    def plain() -> None:
        np.mean(d), np.median(d), np.std(d, ddof=1), np.percentile(d, (5, 10, 25, 75, 90, 95))

    times = []
    for func in (plain, lambda: size_numbers(d, "nm")):
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            func()
            best = min(best, time.perf_counter() - t)
        times.append(best)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.4)
    args = parser.parse_args()
    size_numbers(np.array([1.0, 2.0, 3.0]), "nm")  # imports
    print(f"log-normal, median 2 nm, sigma {args.sigma}, {args.trials} seeded trials per n")
    print(f"{'n':>6} {'cover d_n':>10} {'cover d_s':>10} {'fit median err':>15} {'fit sigma err':>14}")
    for n in (20, 40, 150, 500):
        c = coverage(n, args.trials, args.sigma)
        print(f"{n:>6} {c['d_n']:>10.3f} {c['d_s']:>10.3f} {c['median']:>15.3f} {c['sigma']:>14.3f}")
    print(f"{'n':>6} {'plain s':>10} {'numbers s':>10} {'ratio':>8}")
    for n in (100, 1000, 5000, 20000):
        plain, numbers = cost(n)
        print(f"{n:>6} {plain:>10.4f} {numbers:>10.4f} {numbers / plain:>8.0f}")


if __name__ == "__main__":
    main()
