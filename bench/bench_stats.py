"""Stats + evaluation of one image holding 5,000 objects; goal: under 1 s on the dev machine.

    .venv/bin/python bench/bench_stats.py [--objects 5000] [--compare-coco 400]

Prints each stage's wall time, the stats+eval total as a ratio of the 1 s goal and, with --compare-coco N,
the speed-up of the sparse COCO matcher over plain pycocotools COCOeval on N objects (same AP asserted).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotations.geometry import circle_polygon  # noqa: E402
from annotations.labelme import read_labelme, to_labelme  # noqa: E402
from annotations.model import AnnotatedImage, Instance  # noqa: E402
from measures.evaluation import _coco_datasets, _coco_eval_class, coco_ap, evaluate  # noqa: E402
from measures.objects import measure_arrays  # noqa: E402
from measures.stats import image_stats  # noqa: E402
from outputs.files import write_outputs  # noqa: E402


def scene(n: int, seed: int = 0) -> tuple[np.ndarray, list[Instance], list[Instance]]:
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    step = 24
    size = side * step + 20
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    gt, pred = [], []
    for k in range(n):
        cx = 12 + (k % side) * step + rng.uniform(-2, 2)
        cy = 12 + (k // side) * step + rng.uniform(-2, 2)
        r = rng.uniform(4, 9)
        label = "particle" if k % 7 else "single_site"
        gt.append(Instance(label, circle_polygon(cx, cy, r, 24)))
        if k % 10:  # every tenth missed
            pred.append(
                Instance(
                    label,
                    circle_polygon(
                        cx + rng.normal(0, 0.7), cy + rng.normal(0, 0.7), r * rng.uniform(0.9, 1.1), 24
                    ),
                    float(rng.uniform(0.5, 1)),
                )
            )
    for _ in range(n // 20):  # false positives
        pred.append(
            Instance("particle", circle_polygon(rng.uniform(0, size), rng.uniform(0, size), 5, 24), 0.3)
        )
    return image, gt, pred


def timed(label: str, func, results: dict):
    t = time.perf_counter()
    out = func()
    results[label] = time.perf_counter() - t
    print(f"{label:<34} {results[label]:8.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--compare-coco", type=int, default=0, metavar="N")
    args = parser.parse_args()
    image, gt, pred = scene(args.objects)
    h, w = image.shape[:2]
    print(f"image {w}x{h}, {len(gt)} GT objects, {len(pred)} predictions")
    t: dict[str, float] = {}

    def warm_up() -> None:  # first imports (scipy.spatial, shapely, cv2) are not what is measured
        small = AnnotatedImage("a", image[:50, :50], gt[:3])
        evaluate([small], [small])
        image_stats(measure_arrays(gt[:3]), (50, 50), 1.0)

    timed("warm-up (imports)", warm_up, {})
    a = timed("measure (5 per-object measures)", lambda: measure_arrays(pred), t)
    timed("image_stats (per class, NND)", lambda: image_stats(a, image.shape, 1.5), t)
    pa, ga = AnnotatedImage("x", image, pred), AnnotatedImage("x", image, gt)
    result = timed("evaluate: centre rule + size acc.", lambda: evaluate([pa], [ga], coco=False), t)
    core = (
        t["measure (5 per-object measures)"]
        + t["image_stats (per class, NND)"]
        + t["evaluate: centre rule + size acc."]
    )
    print(f"{'stats + eval total':<34} {core:8.3f} s   ratio to the 1 s goal: {core / 1.0:.2f}")
    c = result["count"]
    print(f"  precision {c['precision']:.3f} recall {c['recall']:.3f}")
    ap = timed("COCO AP segm + bbox (maxDets 1000)", lambda: coco_ap([(pred, gt, (h, w))]), t)
    print(f"  segm AP {ap['segm']['AP']:.3f}  bbox AP {ap['bbox']['AP']:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        timed("write_outputs (6 files)", lambda: write_outputs(Path(tmp), "x", image, pred, 1.5), t)
        data = json.dumps(to_labelme(image, pred, "x.png")).encode()
        timed("read_labelme (5000 shapes)", lambda: read_labelme(data, name="x.json"), t)

    if args.compare_coco:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        _, g2, p2 = scene(args.compare_coco, seed=1)
        gt_ds, dts = _coco_datasets([(p2, g2, (h, w))])
        stats = {}
        for name, cls in (("pycocotools COCOeval", COCOeval), ("sparse COCOeval", _coco_eval_class())):
            with contextlib.redirect_stdout(io.StringIO()):
                coco_gt = COCO()
                coco_gt.dataset = gt_ds
                coco_gt.createIndex()
                ev = cls(coco_gt, coco_gt.loadRes([dict(d) for d in dts]), "segm")
                ev.params.maxDets = [1, 100, 1000]
                start = time.perf_counter()
                ev.evaluate()
                ev.accumulate()
                stats[name] = (time.perf_counter() - start, ev.eval["precision"])
            print(f"{name + f' ({args.compare_coco} obj.)':<34} {stats[name][0]:8.3f} s")
        assert np.array_equal(stats["pycocotools COCOeval"][1], stats["sparse COCOeval"][1])
        print(
            f"  same precision arrays; speed-up "
            f"{stats['pycocotools COCOeval'][0] / stats['sparse COCOeval'][0]:.1f}x"
        )


if __name__ == "__main__":
    main()
