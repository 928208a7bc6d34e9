"""Issue 6's "done when", as a user would do it: two labelled crops of one SEM image -> a whole other image.

    .venv/bin/python bench/bench_sem_pair.py --work /tmp/sem                 # random init
    .venv/bin/python bench/bench_sem_pair.py --work /tmp/sem-b --init base   # from SEGBOT_BASE_MODEL

EMPS (../shared/data/emps-dev, MIT) holds a series of SEM micrographs of rod-shaped particles
taken the same way: TRAIN (42 particles) and TEST (38 particles, never seen in training).
The script writes TRAIN as a LabelMe file with two `crop` rectangles (left and right half, each
with the particles whose centre lies inside), then runs the real CLI:
`segbot train`, `segbot predict`, `segbot eval` against TEST's full labels; the Otsu + watershed
baseline is written as a LabelMe file and scored by the same `segbot eval`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, centres, load  # noqa: E402

TRAIN, TEST = "7ea28e7e54", "9fa90de188"
SEGBOT = Path(sys.executable).parent / "segbot"


def two_crops(ann):
    """TRAIN as a user would label it: a left and a right crop, every particle inside labelled."""
    from annotations.model import AnnotatedImage, Crop

    mid = ann.width / 2
    x = centres(ann.instances)[:, 0]
    crops = [Crop(0.0, 0.0, mid, float(ann.height)), Crop(mid, 0.0, float(ann.width), float(ann.height))]
    # the two crops cover the image: every particle is labelled, each counted in the crop of its centre
    return AnnotatedImage(name=ann.name, image=ann.image, instances=ann.instances, crops=crops), [
        int((x < mid).sum()), int((x >= mid).sum())]


def run(*args: str) -> str:
    print("$ segbot " + " ".join(args), flush=True)
    # stderr (progress bars) passes through; stdout is the command's result
    done = subprocess.run([str(SEGBOT), *args], check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


def scores(pred: Path, gt: Path) -> dict:
    return json.loads(run("eval", str(pred), str(gt), "--json"))


def line(name: str, result: dict) -> str:
    c = result["count"]
    ap = (result.get("coco") or {}).get("segm", {}).get("AP")
    size = result["size_accuracy"]["all"]["accuracy"]
    return (f"{name:20} P {c['precision']:.3f}  R {c['recall']:.3f}  F1 {c['f1']:.3f}  "
            f"mask AP {ap if ap is None else f'{ap:.3f}'}  size acc {size if size is None else f'{size:.3f}'}"
            f"  (tp {c['tp']}, fp {c['fp']}, fn {c['fn']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="new folder for files, model and results")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--init", default="random")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)

    from annotations.labelme import write_labelme
    from inference.baseline import otsu_watershed

    work = args.work
    (work / "gt").mkdir(parents=True, exist_ok=True)
    train_ann, per_crop = two_crops(load(TRAIN, DATA))
    test_ann = load(TEST, DATA)
    train_json = write_labelme(work / f"{TRAIN}.json", train_ann.image, train_ann.instances, train_ann.name,
                               crops=train_ann.crops)
    gt_json = write_labelme(work / "gt" / f"{TEST}.json", test_ann.image, test_ann.instances, test_ann.name)
    image = work / f"{TEST}.png"
    image.write_bytes((DATA / "images" / f"{TEST}.png").read_bytes())
    print(f"train: {TRAIN}, two crops with {per_crop[0]} + {per_crop[1]} labelled particles; "
          f"test: {TEST}, {len(test_ann.instances)} particles; init {args.init}, "
          f"{args.iterations} iterations")

    t0 = time.perf_counter()
    run("train", str(train_json), "--out", str(work / "model"), "--iterations", str(args.iterations),
        "--init", args.init)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    run("predict", str(work / "model"), str(image), "--out", str(work / "pred"),
        "--threshold", str(args.threshold))
    t_pred = time.perf_counter() - t0
    pred_json = work / "pred" / f"{TEST}.json"
    outputs = sorted(p.name for p in (work / "pred").iterdir())
    base_dir = work / "baseline"
    base_dir.mkdir(exist_ok=True)
    write_labelme(base_dir / f"{TEST}.json", test_ann.image, otsu_watershed(test_ann.image), test_ann.name)

    holdout = json.loads((work / "model" / "bundle.json").read_text())["metrics"].get("holdout")
    print(f"trained in {t_train:.0f} s, predicted in {t_pred:.1f} s; outputs: {', '.join(outputs)}")
    if holdout:
        print(f"held-out crop during training: P {holdout['precision']:.3f} R {holdout['recall']:.3f} "
              f"({holdout['n_gt']} particles)")
    model_res, base_res = scores(pred_json, gt_json), scores(base_dir / f"{TEST}.json", gt_json)
    print(line(f"model (tiny, {args.init})", model_res))
    print(line("Otsu + watershed", base_res))
    f_base = base_res["count"]["f1"]
    print(f"F1 model / F1 baseline = {model_res['count']['f1'] / f_base if f_base else float('inf'):.2f}")


if __name__ == "__main__":
    main()
