"""Same-series figures of EMPS (sources.csv): which panel is labelled, which are scored.

Shared by bench_scenarios.py (the figure-series scenario and the correction round) and bench_base.py
(a base model must not be pretrained on any panel a benchmark scores).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import load  # noqa: E402


@dataclass(frozen=True)
class Figure:
    """One figure of one paper (sources.csv): the panel two crops are labelled on, and the others."""

    name: str  # doi | figure
    train: tuple[str, Path]  # (stem, data folder)
    tests: list[tuple[str, Path]]
    n_test: int  # GT particles on the test panels
    n_cluster: int  # of those, in clusters (measures.evaluation.in_cluster)


def figure_series(data: Path, n: int, min_panels: int = 3, min_test: int = 10) -> list[Figure]:
    """Figures of >= `min_panels` panels (EMPS sources.csv: one paper, one figure = one material, one
    microscope, one magnification): the richest panel is labelled, the others are scored. The `n` with
    the most test particles in clusters first: dense agglomerates, where the misses are."""
    import csv

    from measures.evaluation import in_cluster

    sources = data.parent / "emps-train" / "sources.csv"
    folders = {"1": data, "0": data.parent / "emps-train"}
    panels: dict[str, list[tuple[str, Path]]] = {}
    with sources.open() as fh:
        for r in csv.DictReader(fh):
            panels.setdefault(f"{r['doi']} | {r['figure']}", []).append((r["id"], folders[r["in_emps_dev"]]))
    found = []
    for name, members in panels.items():
        if len(members) < min_panels:
            continue
        anns = {stem: load(stem, folder) for stem, folder in members}
        order = sorted(members, key=lambda m: len(anns[m[0]].instances), reverse=True)
        tests = order[1:]
        n_test = sum(len(anns[stem].instances) for stem, _ in tests)
        if n_test < min_test or not anns[order[0][0]].instances:
            continue
        n_cluster = sum(int(in_cluster(anns[stem].instances).sum()) for stem, _ in tests)
        found.append(Figure(name, order[0], tests, n_test, n_cluster))
    return sorted(found, key=lambda f: (f.n_cluster, f.n_test), reverse=True)[:n]


def scored_panels(data: Path, n: int = 5) -> list[str]:
    """Every panel of the figures the figure-series scenario uses (labelled or scored)."""
    return sorted({stem for f in figure_series(data, n) for stem, _ in [f.train, *f.tests]})
