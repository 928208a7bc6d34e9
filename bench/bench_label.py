"""Tap-to-outline quality: a script "taps" every ground-truth particle and scores the proposed outline.

`.venv/bin/python bench/bench_label.py [--data DIR] [--series DOI] [--limit N]`

For each particle of EMPS (emps-dev, then one series of emps-train: the images of one paper, named by
its DOI in sources.csv) the tap is the particle's innermost pixel (the maximum of its distance
transform, where a person taps "the middle"). The proposal (annotations.proposer) is scored against
the mask: IoU, size accuracy min(D)/max(D) with D the equivalent-circle diameter, and "accepted"
(IoU >= 0.8, the share she would keep as it is). Particles are split into isolated ones and those in
clusters (their mask, grown by 2 px, touches another particle's). Goals: median IoU >= 0.85 isolated,
>= 0.7 in clusters. Also: milliseconds per tap (the page waits for it).
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

from annotations.geometry import polygon_to_mask  # noqa: E402
from annotations.proposer import propose_outline, to_gray  # noqa: E402
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


def tap_particles(gray: np.ndarray, seg: np.ndarray) -> list[dict]:
    """One row per particle of `seg`: IoU, size accuracy, cluster or not, time."""
    import cv2
    from scipy import ndimage

    rows = []
    h, w = seg.shape
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
        started = time.perf_counter()
        prop = propose_outline(gray, float(tx), float(ty))
        ms = (time.perf_counter() - started) * 1000
        if prop is None:
            iou, size = 0.0, 0.0
        else:
            pm = polygon_to_mask(prop.polygon, h, w)
            inter = float((pm & mask).sum())
            union = float((pm | mask).sum())
            iou = inter / union if union else 0.0
            a, b = float(pm.sum()), float(mask.sum())
            size = float(np.sqrt(min(a, b) / max(a, b))) if max(a, b) else 0.0
        rows.append({"iou": iou, "size": size, "clustered": clustered, "ms": ms})
    return rows


def summary(name: str, rows: list[dict]) -> str:
    if not rows:
        return f"  {name:<10} none"
    iou = np.array([r["iou"] for r in rows])
    size = np.array([r["size"] for r in rows])
    return (f"  {name:<10} n={len(rows):>4}  IoU median {np.median(iou):.3f} p10 {np.percentile(iou, 10):.3f}"
            f"  size median {np.median(size):.3f} p10 {np.percentile(size, 10):.3f}"
            f"  accepted {np.mean(iou >= 0.8):.0%}")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--series", default=SERIES, help="DOI (as in sources.csv) of the emps-train series")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of emps-dev (0: all)")
    args = parser.parse_args()
    print(f"bench_label: tap the centre of every GT particle; {hardware()}")
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
