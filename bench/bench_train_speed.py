"""CPU training speed: seconds per iteration over the bare backbone forward+backward, fast ops off vs on.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_train_speed.py --quick     # ~3 min on 2 CPU cores
    PYTHONPATH=$PWD .venv/bin/python bench/bench_train_speed.py             # ~8 min
    PYTHONPATH=$PWD .venv/bin/python bench/bench_train_speed.py --only on   # one variant
    PYTHONPATH=$PWD .venv/bin/python bench/bench_train_speed.py --quality 150   # F1 off vs on, ~25 min

What is timed: `trainer.train.train_model` itself (the `tiny` preset, random init, no hold-out,
batch 2 x 256 px) on two labelled 300 px crops of a real EMPS-dev image (every particle inside
labelled). Its progress callback, called after every iteration, closes that iteration's clock and
then runs the reference: the bare ResNet-18 backbone (mmdet's, as in the `tiny` preset) forward + backward
on a 2 x 3 x 256 x 256 batch, timed apart and excluded from the iteration's time. So every iteration
has its reference measured right after it on the same threads and under the same machine load, and
the ratio s/it / bare-pass s is from one run. Two variants run one after the other in this process,
with the same seed (the same samples): `off` (SEGBOT_FAST_OPS=0: mmdet/mmcv as shipped) and `on`
(segmodel.fast_ops installed, the default). A few iterations of each are profiled with
torch.profiler; the top ops by self CPU time are printed. Goal (issue #15): ratio <= 3.5.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import hardware  # noqa: E402

STEM = "78b42bc5e8"  # EMPS-dev image with many particles (bench_scenarios' first same-image case)
GOAL = 3.5
CROP_SIDE = 300  # px; the image is 636 x 512 and its particles ~46 px across (rescale 1)


def load_avg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def labelled_sources(data: Path, side: int = CROP_SIDE):
    """The image with two labelled side x side crops (left and right halves, every particle whose
    centre lies inside): regions larger than the 256 px training crop, so every batch is 2 x 256 px."""
    from bench_quality import centres, load

    from annotations.model import AnnotatedImage, Crop

    ann = load(STEM, data)
    c = centres(ann.instances)
    crops, keep = [], np.zeros(len(ann.instances), bool)
    for cx in (ann.width * 0.25, ann.width * 0.75):
        x0 = float(min(max(0.0, cx - side / 2), ann.width - side))
        y0 = float(max(0.0, (ann.height - side) / 2))
        crops.append(Crop(x0, y0, x0 + side, y0 + side))
        keep |= (c[:, 0] >= x0) & (c[:, 0] < x0 + side) & (c[:, 1] >= y0) & (c[:, 1] < y0 + side)
    kept = [inst for inst, k in zip(ann.instances, keep, strict=True) if k]
    return [AnnotatedImage(name=ann.name, image=ann.image, instances=kept, crops=crops)]


class BareBackbone:
    """mmdet's ResNet-18 as the tiny preset builds it (random init, BN trained), forward + backward."""

    def __init__(self, batch: int, size: int) -> None:
        import torch
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules

        from segmodel.config import build_model_config

        register_all_modules(init_default_scope=True)
        cfg = dict(build_model_config("tiny", 1)["backbone"])
        self.net = MODELS.build(cfg)
        self.net.train()  # mmdet's ResNet.train() returns None
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, size, size, generator=gen)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        outs = self.net(self.x)
        loss = sum(o.mean() for o in outs)
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        return time.perf_counter() - t0


def run_variant(name: str, sources, iterations: int, warmup: int, profile_its: int, bare: BareBackbone,
                seed: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from segmodel.options import TrainOptions
    from trainer.train import train_model

    os.environ["SEGBOT_FAST_OPS"] = "1" if name == "on" else "0"
    options = TrainOptions(arch="tiny", iterations=iterations, holdout=False, init="random", seed=seed)
    it_s: list[float] = []
    bare_s: list[float] = []
    state = {"t": None, "prof": None, "threads": None}
    prof_from, prof_to = warmup, warmup + profile_its  # iterations [prof_from, prof_to) are profiled

    def progress(p) -> None:
        now = time.perf_counter()
        if p.stage != "training" or p.iteration == 0:
            state["t"] = time.perf_counter()
            return
        if state["prof"] is not None and p.iteration == prof_to:
            state["prof"].stop()
        if state["t"] is not None and p.iteration > warmup and not (prof_from < p.iteration <= prof_to):
            it_s.append(now - state["t"])
            state["threads"] = torch.get_num_threads()
            bare_s.append(bare())
        if p.iteration == prof_from and profile_its:
            state["prof"] = profile(activities=[ProfilerActivity.CPU])
            state["prof"].start()
        if p.iteration % 10 == 0:
            print(f"  [{name}] iteration {p.iteration}/{p.max_iterations}, loss {p.loss:.3f}, "
                  f"load {load_avg()}")
        state["t"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_model(sources, Path(tmp) / "model", options, progress=progress)
        wall = time.perf_counter() - t0
    prof = state["prof"]
    table = ""
    if prof is not None:
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                          max_name_column_width=48)
    ratios = [a / b for a, b in zip(it_s, bare_s, strict=True)]
    return {
        "name": name, "it_s": it_s, "bare_s": bare_s, "ratios": ratios, "threads": state["threads"],
        "final_loss": result.metrics.get("final_loss"), "wall": wall, "table": table,
    }


def summary(r: dict) -> str:
    it, bare = statistics.mean(r["it_s"]), statistics.mean(r["bare_s"])
    return (f"{r['name']:>3}: {statistics.median(r['it_s']):.3f} s/it median ({it:.3f} mean, "
            f"{len(r['it_s'])} its) | bare backbone {statistics.median(r['bare_s']):.3f} s median "
            f"({bare:.3f} mean) | ratio {statistics.median(r['ratios']):.2f} median of pairs, "
            f"{it / bare:.2f} of means | threads {r['threads']} | final loss {r['final_loss']:.4f}")


def quality(iterations: int, data: Path, seed: int) -> None:
    """bench_scenarios' same-image case on STEM, trained once with fast ops off and once on (same
    seed, same labels), the unlabelled rest of the image scored: the swaps must not cost quality.
    Prediction loads the bundle without fast ops in both cases, so only the training differs."""
    from bench_scenarios import same_image, score

    from segmodel.options import TrainOptions

    print(f"quality  : same image {STEM}, two crops of <= 50 labels, {iterations} iterations, seed {seed}, "
          f"threshold 0.5; load average {load_avg()}")
    for name in ("off", "on"):
        os.environ["SEGBOT_FAST_OPS"] = "1" if name == "on" else "0"
        options = TrainOptions(arch="tiny", iterations=iterations, holdout=False, init="random", seed=seed)
        run = same_image([STEM], data, options, 0.5)
        s = score(run.preds, run.gts)
        print(f"fast ops {name:>3}: P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} "
              f"(TP {s['tp']} FP {s['fp']} FN {s['fn']}), size acc {s['size_acc']:.3f}, "
              f"mask AP {s['mask_ap'] if s['mask_ap'] is None else round(s['mask_ap'], 3)}, "
              f"training {run.train_s / 60:.1f} min ({run.train_s / iterations:.2f} s/it), "
              f"load {load_avg()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (~3 min)")
    parser.add_argument("--iterations", type=int, default=None, help="per variant (default 40, --quick 16)")
    parser.add_argument("--only", choices=["off", "on"], default=None)
    parser.add_argument("--profile", type=int, default=None, help="profiled iterations (default 3, quick 2)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=None, metavar="ITERATIONS",
                        help="instead: same-image F1 with fast ops off vs on at this budget (150: ~25 min)")
    args = parser.parse_args(argv)

    import torch
    from bench_quality import DATA

    iterations = args.iterations or (16 if args.quick else 40)
    profile_its = args.profile if args.profile is not None else (2 if args.quick else 3)
    warmup = 3
    if args.quality:
        print(f"hardware : {hardware()}, torch {torch.__version__}")
        quality(args.quality, args.data or DATA, args.seed)
        return
    sources = labelled_sources(args.data or DATA)
    bare = BareBackbone(2, 256)
    print("bench_train_speed: trainer.train.train_model s/it vs the bare ResNet-18 forward+backward")
    print(f"hardware : {hardware()}, torch {torch.__version__}")
    print(f"data     : EMPS-dev {STEM}, {len(sources[0].instances)} labelled particles in "
          f"{len(sources[0].crops)} crops of {CROP_SIDE} px; tiny preset, batch 2 x 256 px, random init")
    print(f"budget   : {iterations} iterations per variant, first {warmup} not timed, "
          f"{profile_its} profiled (not timed); load average {load_avg()}")
    results = []
    for name in [args.only] if args.only else ["off", "on"]:
        results.append(run_variant(name, sources, iterations, warmup, profile_its, bare, args.seed))
        print(summary(results[-1]))
    print(f"load average after: {load_avg()}")
    for r in results:
        print(f"\n--- profile, fast ops {r['name']} ({profile_its} iterations, top ops by self CPU time)")
        print(r["table"])
    print("--- summary")
    for r in results:
        print(summary(r))
    if len(results) == 2:
        off, on = (statistics.median(r["it_s"]) for r in results)
        print(f"speed-up: {off / on:.2f}x per iteration (median); goal ratio <= {GOAL}: "
              f"{'met' if statistics.median(results[1]['ratios']) <= GOAL else 'not met'}")


if __name__ == "__main__":
    main()
