"""The base model: instance-map datasets read as labels, scale normalisation, and the
`segbot weights base` -> `segbot train --init base` round trip on a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotations.model import AnnotationError

DISCS = [((30, 30), 10), ((80, 40), 14), ((50, 90), 8)]  # (x, y), radius


def write_dataset(root: Path, stems: tuple[str, ...] = ("a", "b")) -> Path:
    """images/ID.png + segmaps/ID.png with three bright discs, ids 1..3."""
    (root / "images").mkdir(parents=True)
    (root / "segmaps").mkdir()
    for stem in stems:
        image = np.full((120, 120, 3), 60, np.uint8)
        seg = np.zeros((120, 120), np.uint16)
        for k, (centre, r) in enumerate(DISCS, start=1):
            cv2.circle(image, centre, r, (220, 220, 220), -1)
            cv2.circle(seg, centre, r, k, -1)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "segmaps" / f"{stem}.png"), seg)
    return root


def test_instance_maps_become_polygons_with_exact_areas(tmp_path):
    from annotations.geometry import area_centroid_perimeter
    from annotations.instance_maps import read_dataset

    data = write_dataset(tmp_path / "ds")
    images = read_dataset(data, exclude={"b"})
    assert [a.name for a in images] == ["a.png"]
    seg = cv2.imread(str(data / "segmaps" / "a.png"), cv2.IMREAD_UNCHANGED)
    pixels = [int((seg == k).sum()) for k in range(1, len(DISCS) + 1)]
    area, centre, _ = area_centroid_perimeter([i.polygon for i in images[0].instances])
    assert [i.label for i in images[0].instances] == ["particle"] * 3
    assert np.allclose(area, pixels, rtol=1e-9)
    assert np.allclose(centre, [(x, y) for (x, y), _ in DISCS], atol=1e-6)  # cv2.circle centres on pixel x, y


def test_instance_map_of_another_size_is_refused(tmp_path):
    from annotations.instance_maps import read_instance_map

    data = write_dataset(tmp_path / "ds", ("a",))
    cv2.imwrite(str(data / "segmaps" / "a.png"), np.zeros((50, 60), np.uint16))
    with pytest.raises(AnnotationError, match="differs"):
        read_instance_map(data / "images" / "a.png", data / "segmaps" / "a.png")


@pytest.mark.parametrize("size, radius, expect", [(300, (3.0, 4.0), (19.5, 20.5)),
                                                  (600, (60.0, 70.0), (95.0, 97.0)),
                                                  (600, (12.0, 14.0), None)])
def test_normalise_scale_brings_the_median_object_into_range(size, radius, expect):
    from trainer.base_model import median_d, normalise_scale, one_class
    from trainer.synthetic import synthetic_scene

    ann = one_class(synthetic_scene(5, (size, size), n_particles=12, n_pits=0, radius=radius))
    out = normalise_scale(ann)
    assert {i.label for i in out.instances} == {"particle"}
    if expect is None:  # already 20-96 px: untouched
        assert out is ann
        return
    assert expect[0] <= median_d(out) <= expect[1]
    factor = out.width / ann.width
    assert out.height == round(ann.height * factor)
    # Outlines moved with the pixels: each object's centre is still on a bright particle.
    for inst in out.instances:
        x, y = inst.polygon.mean(axis=0)
        assert out.image[int(y), int(x)].mean() > ann.image.mean()


@pytest.mark.slow
def test_cli_builds_a_base_model_that_user_training_starts_from(tmp_path, settings, monkeypatch):
    from click.testing import CliRunner

    from core.settings import get_settings
    from segbot.cli import main
    from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

    data = write_dataset(tmp_path / "ds", ("a", "b", "c"))
    base = tmp_path / "base"
    run = CliRunner().invoke(main, ["weights", "base", "--out", str(base), "--dataset", str(data),
                                    "--exclude", "c", "--synthetic", "1", "--iterations", "2"])
    assert run.exit_code == 0, run.output
    assert "3 images (1 synthetic)" in run.output and "SEGBOT_BASE_MODEL=" in run.output
    meta = json.loads((base / "bundle.json").read_text())
    assert meta["classes"] == ["particle"] and meta["options"]["holdout"] is False
    assert sorted(meta["sources"])[:2] == ["a.png", "b.png"] and "c.png" not in meta["sources"]

    # A user's one-class file, labelled with another class name: every fitting tensor comes from the base.
    ann = with_crops(synthetic_scene(21, (256, 256), n_pits=0), n_crops=1, crop_size=150, seed=21)
    user = json.loads(json.dumps(labelme_dict(ann, "lab.png")).replace('"particle"', '"grain"'))
    src = tmp_path / "lab.json"
    src.write_text(json.dumps(user))
    missing = CliRunner().invoke(main, ["train", str(src), "--out", str(tmp_path / "m0"), "--init", "base",
                                        "--iterations", "1"])
    assert missing.exit_code != 0 and "SEGBOT_BASE_MODEL" in missing.output
    # Shipped as the repository ships its own: float16 weights the manifest vouches for.
    shipped = tmp_path / "shipped"
    run = CliRunner().invoke(main, ["weights", "ship", str(base), "--out", str(shipped)])
    assert run.exit_code == 0, run.output
    manifest = json.loads((shipped / "MANIFEST.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["images"] == 3 and manifest["synthetic"] == 1
    command = manifest["command"]
    assert command.startswith("segbot weights base --out") and "--exclude c" in command, command
    fp32, fp16 = (base / "weights.pt").stat().st_size, (shipped / "weights.pt").stat().st_size
    assert 0.45 < fp16 / fp32 < 0.55
    check = CliRunner().invoke(main, ["weights", "check", str(shipped)])
    assert check.exit_code == 0 and "sha256 matches its manifest" in check.output, check.output
    monkeypatch.setenv("SEGBOT_BASE_MODEL", str(shipped))
    get_settings.cache_clear()
    # --init is left at 'auto': a configured base model of the same preset is used.
    run = CliRunner().invoke(main, ["train", str(src), "--out", str(tmp_path / "m"), "--iterations", "2"])
    assert run.exit_code == 0, run.output
    assert "starting from base weights" in run.output
    meta = json.loads((tmp_path / "m" / "bundle.json").read_text())
    init = meta["init"]
    assert init["init"] == "base" and init["loaded"] > 100
    # the chat's "started from the base model" line reads this
    assert meta["metrics"]["start"] == {"from": "base"}
    assert init["skipped"] <= 4  # at most the RPN's anchor-count-dependent convs differ


def test_auto_init_uses_a_base_model_of_the_same_preset_only(tmp_path):
    from trainer.init_weights import WeightPaths, resolve_init

    bundle = tmp_path / "base"
    assert resolve_init("auto", "tiny", WeightPaths()) == "random"  # no base model configured
    bundle.mkdir()
    meta = {"format": 1, "arch": "tiny", "config": {}, "classes": ["particle"], "rescale": 1.0,
            "tile_size": 512}
    (bundle / "bundle.json").write_text(json.dumps(meta))
    configured = WeightPaths(base_model=bundle)
    assert resolve_init("auto", "tiny", configured) == "base"
    assert resolve_init("auto", "x101", configured) == "random"  # a tiny base cannot start an x101 model
    assert resolve_init("auto", "tiny", configured, n_classes=2) == "random"  # the class heads would not fit
    assert resolve_init("base", "tiny", configured, n_classes=2) == "base"  # asked for: all but the heads
    assert resolve_init("random", "tiny", configured) == "random"
    assert resolve_init("coco", "r50", configured) == "coco"
    (bundle / "bundle.json").write_text("{broken")
    assert resolve_init("auto", "tiny", configured) == "random"  # a broken base model does not stop training


def test_weight_paths_come_from_the_settings_passed_in(tmp_path, settings, monkeypatch):
    """The trainer reads no settings: the paths are what the caller's settings say, nothing else."""
    from core.settings import load_settings
    from segmodel.options import OptionsError
    from trainer.init_weights import WeightPaths, init_path

    assert WeightPaths.from_settings(settings) == WeightPaths()
    monkeypatch.setenv("SEGBOT_BASE_MODEL", str(tmp_path / "base"))
    monkeypatch.setenv("SEGBOT_COCO_WEIGHTS", str(tmp_path / "coco.pt"))
    assert WeightPaths.from_settings(settings) == WeightPaths()  # the environment is not read again
    paths = WeightPaths.from_settings(load_settings())
    assert paths == WeightPaths(tmp_path / "base", tmp_path / "coco.pt")
    assert init_path("base", paths) == tmp_path / "base" and init_path("coco", paths) == tmp_path / "coco.pt"
    assert init_path("/some/bundle", paths) == Path("/some/bundle")
    with pytest.raises(OptionsError, match="SEGBOT_BASE_MODEL"):
        init_path("base", WeightPaths())
    with pytest.raises(OptionsError, match="SEGBOT_COCO_WEIGHTS"):
        init_path("coco", WeightPaths())
