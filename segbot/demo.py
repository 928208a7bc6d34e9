"""`segbot demo`: the whole path offline, no services, no token, a few minutes on a 2-core CPU.

It draws a microscope-like image with particles labelled in three crops, writes it as a real
LabelMe file and reads it back, trains the tiny Cascade Mask R-CNN on the CPU, predicts a second
image it has never seen, and writes the overlay PNG, LabelMe JSON and CSV into a folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from segbot.errors import user_errors

DEMO_ITERATIONS = 120


@dataclass
class DemoResult:
    out_dir: Path
    n_found: int
    n_truth: int
    mean_d_px: float | None
    precision: float
    recall: float
    seconds: float
    train_seconds: float
    paths: dict[str, Path]


def run_demo(out_dir: Path, iterations: int = DEMO_ITERATIONS, seed: int = 7, progress=None,
             echo=lambda s: None) -> DemoResult:
    import cv2

    from annotations.evaluate import match_centre_rule
    from annotations.export import write_outputs
    from annotations.labelme import read_labelme
    from inference.pipeline import PredictOptions, predict_image
    from segmodel.detector import load_detector
    from segmodel.options import TrainOptions
    from trainer.synthetic import demo_pair, labelme_dict
    from trainer.train import train_model

    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_ann, test_ann = demo_pair(seed)
    # The training file goes through the same LabelMe reader a user's upload does.
    train_json = out_dir / "demo_train.json"
    train_json.write_text(json.dumps(labelme_dict(train_ann, "demo_train.png")), encoding="utf-8")
    truth_json = out_dir / "demo_test_truth.json"
    truth_json.write_text(json.dumps(labelme_dict(test_ann, "demo_test.png")), encoding="utf-8")
    test_png = out_dir / "demo_test.png"
    cv2.imwrite(str(test_png), cv2.cvtColor(test_ann.image, cv2.COLOR_RGB2BGR))
    source = read_labelme(train_json)
    echo(f"training image: {len(source.instances)} objects labelled in {len(source.crops)} crops "
         f"({', '.join(source.classes)}); unseen test image: {test_png.name}")

    result = train_model([source], out_dir / "model",
                         TrainOptions(arch="tiny", iterations=iterations, seed=seed, device="cpu"),
                         progress=progress)
    detector = load_detector(result.bundle_dir, device="cpu", trusted_roots=[out_dir], score_thr=0.5)
    prediction = predict_image(test_ann.image, detector, PredictOptions(threshold=0.5))
    paths = write_outputs(out_dir, "demo_test_prediction", test_ann.image, prediction.instances,
                          title="segbot demo: unseen synthetic image", image_name=test_png.name)
    score = match_centre_rule(prediction.instances, test_ann.instances)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return DemoResult(
        out_dir=out_dir, n_found=len(prediction.instances), n_truth=len(test_ann.instances),
        mean_d_px=summary.get("mean_d_px"), precision=score.precision, recall=score.recall,
        seconds=time.monotonic() - started, train_seconds=result.seconds, paths=paths,
    )


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the results (default ./segbot-demo-<time>).")
@click.option("--iterations", type=click.IntRange(1, 20000), default=DEMO_ITERATIONS, show_default=True,
              help="Training iterations.")
@click.option("--seed", type=int, default=7, show_default=True)
@user_errors
def demo(out_dir: Path | None, iterations: int, seed: int) -> None:
    """Train a tiny model on a synthetic labelled image and measure a second one, offline."""
    from segbot.commands.train import ProgressLine, _clock

    out_dir = out_dir or Path.cwd() / f"segbot-demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.ClickException(f"{out_dir} is not empty; choose a new folder with --out")
    click.echo(f"segbot demo: writing to {out_dir}")
    r = run_demo(out_dir, iterations=iterations, seed=seed, progress=ProgressLine(), echo=click.echo)
    for role in ("overlay", "labelme", "csv"):
        click.echo(f"  {role:8s} {r.paths[role]}")
    mean_d = "-" if r.mean_d_px is None else f"{r.mean_d_px:.1f} px"
    click.echo(f"Done in {_clock(r.seconds)}: found {r.n_found} objects on the unseen image "
               f"(truth {r.n_truth}; recall {r.recall:.2f}, precision {r.precision:.2f}), "
               f"mean equivalent diameter {mean_d}. Results in {r.out_dir}")
