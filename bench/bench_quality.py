"""Quality on real EM images: a tiny model trained from <= 50 labelled objects vs Otsu + watershed.

    .venv/bin/python bench/bench_quality.py                        # defaults below, CPU
    .venv/bin/python bench/bench_quality.py --iterations 600 --limit 0 --device cuda

Data: /work/shared/data/emps-dev (EMPS, MIT): images + instance maps, turned into polygons here.
Training: the --train-images images with the most medium-sized particles; on each, a square crop
from the image centre grown while it holds at most 50 / n_train particles (by centre) - those are
the only labels the model sees (the rest of the image is unlabelled, as a user's crops would be).
Test: the other images (the first --limit of them by name; 0 = all), whole-image ground truth.
Both methods are scored by measures.evaluation: precision / recall / F1 by the centre rule of
Okunev et al. (Nanomaterials 2020), COCO mask AP, and size accuracy
(1 - |mean D_pred - mean D_gt| / mean D_gt).
Goal: F1(model) >= 1.2 x F1(baseline). Everything printed is measured in this run.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emps-dev"  # ../shared beside the repo


def load(stem: str, data: Path):
    """AnnotatedImage with every particle of the instance map as a polygon."""
    from annotations.instance_maps import read_instance_map

    return read_instance_map(data / "images" / f"{stem}.png", data / "segmaps" / f"{stem}.png")


def centres(instances) -> np.ndarray:
    return np.array([i.polygon.mean(axis=0) for i in instances]).reshape(-1, 2)


def labelled_crop(ann, quota: int):
    """The image with one centred square crop holding <= quota particles (centres), labels inside it."""
    from annotations.model import AnnotatedImage, Crop

    c = centres(ann.instances)
    cx, cy = ann.width / 2, ann.height / 2
    best = None
    for half in range(64, max(ann.width, ann.height), 16):
        x0, y0 = max(0.0, cx - half), max(0.0, cy - half)
        x1, y1 = min(float(ann.width), cx + half), min(float(ann.height), cy + half)
        inside = (c[:, 0] >= x0) & (c[:, 0] < x1) & (c[:, 1] >= y0) & (c[:, 1] < y1)
        if inside.sum() > quota:
            break
        best = (Crop(x0, y0, x1, y1), inside)
    if best is None:
        return None
    crop, inside = best
    kept = [inst for inst, k in zip(ann.instances, inside, strict=True) if k]
    return AnnotatedImage(name=ann.name, image=ann.image, instances=kept, crops=[crop])


def pick_training(stems: list[str], data: Path, n: int) -> list[str]:
    """Images with the most particles of medium size (median area 1,000 - 8,000 px)."""
    import cv2

    scored = []
    for stem in stems:
        seg = cv2.imread(str(data / "segmaps" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        ids, counts = np.unique(seg[seg > 0], return_counts=True)
        if len(ids) and 1000 <= np.median(counts) <= 8000:
            scored.append((len(ids), stem))
    return [stem for _, stem in sorted(scored, reverse=True)[:n]]


def row(name: str, result: dict) -> str:
    c = result["count"]
    ap = (result.get("coco") or {}).get("segm", {})
    size = result["size_accuracy"]["all"]["accuracy"]

    def f(v):
        return "  n/a" if v is None else f"{v:.3f}"

    return (f"{name:22} {c['precision']:9.3f} {c['recall']:7.3f} {c['f1']:6.3f} {f(ap.get('AP')):>8} "
            f"{f(ap.get('AP50')):>8} {f(size):>9} {c['tp']:5d} {c['fp']:5d} {c['fn']:5d}")


def split(data: Path, n_train: int, max_labels: int, limit: int):
    """(training stems, labelled sources, test stems): the same split every run."""
    stems = sorted(p.stem for p in (data / "images").glob("*.png"))
    train_stems = pick_training(stems, data, n_train)
    quota = max_labels // len(train_stems)
    sources = [s for s in (labelled_crop(load(stem, data), quota) for stem in train_stems) if s]
    test_stems = [s for s in stems if s not in train_stems]
    return train_stems, sources, test_stems[:limit] if limit else test_stems


def train_and_predict(sources, tests, options, threshold: float,
                      label: str = "", weights=None) -> tuple[list, float, float]:
    """Train on `sources`, predict every test image: (predictions, training s, prediction s).

    `weights`: trainer.init_weights.WeightPaths for init base/coco/auto (None: neither configured)."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle, train_s = train_bundle(sources, Path(tmp) / "bundle", options, label, weights)
        preds, predict_s = predict_all(bundle, tests, options.device, threshold)
    return preds, train_s, predict_s


def train_bundle(sources, bundle: Path, options, label: str = "", weights=None) -> tuple[Path, float]:
    """Train on `sources` into the folder `bundle`: (the bundle folder, training s)."""
    from trainer.train import train_model

    def progress(p) -> None:
        if p.stage == "training" and (p.iteration % 50 == 0 or p.iteration == p.max_iterations):
            loss = "n/a" if p.loss is None else f"{p.loss:.3f}"
            print(f"  {label}iteration {p.iteration}/{p.max_iterations}, loss {loss}", file=sys.stderr)

    t0 = time.perf_counter()
    result = train_model(sources, bundle, options, progress=progress, weights=weights)
    return result.bundle_dir, time.perf_counter() - t0


def predict_all(bundle: Path, tests, device: str, threshold: float, **predict) -> tuple[list, float]:
    """Every test image predicted by the bundle's model: (predictions, seconds). `predict`: more
    inference.pipeline.PredictOptions fields (auto_scale=True, ...)."""
    from annotations.model import AnnotatedImage
    from inference.pipeline import PredictOptions, predict_image
    from segmodel.detector import load_detector

    det = load_detector(bundle, device=device, trusted_roots=[bundle.parent], score_thr=threshold)
    t0 = time.perf_counter()
    options = PredictOptions(threshold=threshold, **predict)
    preds = [AnnotatedImage(name=ann.name, image=ann.image,
                            instances=predict_image(ann.image, det, options).instances) for ann in tests]
    return preds, time.perf_counter() - t0


HEADER = (f"{'method':22} " + " ".join(f"{h:>{w}}" for h, w in (("precision", 9), ("recall", 7), ("F1", 6),
          ("mask AP", 8), ("AP50", 8), ("size acc", 9))) + f" {'TP':>5} {'FP':>5} {'FN':>5}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-images", type=int, default=4)
    parser.add_argument("--max-labels", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--init", default="random", help="random, base (SEGBOT_BASE_MODEL) or a bundle path")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=20, help="test images (0 = all the others)")
    args = parser.parse_args(argv)

    from bench_speed import hardware

    from annotations.model import AnnotatedImage
    from core.settings import load_settings
    from inference.baseline import otsu_watershed
    from measures.evaluation import evaluate
    from segmodel.options import TrainOptions
    from trainer.init_weights import WeightPaths

    train_stems, sources, test_stems = split(args.data, args.train_images, args.max_labels, args.limit)
    tests = [load(stem, args.data) for stem in test_stems]
    print("bench_quality: tiny Cascade Mask R-CNN from few labels vs Otsu + watershed, EMPS dev images")
    print(f"hardware : {hardware()}")
    print(f"training : {len(sources)} images {', '.join(train_stems)}; "
          f"{sum(len(s.instances) for s in sources)} labelled particles in one crop each; arch {args.arch}, "
          f"{args.iterations} iterations, init {args.init}, {args.device}")

    options = TrainOptions(arch=args.arch, iterations=args.iterations, device=args.device, holdout=False,
                           init=args.init)
    preds, train_s, t_model = train_and_predict(sources, tests, options, args.threshold,
                                                weights=WeightPaths.from_settings(load_settings()))
    t0 = time.perf_counter()
    bases = [AnnotatedImage(name=ann.name, image=ann.image, instances=otsu_watershed(ann.image))
             for ann in tests]
    t_base = time.perf_counter() - t0

    n_gt = sum(len(a.instances) for a in tests)
    print(f"trained  : {args.iterations} iterations in {train_s:.0f} s")
    print(f"test     : {len(tests)} other images, {n_gt} ground-truth particles; threshold {args.threshold}; "
          f"model {t_model:.0f} s, baseline {t_base:.1f} s")
    model_res = evaluate(preds, tests)
    base_res = evaluate(bases, tests)
    print()
    print(HEADER)
    print(row(f"model ({args.arch})", model_res))
    print(row("Otsu + watershed", base_res))
    f_model, f_base = model_res["count"]["f1"], base_res["count"]["f1"]
    ratio = f_model / f_base if f_base else float("inf")
    print()
    print(f"ratio    : F1 model / F1 baseline = {ratio:.2f}  (goal >= 1.2)")


if __name__ == "__main__":
    main()
