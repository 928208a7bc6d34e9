"""The demo behind `segbot demo` (segbot/commands/demo.py): the whole path offline, no services,
no token, a few minutes on a 2-core CPU.

It draws a microscope-like image with particles labelled in three crops, writes it as a real
LabelMe file and reads it back, trains the tiny Cascade Mask R-CNN on the CPU, predicts a second
image it has never seen, and writes the overlay PNG, LabelMe JSON and CSV into a folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from trainer.init_weights import WeightPaths

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
    per_class: dict[str, tuple[int, int]]  # class -> (found of its class, truth), by the centre rule


def run_demo(out_dir: Path, iterations: int = DEMO_ITERATIONS, seed: int = 7, progress=None,
             echo=lambda s: None, weights: WeightPaths | None = None) -> DemoResult:
    """`weights`: the operator's base model for the default init 'auto' (None: start from random)."""
    import cv2

    from annotations.labelme import read_labelme
    from inference.pipeline import PredictOptions, predict_image
    from measures.evaluation import match_centre_rule
    from outputs.files import write_outputs
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
                         progress=progress, weights=weights)
    detector = load_detector(result.bundle_dir, device="cpu", trusted_roots=[out_dir], score_thr=0.5)
    prediction = predict_image(test_ann.image, detector, PredictOptions(threshold=0.5))
    paths = write_outputs(out_dir, "demo_test_prediction", test_ann.image, prediction.instances,
                          title="segbot demo: unseen synthetic image", image_name=test_png.name)
    score = match_centre_rule(prediction.instances, test_ann.instances)
    per_class = {}
    for label in sorted({i.label for i in test_ann.instances}):
        truth = [i for i in test_ann.instances if i.label == label]
        found = match_centre_rule([i for i in prediction.instances if i.label == label], truth)
        per_class[label] = (found.tp, len(truth))
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return DemoResult(
        out_dir=out_dir, n_found=len(prediction.instances), n_truth=len(test_ann.instances),
        mean_d_px=summary.get("mean_d_px"), precision=score.precision, recall=score.recall,
        seconds=time.monotonic() - started, train_seconds=result.seconds, paths=paths, per_class=per_class,
    )
