"""Model area, fast part: options, config presets, label statistics, regions, augmentation, bundles,
safe loading and the weights checksum logic. No training here (see test_model_train.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotations.model import AnnotatedImage, Crop, Instance
from segmodel.config import PRESETS, anchor_scales, build_model_config
from segmodel.options import LabelStats, OptionsError, TrainOptions, auto_rescale, resolve_iterations
from trainer.dataset import SampleSource, build_regions, label_stats
from trainer.synthetic import labelme_dict, synthetic_scene, with_crops

REPO = Path(__file__).resolve().parent.parent


def _square(x: float, y: float, s: float, label: str = "p") -> Instance:
    return Instance(label, np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], float))


def _stats(d: float, n: int = 40) -> LabelStats:
    return LabelStats(n_images=1, n_regions=2, n_objects=n, counts={"p": n}, median_d_px=d, p10_d_px=d * 0.7,
                      p90_d_px=d * 1.3, median_aspect=1.1, p90_aspect=1.3, objects_per_mpx=800.0)


# ------------------------------------------------------------------ options


def test_options_validate_and_roundtrip():
    opts = TrainOptions(arch="r50", epochs=3, rescale=2.0, augment=False)
    assert TrainOptions.from_dict({**opts.to_dict(), "unknown": 1}) == opts
    for bad in ({"arch": "vgg"}, {"iterations": 0}, {"rescale": 9.0}, {"batch_size": 0}, {"crop_size": 8},
                {"copy_paste": 1.5}, {"copy_paste": -0.1}, {"copy_paste": "half"}):
        with pytest.raises(OptionsError):
            TrainOptions(**bad)


def test_user_options_cannot_name_a_weights_file():
    assert TrainOptions.from_user({"init": "base", "epochs": 2}).init == "base"
    with pytest.raises(OptionsError):
        TrainOptions.from_user({"init": "/etc/passwd"})


def test_iterations_from_epochs_and_defaults():
    assert resolve_iterations(TrainOptions(iterations=7, epochs=3), 10) == 7
    assert resolve_iterations(TrainOptions(epochs=3), 10) == 30
    assert resolve_iterations(TrainOptions(), 10) > 100


@pytest.mark.parametrize(("median", "expected"), [(6.0, 3.0), (14.0, 2.0), (20.0, 1.5), (40.0, 1.0),
                                                  (90.0, 1.0), (91.0, 0.707), (130.0, 0.5), (180.0, 0.354),
                                                  (400.0, 0.25), (4000.0, 0.25), (float("nan"), 1.0)])
def test_auto_rescale_enlarges_small_objects_1_to_3x_and_shrinks_large_ones(median, expected):
    assert auto_rescale(median) == expected


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("arch", ["tiny", "r50", "x101"])
def test_config_builds_a_cascade_mask_rcnn_for_every_preset(arch):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    cfg = build_model_config(arch, 2, _stats(12.0), rescale=2.0)
    json.dumps(cfg)  # goes into bundle.json as is
    assert cfg["type"] == "CascadeRCNN" and cfg["roi_head"]["num_stages"] == 3
    assert all(h["num_classes"] == 2 for h in cfg["roi_head"]["bbox_head"])
    assert cfg["roi_head"]["mask_head"]["num_classes"] == 2
    assert cfg["test_cfg"]["rcnn"]["max_per_img"] >= 2000
    assert cfg["neck"]["in_channels"] == PRESETS[arch]["in_channels"]
    register_all_modules(init_default_scope=True)
    model = MODELS.build(ConfigDict(cfg))  # no init_weights: only checks the pieces fit
    n_params = sum(p.numel() for p in model.parameters())
    if arch == "tiny":
        assert n_params < 20e6
    if arch == "x101":
        assert cfg["backbone"]["groups"] == 64 and cfg["backbone"]["base_width"] == 4
        assert n_params > 80e6


def test_a_rare_class_weighs_more_in_the_classification_loss():
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    from segmodel.config import CLASS_WEIGHT_EXPONENT, CLASS_WEIGHT_MAX, class_weights

    demo = LabelStats(1, 3, 38, {"particle": 33, "pit": 5}, 14, 6, 20, 1.1, 1.3, 400.0)
    weights = class_weights(["particle", "pit"], demo)
    expected = min(CLASS_WEIGHT_MAX, (33 / 5) ** CLASS_WEIGHT_EXPONENT)
    assert weights == [1.0, round(expected, 3), 1.0]  # background last
    assert weights[1] > 1.5  # 5 pits beside 33 particles count about as much in the loss
    few = LabelStats(1, 1, 61, {"a": 60, "b": 1}, 14, 6, 20, 1.1, 1.3, 400.0)
    assert class_weights(["a", "b"], few) == [1.0, CLASS_WEIGHT_MAX, 1.0]  # one label: capped
    assert class_weights(["pit", "particle"], demo)[0] == weights[1]  # follows the label order
    assert class_weights(["particle"], demo) is None  # one class: nothing to balance
    cfg = build_model_config("tiny", 2, demo, classes=["particle", "pit"])
    json.dumps(cfg)
    assert all(h["loss_cls"]["class_weight"] == weights for h in cfg["roi_head"]["bbox_head"])
    assert "class_weight" not in build_model_config("tiny", 2, demo)["roi_head"]["bbox_head"][0]["loss_cls"]
    register_all_modules(init_default_scope=True)
    head = MODELS.build(ConfigDict(cfg["roi_head"]["bbox_head"][0]))
    logits = torch.zeros(2, 3)  # the same wrong guess for a pit and for a particle
    pit_loss = float(head.loss_cls(logits[:1], torch.tensor([1])))
    particle_loss = float(head.loss_cls(logits[1:], torch.tensor([0])))
    assert pit_loss == pytest.approx(weights[1] * particle_loss, rel=1e-5)


def test_anchors_follow_the_object_size():
    small = anchor_scales(_stats(6.0), rescale=1.0)
    large = anchor_scales(_stats(30.0), rescale=1.0)
    # The finest level's smallest anchor (stride 4 * scale) is near the small objects' size.
    assert 4 * small[0] <= 12 and 4 * large[0] >= 16
    assert anchor_scales(_stats(6.0), rescale=3.0)[0] > small[0]
    elongated = build_model_config("tiny", 1, LabelStats(1, 1, 10, {"p": 10}, 10, 8, 12, 3.0, 4.0, 100.0))
    assert len(elongated["rpn_head"]["anchor_generator"]["ratios"]) == 5


# ------------------------------------------------------------------ dataset


def _two_crop_image() -> AnnotatedImage:
    image = np.full((100, 200, 3), 40, np.uint8)
    inst = [_square(10, 10, 10), _square(45, 45, 10, "q"), _square(150, 20, 10), _square(95, 50, 10)]
    return AnnotatedImage("a.png", image, inst, crops=[Crop(0, 0, 50, 50), Crop(100, 0, 200, 100)])


def test_regions_hold_only_crop_pixels_and_clipped_objects():
    ann = _two_crop_image()
    regions = build_regions([ann], ["p", "q"], rescale=1.0)
    assert [r.image.shape[:2] for r in regions] == [(50, 50), (100, 100)]
    # crop 1: the whole square + the corner of the q square cut by the crop edge
    assert sorted(regions[0].labels.tolist()) == [0, 1]
    assert regions[0].masks[1].sum() < regions[0].masks[0].sum()
    # crop 2: the square at x=150 and the one straddling x=100 (clipped); nothing from x<100
    assert len(regions[1].labels) == 2
    assert regions[1].masks.sum() < 2 * 100 + 10


def test_an_empty_crop_is_kept_as_labelled_background():
    ann = _two_crop_image()
    ann.crops.append(Crop(60, 60, 90, 95))
    regions = build_regions([ann], ["p", "q"], rescale=1.0)
    assert len(regions) == 3 and regions[2].n_objects == 0 and regions[2].image.shape[:2] == (35, 30)


def test_an_empty_crop_is_drawn_as_background():
    """A crop she labelled with nothing in it (a suggested crop whose proposals she all rejected, a
    patch of background) trains as background: every draw from it, zoomed or not, has no objects
    (numpy cannot reshape its (0, h, w) masks to (0, -1): training stopped with our error)."""
    ann = _two_crop_image()
    ann.crops.append(Crop(60, 60, 90, 95))
    (empty,) = [r for r in build_regions([ann], ["p", "q"], rescale=1.0) if r.n_objects == 0]
    for augment in (True, False):
        source = SampleSource([empty], crop_size=64, augment=augment, seed=0)
        for _ in range(10):
            s = source.draw()
            assert s.masks.shape[0] == 0 and len(s.labels) == 0 and s.boxes.shape == (0, 4)
            assert s.image.shape[:2] == s.masks.shape[1:]


def test_regions_rescale_keeps_masks_on_their_objects():
    ann = synthetic_scene(1, (160, 160), n_particles=10, n_pits=0)
    regions = build_regions([ann], ["particle"], rescale=2.0)
    (region,) = regions
    assert region.image.shape[:2] == (320, 320)
    gray = region.image[:, :, 0].astype(float)
    inside = np.concatenate([gray[m] for m in region.masks])
    outside = gray[~region.masks.any(axis=0)]
    assert inside.mean() > outside.mean() + 40  # masks sit on the bright particles


def test_label_stats_and_no_labels_outside_crops():
    ann = with_crops(synthetic_scene(3), n_crops=2, crop_size=150, seed=3)
    stats = label_stats([ann])
    assert stats.n_regions == 2 and stats.n_objects == len(ann.instances) > 5
    assert 8 < stats.median_d_px < 25 and stats.p10_d_px <= stats.median_d_px <= stats.p90_d_px
    assert stats.objects_per_mpx > 0


def test_samples_are_consistent_after_augmentation():
    ann = with_crops(synthetic_scene(2), n_crops=2, crop_size=160, seed=2)
    regions = build_regions([ann], ann.classes, rescale=2.0)
    source = SampleSource(regions, crop_size=128, augment=True, seed=0)
    for _ in range(20):
        s = source.draw()
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (len(s.labels), 128, 128)
        for box, mask in zip(s.boxes, s.masks, strict=True):
            ys, xs = np.nonzero(mask)
            assert (box[0], box[1], box[2], box[3]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    plain = SampleSource(regions, crop_size=128, augment=False, seed=0).draw()
    assert plain.image.shape == (128, 128, 3)


def test_synthetic_labelme_roundtrip_through_the_real_reader(tmp_path):
    from annotations.labelme import read_labelme

    ann = with_crops(synthetic_scene(4), n_crops=2, crop_size=150, seed=4)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(labelme_dict(ann, "s.png")))
    back = read_labelme(path)
    assert back.image.shape == ann.image.shape and np.array_equal(back.image, ann.image)
    assert len(back.crops) == 2 and len(back.instances) == len(ann.instances)
    assert set(back.classes) <= {"particle", "pit"}


# ------------------------------------------------------------------ bundles and safe loading


def test_bundle_write_is_atomic(tmp_path):
    from segmodel.bundle import write_bundle_atomic

    def broken(tmp: Path) -> None:
        (tmp / "weights.pt").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_bundle_atomic(tmp_path / "model", broken)
    assert list(tmp_path.iterdir()) == []
    write_bundle_atomic(tmp_path / "model", lambda t: (t / "x").write_text("ok"))
    assert (tmp_path / "model" / "x").read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


class Evil:
    def __reduce__(self):
        return (Path("/tmp/segbot-evil-ran").touch, ())


def test_state_dict_loading_refuses_pickled_objects(tmp_path):
    import torch

    from segmodel.bundle import BundleError, load_state_dict

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2), "payload": Evil()}, path)
    Path("/tmp/segbot-evil-ran").unlink(missing_ok=True)
    with pytest.raises(BundleError, match="not a plain weights file"):
        load_state_dict(path)
    assert not Path("/tmp/segbot-evil-ran").exists()
    torch.save({"state_dict": {"w": torch.ones(3)}, "meta": {"epoch": 1}}, path)
    assert list(load_state_dict(path)) == ["w"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BundleError):
        load_state_dict(path)


def test_load_detector_refuses_paths_outside_trusted_roots(tmp_path):
    from segmodel.bundle import BundleError
    from segmodel.detector import UntrustedModelError, load_detector

    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    (store / "models").mkdir(parents=True)
    elsewhere.mkdir()
    with pytest.raises(UntrustedModelError):
        load_detector(elsewhere, trusted_roots=[store])
    with pytest.raises(UntrustedModelError):  # ../ does not get out
        load_detector(store / "models" / ".." / ".." / "elsewhere", trusted_roots=[store])
    link = store / "models" / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(UntrustedModelError):  # nor does a symlink
        load_detector(link, trusted_roots=[store])
    with pytest.raises(BundleError, match="not a segbot model"):
        load_detector(store / "models", trusted_roots=[store])


def test_weights_fetch_verifies_checksum_and_keeps_only_tensors(tmp_path):
    import hashlib

    import torch

    from segmodel.weights import WeightsError, fetch_checkpoint

    src = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"a": torch.ones(2)}, "meta": {"mmdet_version": "2.0"}}, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "coco.pt"
    with pytest.raises(WeightsError, match="checksum mismatch"):
        fetch_checkpoint(src.as_uri(), "0" * 64, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    path, got = fetch_checkpoint(src.as_uri(), digest[:8], dest)
    assert got == digest and list(torch.load(path, weights_only=True)) == ["a"]
    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(WeightsError):
        fetch_checkpoint(evil.as_uri(), hashlib.sha256(evil.read_bytes()).hexdigest(), tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


def test_cli_help_does_not_load_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom segbot.cli import main\n"
            "for cmd in ('train', 'predict', 'demo', 'weights'):\n"
            "    r = CliRunner().invoke(main, [cmd, '--help'])\n"
            "    assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules and 'mmdet' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_scale_jitter_keeps_masks_on_their_particles_and_changes_their_size():
    from trainer.dataset import Augmentation

    ann = with_crops(synthetic_scene(2), n_crops=2, crop_size=160, seed=2)
    regions = build_regions([ann], ann.classes, rescale=2.0)
    zoom_only = Augmentation(flips=False, scale=(0.6, 1.6), scale_p=1.0, gamma=None, blur_p=0.0, noise_p=0.0,
                             contrast=(1.0, 1.0), brightness=0.0)
    sizes = {}
    for name, aug in (("basic", Augmentation()), ("zoom", zoom_only)):
        source = SampleSource(regions, crop_size=128, augment=aug, seed=1)
        areas = []
        for _ in range(30):
            s = source.draw()
            assert s.image.shape == (128, 128, 3) and s.masks.shape[1:] == (128, 128)
            bright = s.masks[s.labels == ann.classes.index("particle")]
            if not len(bright):
                continue
            gray = s.image[:, :, 0].astype(float)
            inside, outside = gray[bright.any(axis=0)], gray[~s.masks.any(axis=0)]
            assert inside.mean() > outside.mean() + 30  # still on the bright particles
            areas.extend(s.masks.reshape(len(s.masks), -1).sum(axis=1).tolist())
        sizes[name] = np.asarray(areas, float)
    # zoomed samples spread object areas wider than the rescaled crops alone do
    assert np.std(np.log(sizes["zoom"])) > np.std(np.log(sizes["basic"])) * 1.1


def test_copy_paste_puts_whole_objects_on_background_only():
    import cv2

    from trainer.dataset import Augmentation, cutouts

    ann = with_crops(synthetic_scene(2), n_crops=2, crop_size=160, seed=2)
    regions = build_regions([ann], ann.classes, rescale=2.0)
    bank = cutouts(regions)
    assert 0 < len(bank) < sum(r.n_objects for r in regions)  # objects cut by a crop edge stay out
    still = dict(flips=False, noise_p=0.0, contrast=(1.0, 1.0), brightness=0.0)
    assert SampleSource(regions, 128, augment=Augmentation(**still)).cutouts == []  # off: nothing cut
    added = 0
    for seed in range(20):  # one draw per seed: both sources cut the same sub-crop
        s = SampleSource(regions, 128, augment=Augmentation(copy_paste_p=1.0, **still), seed=seed).draw()
        before = SampleSource(regions, 128, augment=Augmentation(**still), seed=seed).draw()
        n = len(before.labels)
        assert np.array_equal(s.labels[:n], before.labels) and np.array_equal(s.masks[:n], before.masks)
        new = s.masks[n:]
        added += len(new)
        assert not (new.any(axis=0) & before.masks.any(axis=0)).any()  # never over an object
        assert (new.sum(axis=0) <= 1).all()  # nor over one another
        sizes = sorted(int(c.mask.sum()) for c in bank)
        assert all(int(m.sum()) in sizes for m in new)  # a whole cutout, turned or flipped
        for mask, box in zip(s.masks, s.boxes, strict=True):
            ys, xs = np.nonzero(mask)
            assert (box[0], box[1], box[2], box[3]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # inside a pasted object the pixels are the object's: bright particles stay bright
        bright = new[s.labels[n:] == ann.classes.index("particle")]
        if len(bright):
            gray = s.image[:, :, 0].astype(float)
            assert gray[bright.any(axis=0)].mean() > gray[~s.masks.any(axis=0)].mean() + 30
        # the two sources drew the same sub-crops: their pixels agree away from the pasted objects
        away = ~cv2.dilate(new.any(axis=0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.array_equal(s.image[away], before.image[away])
    assert added >= 20


def test_copy_paste_piles_lay_objects_over_neighbours_and_cut_the_covered_part():
    from trainer.dataset import Augmentation

    ann = with_crops(synthetic_scene(2), n_crops=2, crop_size=160, seed=2)
    regions = build_regions([ann], ann.classes, rescale=2.0)
    still = dict(flips=False, noise_p=0.0, contrast=(1.0, 1.0), brightness=0.0)
    covered = overlapping = 0
    for seed in range(20):
        pile = Augmentation(copy_paste_p=1.0, pile_p=1.0, **still)
        s = SampleSource(regions, 128, augment=pile, seed=seed).draw()
        before = SampleSource(regions, 128, augment=Augmentation(**still), seed=seed).draw()
        assert (s.masks.sum(axis=0) <= 1).all()  # visible parts: one object per pixel
        assert (s.masks.reshape(len(s.masks), -1).sum(axis=1) >= 3).all()
        # an object of the sample that stayed (same label, pixels a subset of what it had) lost some
        def part_of(m, old):
            return (m & old).any() and not (m & ~old).any()

        for old in before.masks:
            hits = [m for m in s.masks if part_of(m, old)]
            if hits and hits[0].sum() < old.sum():
                covered += 1
                assert hits[0].sum() >= 0.25 * old.sum()
        # pasted objects (no part of any object before) lie partly where objects were
        union = before.masks.any(axis=0)
        pasted = [m for m in s.masks if not any(part_of(m, old) for old in before.masks)]
        overlapping += sum(bool((m & union).any()) for m in pasted)
    assert covered >= 5 and overlapping >= 5


def test_stem_scene_has_two_classes_with_labels_on_the_bright_spots():
    from annotations.geometry import area_centroid_perimeter
    from trainer.synthetic import stem_scene

    ann = stem_scene(3, (256, 256), n_particles=3, n_sites=60)
    labels = [i.label for i in ann.instances]
    assert labels.count("particle") == 3 and 50 <= labels.count("single_site") <= 60
    sites = [i.polygon for i in ann.instances if i.label == "single_site"]
    d = 2 * np.sqrt(area_centroid_perimeter(sites)[0] / np.pi)
    assert d.min() >= 1.5 and d.max() <= 8.5  # the 2-8 px single sites of the iOk case
    gray = ann.image[:, :, 0].astype(float)
    centres = np.round(area_centroid_perimeter(sites)[1]).astype(int)
    background = np.median(gray)
    assert np.mean(gray[centres[:, 1], centres[:, 0]] > background + 40) > 0.9  # a spot under each label
