"""Does our base model help? Fine-tuning from it vs from random weights, same labels, same budget.

    .venv/bin/segbot weights base --out /tmp/base --dataset ../shared/data/emps-dev \\
        --dataset ../shared/data/emps-train \\
        $(.venv/bin/python bench/bench_base.py --print-excludes)          # once: pretrain (CPU: long)
    .venv/bin/python bench/bench_base.py --base /tmp/base --iterations 100 300

Labels and test images are those of bench_quality.py (<= 50 particles in one crop on each of 4
EMPS images; 20 other EMPS images with full labels). The base bundle must not have seen any of
them, nor any panel of bench_scenarios' figure series (bench_figures.scored_panels): its bundle.json
lists its sources, and the run stops if one of them is there.
For each iteration budget both starts are trained with the same seed and scored by the centre rule;
the printed ratio is F1(base) / F1(random), measured in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_figures import scored_panels  # noqa: E402
from bench_quality import DATA, HEADER, load, row, split, train_and_predict  # noqa: E402
from bench_sem_pair import TEST as SEM_TEST  # noqa: E402
from bench_sem_pair import TRAIN as SEM_TRAIN  # noqa: E402


def pretrained_on(base: Path) -> set[str]:
    """The image stems a base bundle was pretrained on (its bundle.json lists its sources)."""
    meta = json.loads((Path(base) / "bundle.json").read_text())
    return {Path(name).stem for name in meta.get("sources", [])}


def held_out(train_stems: list[str], test_stems: list[str], data: Path = DATA) -> list[str]:
    """Every image a benchmark trains or tests on: the base model must not see them."""
    return sorted({*train_stems, *test_stems, SEM_TRAIN, SEM_TEST, *scored_panels(data)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="base model bundle (segbot weights base)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--print-excludes", action="store_true",
                        help="print the --exclude options for `segbot weights base` and stop")
    args = parser.parse_args(argv)

    train_stems, sources, test_stems = split(args.data, 4, 50, args.limit)
    excluded = held_out(train_stems, test_stems, args.data)
    if args.print_excludes:
        print(" ".join(f"--exclude {stem}" for stem in excluded))
        return
    if args.base is None:
        parser.error("--base is required")

    from bench_speed import hardware

    from measures.evaluation import evaluate
    from segmodel.options import TrainOptions

    meta = json.loads((args.base / "bundle.json").read_text())
    seen = pretrained_on(args.base)
    leaked = seen & set(excluded)
    if leaked:
        sys.exit(f"the base model was trained on benchmark images: {', '.join(sorted(leaked))}")

    tests = [load(stem, args.data) for stem in test_stems]
    print("bench_base: fine-tuning from our base model vs from random weights (tiny, EMPS)")
    print(f"hardware : {hardware()}")
    print(f"base     : {args.base} - {len(seen)} images, {meta.get('iterations')} iterations, "
          f"none of the {len(excluded)} benchmark images")
    n_labels, n_gt = sum(len(s.instances) for s in sources), sum(len(t.instances) for t in tests)
    print(f"labels   : {n_labels} particles in one crop on each of {', '.join(train_stems)}; "
          f"test: {len(tests)} images, {n_gt} particles")
    for iterations in args.iterations:
        results = {}
        for init in ("random", str(args.base)):
            options = TrainOptions(arch=meta.get("arch", "tiny"), iterations=iterations, device=args.device,
                                   holdout=False, init=init)
            name = "random" if init == "random" else "base"
            preds, train_s, pred_s = train_and_predict(sources, tests, options, args.threshold, f"{name} ")
            results[name] = evaluate(preds, tests)
            print(f"  {name}: {iterations} iterations trained in {train_s:.0f} s, "
                  f"predicted in {pred_s:.0f} s")
        print()
        print(HEADER)
        for name, result in results.items():
            print(row(f"{name}, {iterations} it", result))
        f_random, f_base = results["random"]["count"]["f1"], results["base"]["count"]["f1"]
        ratio = f_base / f_random if f_random else float("inf")
        print(f"ratio    : F1 base / F1 random at {iterations} iterations = {ratio:.2f}")
        print()


if __name__ == "__main__":
    main()
