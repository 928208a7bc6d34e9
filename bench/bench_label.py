"""Tap-to-outline quality: a script "taps" every ground-truth particle and scores the proposed outline.

`.venv/bin/python bench/bench_label.py [--data DIR] [--series DOI] [--limit N]`

For each particle of EMPS (emps-dev, then one series of emps-train: the images of one paper, named by
its DOI in sources.csv) the tap is the particle's innermost pixel (the maximum of its distance
transform, where a person taps "the middle"). The proposal (annotations.proposer) is scored against
the mask: IoU, size accuracy min(D)/max(D) with D the equivalent-circle diameter, and "accepted"
(IoU >= 0.8, the share she would keep as it is). Particles are split into isolated ones and those in
clusters (their mask, grown by 2 px, touches another particle's). Goals: median IoU >= 0.85 isolated,
>= 0.7 in clusters. Also: milliseconds per tap (the page waits for it).

`--model [--figures N] [--isolated N] [--iterations N]`: "with a model, better than without". Per
figure of the figure series (bench_figures: same paper and figure in sources.csv, the most clustered
first; --isolated adds the figures richest in isolated particles) a tiny model is trained on two crops
(<= 50 particles) of its richest panel and recognises the other panels as segbot does; every GT
particle of those is tapped and answered as the page answers it (her model's outline at the tap by
annotations.tap, else the proposer's), beside the proposer alone and other rules. ~5 min per figure
on 2 CPU cores; the predictions are cached under --out, so a second run only taps.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotations.geometry import polygon_to_mask  # noqa: E402
from annotations.proposer import propose_outline, to_gray  # noqa: E402
from annotations.tap import outline_at, outline_holding  # noqa: E402
from bench.bench_scalebar import hardware  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SERIES = "10.1016.j.apsusc.2020.145360"


def read_pair(folder: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    image = cv2.imread(str(folder / "images" / f"{stem}.png"), cv2.IMREAD_COLOR)
    seg = cv2.imread(str(folder / "segmaps" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    if image is None or seg is None:
        raise SystemExit(f"cannot read {stem}.png or its instance map under {folder}")
    if seg.ndim == 3:
        seg = seg[:, :, 0]
    return to_gray(image[:, :, ::-1]), seg


def taps(seg: np.ndarray):
    """(mask, clustered, x, y) per particle of `seg`: the tap is its innermost pixel."""
    import cv2
    from scipy import ndimage

    grown = ndimage.grey_dilation(seg, size=5)
    for k, sl in enumerate(ndimage.find_objects(seg), start=1):
        if sl is None:
            continue
        mask = seg == k
        # in a cluster: another particle lies within 2 px of this one
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        clustered = bool(((seg > 0) & (seg != k) & ring).any()) or bool((grown[mask] != k).any())
        dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        ty, tx = np.unravel_index(int(np.argmax(dist)), dist.shape)
        yield mask, clustered, float(tx), float(ty)


def scored(polygon: np.ndarray | None, mask: np.ndarray) -> tuple[float, float]:
    """(IoU, size accuracy) of an outline against a particle's mask; (0, 0) for no outline."""
    if polygon is None:
        return 0.0, 0.0
    pm = polygon_to_mask(polygon, *mask.shape)
    union = float((pm | mask).sum())
    iou = float((pm & mask).sum()) / union if union else 0.0
    a, b = float(pm.sum()), float(mask.sum())
    return iou, float(np.sqrt(min(a, b) / max(a, b))) if max(a, b) else 0.0


def tap_particles(gray: np.ndarray, seg: np.ndarray) -> list[dict]:
    """One row per particle of `seg`: IoU, size accuracy, cluster or not, time."""
    rows = []
    for mask, clustered, tx, ty in taps(seg):
        started = time.perf_counter()
        prop = propose_outline(gray, tx, ty)
        ms = (time.perf_counter() - started) * 1000
        iou, size = scored(None if prop is None else prop.polygon, mask)
        rows.append({"iou": iou, "size": size, "clustered": clustered, "ms": ms})
    return rows


def summary(name: str, rows: list[dict]) -> str:
    if not rows:
        return f"  {name:<10} none"
    iou = np.array([r["iou"] for r in rows])
    size = np.array([r["size"] for r in rows])
    return (
        f"  {name:<10} n={len(rows):>4}  IoU median {np.median(iou):.3f} p10 {np.percentile(iou, 10):.3f}"
        f"  size median {np.median(size):.3f} p10 {np.percentile(size, 10):.3f}"
        f"  accepted {np.mean(iou >= 0.8):.0%}"
    )


def run_set(title: str, folder: Path, stems: list[str]) -> list[dict]:
    rows: list[dict] = []
    for stem in stems:
        gray, seg = read_pair(folder, stem)
        rows += tap_particles(gray, seg)
    print(f"{title}: {len(stems)} images")
    print(summary("all", rows))
    print(summary("isolated", [r for r in rows if not r["clustered"]]))
    print(summary("clusters", [r for r in rows if r["clustered"]]))
    ms = np.array([r["ms"] for r in rows])
    print(f"  time per tap: median {np.median(ms):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms")
    return rows


# ------------------------------------------------------------------ with a model (--model)

# How the page could answer a tap with her model's outlines (the model's outline at the tap, else the
# proposer's): "page" is the rule it follows (annotations.tap), the others are scored for comparison.
# "page, unless > Rx": the proposer's outline instead where the model's is over R times larger (a blob
# over several particles); it needs the proposer on every tap. "best of both" is an upper bound, as if
# she saw both outlines and kept the better one. "page + guesses": the page's rule over her model's
# outlines and its detections under the threshold (the predict job's "unsure"), as the page now has them;
# every other rule sees the outlines at the threshold only.
RULES = (
    "page",
    "page + guesses",
    "holding only",
    "page, score >= 0.8",
    "page, score >= 0.9",
    "page, unless > 1x",
    "page, unless > 1.5x",
    "page, unless > 2x",
    "best of both",
)


def figure_predictions(fig, iterations: int, out: Path, init: str = "random",
                       bundles: Path | None = None) -> dict[str, list[tuple[np.ndarray, float, bool]]]:
    """{test panel stem: [(outline, score, under the threshold?)]}: a tiny model trained on two crops
    (<= 50 particles) of the figure's richest panel recognises its other panels as segbot's predict job
    does (auto scale, fragment merge, DEFAULT_SCORE_THRESHOLD, the detections under it kept apart).
    `init` 'base': from the base model (SEGBOT_BASE_MODEL, else the shipped one); `iterations` 0:
    segbot's budget. Cached in `out`: the taps can be scored again without training. `bundles`: a
    bench_scenarios --keep folder; its v1 of this figure (the same two crops, trained with the same
    options when that run's --iterations and --inits match) is used instead of training one again."""
    import pickle
    import tempfile
    import time

    from bench_quality import load, train_bundle
    from bench_scenarios import MAX_LABELS, kept, recognised, two_crops

    from segmodel.options import DEFAULT_SCORE_THRESHOLD, TrainOptions

    cache = out / (f"{fig.train[0]}-{iterations}-guesses.pkl" if init == "random" else
                   f"{fig.train[0]}-{init}-{iterations or 'segbot'}-guesses.pkl")
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    train = load(*fig.train)
    source = two_crops(train, min(MAX_LABELS, len(train.instances)))
    if source is None:
        return {}
    tests = [load(stem, folder) for stem, folder in fig.tests]
    options = TrainOptions(arch="tiny", iterations=iterations or None, device="cpu", holdout=False, init=init)
    weights = None
    if init != "random":
        from bench_scenarios import _check_unseen, _weights

        weights = _weights()
        _check_unseen(weights, [train, *tests])
    with tempfile.TemporaryDirectory() as tmp:
        # the correction round's own key (figure and options): a v1 trained otherwise is not taken
        bundle, done = kept(bundles, tmp, f"{fig.train[0]}-v1", fig.train, options)
        if done:
            train_s = 0.0
            print(f"  {fig.name}: the model kept in {bundle}")
        else:
            bundle, train_s = train_bundle([source], Path(tmp) / "bundle", options, f"{fig.train[0]} ",
                                           weights)
        t0 = time.perf_counter()
        preds = recognised(bundle, tests, "cpu", DEFAULT_SCORE_THRESHOLD)  # as the job does
        predict_s = time.perf_counter() - t0
    print(
        f"  {fig.name}: {len(source.instances)} labels on {fig.train[0]}, trained in "
        f"{train_s / 60:.1f} min, {len(tests)} panels predicted in {predict_s:.0f} s"
    )
    # the page gets the outlines rounded to 0.01 px (web.labeling)
    found = {
        stem: [(np.round(i.polygon, 2), 1.0 if i.score is None else float(i.score), guess)
               for guess, group in ((False, p.instances), (True, p.unsure)) for i in group]
        for (stem, _), p in zip(fig.tests, preds, strict=True)
    }
    out.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(found))
    return found


def answer(rule: str, outlines: list[tuple[np.ndarray, float, bool]], x: float,
           y: float) -> np.ndarray | None:
    """The model's outline that answers a tap under `rule` (the page's rule for "page, unless" and
    "best of both", which then weigh it against the proposer's)."""
    if rule != "page + guesses":
        outlines = [o for o in outlines if not o[2]]
    polygons = [p for p, _, _ in outlines]
    if rule == "holding only":
        k = outline_holding(polygons, x, y)
    elif rule.startswith("page, score >= "):  # the page's rule on her model's surer outlines only
        floor = float(rule.rsplit(" ", 1)[1])
        polygons = [p for p, s, _ in outlines if s >= floor]
        k = outline_at(polygons, x, y)
    else:
        k = outline_at(polygons, x, y)
    return None if k is None else polygons[k]


def tap_with_model(gray: np.ndarray, seg: np.ndarray,
                   outlines: list[tuple[np.ndarray, float, bool]]) -> list[dict]:
    """One row per particle: the proposer's (IoU, size) and each rule's (IoU, size, answered by the model)."""
    from annotations.geometry import polygon_area

    rows = []
    for mask, clustered, tx, ty in taps(seg):
        prop = propose_outline(gray, tx, ty)
        alone = scored(None if prop is None else prop.polygon, mask)
        row: dict = {"clustered": clustered, "without": (*alone, False)}
        for rule in RULES:
            poly = answer(rule, outlines, tx, ty)
            if poly is None:
                row[rule] = (*alone, False)
                continue
            got = scored(poly, mask)
            if rule == "best of both":
                row[rule] = (*max(got, alone), got >= alone)
            elif (
                rule.startswith("page, unless > ")
                and prop is not None
                and polygon_area(poly)
                > float(rule.rsplit(" ", 1)[1].rstrip("x")) * polygon_area(prop.polygon)
            ):
                row[rule] = (*alone, False)
            else:
                row[rule] = (*got, True)
        rows.append(row)
    return rows


def model_table(rows: list[dict]) -> list[str]:
    """Per group, without a model and under each rule: IoU median / p10, size median / p10, accepted,
    the share of taps the model answered."""
    lines = [
        f"  {'group':<9} {'answer':<20} {'n':>4} {'IoU med':>7} {'p10':>5} {'size med':>8} {'p10':>5} "
        f"{'accepted':>8} {'by model':>8}"
    ]
    for group, keep in (("all", None), ("isolated", False), ("clusters", True)):
        part = [r for r in rows if keep is None or r["clustered"] == keep]
        if not part:
            continue
        for rule in ("without", *RULES):
            iou, size, by = (np.array([r[rule][i] for r in part]) for i in range(3))
            lines.append(
                f"  {group:<9} {rule:<20} {len(part):>4} {np.median(iou):7.3f} "
                f"{np.percentile(iou, 10):5.3f} {np.median(size):8.3f} "
                f"{np.percentile(size, 10):5.3f} {np.mean(iou >= 0.8):8.0%} {np.mean(by):8.0%}"
            )
            group = ""
    return lines


def model_figures(data: Path, n_clustered: int, n_isolated: int) -> list:
    """The figure series' `n_clustered` figures (most test particles in clusters), then the
    `n_isolated` others with the most isolated test particles (the series has almost none)."""
    from bench_figures import figure_series

    every = figure_series(data / "emps-dev", 1000)
    rest = sorted(every[n_clustered:], key=lambda f: f.n_test - f.n_cluster, reverse=True)
    return every[:n_clustered] + rest[:n_isolated]


def run_model(data: Path, figures: list, iterations: int, out: Path, init: str = "random",
              bundles: Path | None = None) -> None:
    """Per figure one model, every GT particle of its other panels tapped, answered without and with
    the model; then all figures pooled."""
    pooled: list[dict] = []
    for fig in figures:
        found = figure_predictions(fig, iterations, out, init, bundles)
        if not found:
            print(f"  {fig.name}: no two crops fit, skipped")
            continue
        rows: list[dict] = []
        for stem, folder in fig.tests:
            gray, seg = read_pair(folder, stem)
            rows += tap_with_model(gray, seg, found[stem])
        print(f"{fig.name}: model on {fig.train[0]} -> {len(fig.tests)} panels, {len(rows)} taps")
        print("\n".join(model_table(rows)))
        pooled += rows
    print(f"all figures: {len(pooled)} taps")
    print("\n".join(model_table(pooled)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--series", default=SERIES, help="DOI (as in sources.csv) of the emps-train series")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of emps-dev (0: all)")
    parser.add_argument("--model", action="store_true", help="the figure series, without and with a model")
    parser.add_argument("--figures", type=int, default=5, help="--model: the figure series' first N")
    parser.add_argument("--isolated", type=int, default=0, help="--model: + N figures rich in isolated ones")
    parser.add_argument("--iterations", type=int, default=200,
                        help="--model: training iterations (0: segbot's budget)")
    parser.add_argument("--init", default="random", choices=("random", "base"),
                        help="--model: random weights, or the base model (SEGBOT_BASE_MODEL, else shipped)")
    parser.add_argument("--out", type=Path, default=Path("out/bench-label"), help="--model: prediction cache")
    parser.add_argument("--only", default="", help="--model: comma list of labelled panels (stems) to keep")
    parser.add_argument("--bundles", type=Path, default=None,
                        help="--model: a bench_scenarios --keep folder whose v1 models are used (same "
                             "--iterations and --inits there) instead of training them again")
    args = parser.parse_args()
    print(f"bench_label: tap the centre of every GT particle; {hardware()}")
    if args.model:
        figures = model_figures(args.data, args.figures, args.isolated)
        if args.only:
            figures = [f for f in figures if f.train[0] in args.only.split(",")]
        run_model(args.data, figures, args.iterations, args.out, args.init, args.bundles)
        print(f"(load average {os.getloadavg()[0]:.1f})")
        return 0
    dev = args.data / "emps-dev"
    stems = sorted(p.stem for p in (dev / "images").glob("*.png"))
    if args.limit:
        stems = stems[: args.limit]
    run_set("emps-dev", dev, stems)
    train = args.data / "emps-train"
    with open(train / "sources.csv", newline="") as fh:
        series = sorted(r["id"] for r in csv.DictReader(fh) if r["doi"] == args.series)
    if series:
        run_set(f"emps-train series {args.series}", train, series)
    print(f"(load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
