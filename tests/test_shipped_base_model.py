"""The base model the repository ships (models/base-tiny): whole, vouched for by its manifest, built
without the images the benchmarks score, and what a fresh clone's `segbot train` starts from."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from core.settings import SHIPPED_BASE_MODEL

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_weights_match_their_manifest_and_load_whole_into_a_tiny_model():
    from segmodel.bundle import read_meta
    from segmodel.detector import build_model
    from trainer.init_weights import WeightPaths, load_init_weights, resolve_init
    from trainer.ship import verify_shipped

    manifest = verify_shipped(SHIPPED_BASE_MODEL)
    meta = read_meta(SHIPPED_BASE_MODEL)
    assert manifest["dtype"] == "float16" and meta["arch"] == manifest["arch"] == "tiny"
    assert meta["classes"] == ["particle"] and manifest["iterations"] >= 1000
    assert manifest["commit"] and manifest["command"].startswith("segbot weights base")
    weights = WeightPaths(base_model=SHIPPED_BASE_MODEL)
    assert resolve_init("auto", "tiny", weights) == "base"
    model = build_model(meta["config"])
    loaded = load_init_weights(model, "base", "tiny", weights)
    assert loaded["skipped"] == 0 and loaded["loaded"] == len(model.state_dict())
    # float16 in the file, float32 in the model that trains
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())


def test_the_shipped_model_never_saw_an_image_a_benchmark_scores():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from bench_base import held_out
        from bench_quality import DATA, split
    finally:
        sys.path.remove(str(REPO / "bench"))
    train_stems, _, test_stems = split(DATA, 4, 50, 20)
    benchmark = set(held_out(train_stems, test_stems, DATA))
    manifest = json.loads((SHIPPED_BASE_MODEL / "MANIFEST.json").read_text())
    seen = {Path(name).stem for name in manifest["sources"]}
    assert len(seen) > 300 and len(benchmark) >= 40
    assert not seen & benchmark


def test_a_changed_byte_is_caught(tmp_path):
    from segmodel.bundle import BundleError
    from trainer.ship import verify_shipped

    copy = tmp_path / "base"
    shutil.copytree(SHIPPED_BASE_MODEL, copy)
    data = bytearray((copy / "weights.pt").read_bytes())
    data[-100] ^= 1
    (copy / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        verify_shipped(copy)


@pytest.mark.parametrize("value, expected", [(None, SHIPPED_BASE_MODEL), ("", SHIPPED_BASE_MODEL),
                                             ("none", None), ("OFF", None), ("/srv/base", Path("/srv/base"))])
def test_the_setting_defaults_to_the_shipped_model_and_none_turns_it_off(value, expected, monkeypatch,
                                                                         tmp_path):
    from core.settings import load_settings

    monkeypatch.chdir(tmp_path)
    if value is None:
        monkeypatch.delenv("SEGBOT_BASE_MODEL", raising=False)
    else:
        monkeypatch.setenv("SEGBOT_BASE_MODEL", value)
    assert load_settings().base_model == expected


@pytest.mark.slow
def test_segbot_train_on_a_fresh_clone_starts_from_the_shipped_model(tmp_path, settings, monkeypatch):
    from click.testing import CliRunner

    from core.settings import get_settings
    from segbot.cli import main
    from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

    monkeypatch.delenv("SEGBOT_BASE_MODEL")  # what a fresh clone has: nothing set
    get_settings.cache_clear()
    ann = with_crops(synthetic_scene(5, (256, 256), n_pits=0), n_crops=1, crop_size=150, seed=5)
    (tmp_path / "lab.json").write_text(json.dumps(labelme_dict(ann, "lab.png")))
    run = CliRunner().invoke(main, ["train", str(tmp_path / "lab.json"), "--out", str(tmp_path / "m"),
                                    "--iterations", "2"])
    assert run.exit_code == 0, run.output
    assert "starting from base weights" in run.output
    init = json.loads((tmp_path / "m" / "bundle.json").read_text())["init"]
    assert init["init"] == "base" and Path(init["path"]).parent == SHIPPED_BASE_MODEL
    assert init["skipped"] <= 4  # at most the RPN's anchor-count-dependent convs differ
    get_settings.cache_clear()


def test_a_fresh_clone_starts_one_class_from_the_shipped_model_and_two_from_random_weights():
    """The trainer's plan: one class fits the shipped model whole, so training starts from it; a second
    class, or no base model, starts from random weights; the budget is the preset's either way (from the
    base model a shorter one scored lower on all 5 figure series, docs/benchmarks.md)."""
    import numpy as np

    from annotations.model import AnnotatedImage, Crop, Instance
    from segmodel.options import TrainOptions
    from trainer.init_weights import WeightPaths, resolve_init
    from trainer.train import _plan

    def square(x: float, y: float, label: str) -> Instance:
        return Instance(label, np.array([[x, y], [x + 12, y], [x + 12, y + 12], [x, y + 12]], float))

    def start_and_budget(instances: list[Instance], weights: WeightPaths) -> tuple[str, int]:
        """What train_model resolves: the plan's iterations, the start _build_net loads."""
        image = np.full((200, 200, 3), 40, np.uint8)
        labelled = AnnotatedImage("a.png", image, instances, crops=[Crop(0, 0, 200, 200)])
        plan = _plan([labelled], TrainOptions())
        return resolve_init("auto", "tiny", weights, len(plan.classes)), plan.total

    one = [square(10 + 30 * (k % 6), 10 + 30 * (k // 6), "particle") for k in range(24)]
    two = [*one[:-1], square(190 - 12, 190 - 12, "pit")]
    shipped = WeightPaths(base_model=SHIPPED_BASE_MODEL)
    assert start_and_budget(one, shipped) == ("base", 600)
    assert start_and_budget(two, shipped) == ("random", 600)
    assert start_and_budget(one, WeightPaths())[0] == "random"
