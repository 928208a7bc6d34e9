"""Memory: peak RSS of predicting an 8,000 x 8,000 image vs an image of one tile.

    .venv/bin/python bench/bench_memory.py                    # fake detector, 8000 px
    .venv/bin/python bench/bench_memory.py --detector tiny --size 1536   # real tiny mmdet (slow on CPU)

Each case runs in a fresh subprocess: build the detector, make the image, then reset the
kernel's peak-RSS mark (/proc/self/clear_refs = 5) and read VmRSS as the baseline. The baseline
holds the interpreter, libraries, the model and the input image itself (8000^2 x 3 bytes = 183 MiB,
which any caller must hold anyway; it is subtracted). After predict_image, VmHWM - baseline is the
pipeline's working memory: tile crops, the detector's per-batch output (full-tile masks), the
candidates kept across tiles, the merge, the output polygons. Goal: large / one tile <= 1.2.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _status(key: str) -> int:
    """A /proc/self/status field in bytes."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(args: argparse.Namespace) -> None:
    import gc
    import time

    from bench_speed import make_detector, scene

    from inference.pipeline import PredictOptions, predict_image

    det, what = make_detector(args.detector, args.tile, args.threshold)
    image = scene(args.size)
    options = PredictOptions(threshold=args.threshold, tile=args.tile, batch_size=args.batch)
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset the peak-RSS mark: what follows is the prediction only
    base = _status("VmRSS")
    t0 = time.perf_counter()
    pred = predict_image(image, det, options)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    print(json.dumps({
        "size": args.size, "base": base, "peak": peak, "work": peak - base, "tiles": pred.tiles,
        "objects": len(pred.instances), "candidates": pred.stats["candidates"], "seconds": seconds,
        "image_bytes": int(image.nbytes), "detector": what,
    }))


def run_case(size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--size", str(size), "--detector", args.detector,
           "--tile", str(args.tile), "--batch", str(args.batch), "--threshold", str(args.threshold)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", choices=["tiny", "fake"], default="fake")
    parser.add_argument("--size", type=int, default=8000, help="side of the large image, px")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1, help="tiles per detector call (peak grows with it)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return

    from bench_speed import hardware

    mib = 1024 * 1024
    one = run_case(args.tile, args)
    big = run_case(args.size, args)
    print("bench_memory: peak RSS above the baseline (model + input image loaded), fresh process per case")
    print(f"hardware : {hardware()}")
    print(f"detector : {one['detector']}")
    for name, r in (("one tile", one), ("large", big)):
        print(f"{name:9}: {r['size']} x {r['size']} px, {r['tiles']} tiles, {r['candidates']} candidates -> "
              f"{r['objects']} objects in {r['seconds']:.1f} s; baseline {r['base'] / mib:.0f} MiB "
              f"(image {r['image_bytes'] / mib:.0f} MiB), peak {r['peak'] / mib:.0f} MiB, "
              f"working {r['work'] / mib:.1f} MiB")
    print(f"ratio    : working memory large / one tile = {big['work'] / one['work']:.3f}  (goal <= 1.2)")
    print(f"           whole-process peak RSS large / one tile = {big['peak'] / one['peak']:.3f} "
          "(includes the large input image itself)")


if __name__ == "__main__":
    main()
