"""Speed: the prediction pipeline's time over the bare detector forward on the same tiles.

    .venv/bin/python bench/bench_speed.py                      # real tiny mmdet model, random init
    .venv/bin/python bench/bench_speed.py --detector fake      # thresholding fake (pipeline cost only)
    .venv/bin/python bench/bench_speed.py --bundle DIR         # a trained bundle (load_detector)
    .venv/bin/python bench/bench_speed.py --bundle DIR --image F.png --threshold 0.7 --unsure-floor 0.25

"Bare forward" = detector.detect() on the pipeline's own tiles (already cut and rescaled,
cutting not timed), in the same batches. "Pipeline" = predict_image() end to end on the image:
cutting + rescaling tiles, the same detect() calls, mask cropping, outlines, merging across tiles,
filters. Goal: pipeline / bare <= 1.10. Both are timed on the same process, one after the other,
after a warm-up call; the ratio is from one run. --unsure-floor: the detector keeps detections down to
that floor (as the predict job's does) and the pipeline is also timed keeping those under the
threshold apart (PredictOptions.unsure_floor, as the predict job asks): its cost over the plain run.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


OBJECT_SIZE = 20.0  # largest typical particle diameter in the scenes below, px (sets the tile overlap)


def hardware() -> str:
    from core.machine import cpu_name, memory_gib

    cpu, gib = cpu_name(), memory_gib()
    mem = f", {gib:.0f} GiB" if gib else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} logical CPUs{mem}, load average {load:.1f}, "
            f"Python {platform.python_version()}")


def make_detector(kind: str, tile: int, threshold: float, bundle: str | None = None):
    """(detector, description). kind: 'tiny' (random-init mmdet), 'fake', or a bundle dir."""
    if bundle:
        from segmodel.detector import load_detector

        path = Path(bundle).resolve()
        det = load_detector(path, trusted_roots=[path.parent], score_thr=threshold)
        arch = det.meta.get("arch", "?")
        return det, f"mmdet bundle {path.name} ({arch}), loaded with segmodel.detector.load_detector"
    if kind == "fake":
        from tests.fake_detector import ThresholdDetector

        det = ThresholdDetector(tile_size=tile, object_size=OBJECT_SIZE)
        return det, "fake ThresholdDetector (threshold + connected components), full-tile masks"
    import torch

    from segmodel.config import build_model_config
    from segmodel.detector import MMDetDetector, build_model

    torch.manual_seed(0)
    model = build_model(build_model_config("tiny", 1))
    det = MMDetDetector(model, ["particle"], rescale=1.0, tile_size=tile, score_thr=threshold)
    det.object_size = OBJECT_SIZE  # what load_detector takes from a bundle's label statistics
    return det, (
        "real mmdet Cascade Mask R-CNN 'tiny' preset, RANDOM weights (no trained bundle needed), "
        f"score_thr {threshold} inside the model, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def scene(size: int, seed: int = 0) -> np.ndarray:
    """Bright discs (radius 5-10 px, ~1 per 40x40 px) on a dark background, uint8 RGB."""
    from tests.fake_detector import disc_image

    rng = np.random.default_rng(seed)
    step = 40
    centres = [(x, y) for x in range(20, size - 10, step) for y in range(20, size - 10, step)]
    discs = [(x + rng.uniform(-8, 8), y + rng.uniform(-8, 8), rng.uniform(5, 10)) for x, y in centres]
    return disc_image(size, size, discs, value=200, background=50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", choices=["tiny", "fake"], default="tiny")
    parser.add_argument("--bundle", help="trained bundle directory (overrides --detector)")
    parser.add_argument("--size", type=int, default=None, help="image side, px (default 640, fake 2048)")
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--unsure-floor", type=float, default=None,
                        help="also time keeping the detections from this floor to the threshold apart")
    parser.add_argument("--image", type=Path, default=None, help="a real image instead of the drawn scene")
    args = parser.parse_args(argv)

    from inference.pipeline import PredictOptions, iter_tile_batches, predict_image, tile_geometry

    size = args.size or (2048 if args.detector == "fake" and not args.bundle else 640)
    floor = args.threshold if args.unsure_floor is None else min(args.unsure_floor, args.threshold)
    det, what = make_detector(args.detector, args.tile, floor, args.bundle)
    if args.image is not None:
        from imaging.images import read_image

        image = read_image(args.image.read_bytes(), name=args.image.name).image
    else:
        image = scene(size)
    options = PredictOptions(threshold=args.threshold, tile=args.tile, batch_size=args.batch)
    tiles, scale = tile_geometry(image.shape, det, options)
    batches = [[px for _, px, _, _ in b] for b in iter_tile_batches(image, tiles, scale, options.batch_size)]

    det.detect(batches[0][:1])  # warm-up (lazy init, allocator)
    t0 = time.perf_counter()
    n_det = 0
    for batch in batches:
        n_det += sum(len(d) for d in det.detect(batch))
    bare = time.perf_counter() - t0

    t0 = time.perf_counter()
    pred = predict_image(image, det, options)
    total = time.perf_counter() - t0
    if args.unsure_floor is not None:
        from dataclasses import replace

        t0 = time.perf_counter()
        asked = predict_image(image, det, replace(options, unsure_floor=args.unsure_floor))
        unsure_s = time.perf_counter() - t0

    print("bench_speed: prediction pipeline vs bare detector forward on the same tiles")
    print(f"hardware : {hardware()}")
    print(f"detector : {what}")
    height, width = image.shape[:2]
    print(f"image    : {args.image.name if args.image else 'drawn scene'}, {width} x {height} px, "
          f"{len(tiles)} tiles of {args.tile} px (scale {scale}), "
          f"batch {args.batch}")
    print(f"objects  : {n_det} detections above {floor} in the tiles -> "
          f"{len(pred.instances)} after merging")
    print(f"bare     : {bare:.2f} s  ({bare / len(tiles) * 1000:.0f} ms per tile)")
    per_det = (total - bare) / max(n_det, 1) * 1e6
    print(f"pipeline : {total:.2f} s  (overhead {total - bare:+.2f} s, {per_det:.0f} us per detection)")
    print(f"ratio    : pipeline / bare = {total / bare:.3f}  (goal <= 1.10)")
    if args.unsure_floor is not None:
        assert len(asked.instances) == len(pred.instances)  # the kept outlines do not change
        print(f"unsure   : {unsure_s:.2f} s keeping {len(asked.unsure)} detections from {args.unsure_floor} "
              f"to the threshold apart; / plain pipeline = {unsure_s / total:.3f}, "
              f"/ bare = {unsure_s / bare:.3f}")


if __name__ == "__main__":
    main()
