"""segmodel.fast_ops: each swapped op computes what mmdet/mmcv compute (forward and backward), and a
model with the swaps trains and detects as the model without them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segmodel import fast_ops

pytestmark = pytest.mark.slow  # builds real mmdet models (~2.5 min on 2 cores)

TOL = 1e-5


def _rois(n: int, batch: int, extent: float, seed: int) -> torch.Tensor:
    """Boxes of every size, some partly or wholly outside the map, a few degenerate."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * (extent * 1.2) - extent * 0.1
    size = torch.rand(n, 2, generator=g) ** 2 * extent * 0.6 + 0.05
    rois = torch.cat([torch.randint(0, batch, (n, 1), generator=g).float(), centre - size / 2,
                      centre + size / 2], dim=1)
    rois[0, 1:] = torch.tensor([-30.0, -30.0, extent + 30, extent + 30])  # covers more than the map
    rois[1, 1:] = torch.tensor([extent + 5, 10.0, extent + 20, 30.0])  # wholly outside
    rois[2, 1:] = torch.tensor([10.0, 10.0, 10.0, 10.0])  # zero size
    return rois


@pytest.mark.parametrize("output_size, ratio, scale",
                         [(7, 2, 0.25), (14, 2, 0.125), (7, 1, 0.5), (5, 3, 1.0)])
def test_sparse_roi_align_matches_mmcv_forward_and_backward(output_size, ratio, scale):
    from mmcv.ops import roi_align

    torch.manual_seed(0)
    feats = torch.randn(2, 8, 37, 45)
    rois = _rois(120, 2, 45 / scale, seed=output_size)
    a, b = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    ref = roi_align(a, rois, (output_size, output_size), scale, ratio, "avg", True)
    got = fast_ops.sparse_roi_align(b, rois, (output_size, output_size), scale, ratio)
    assert got.shape == ref.shape and got.is_contiguous()
    assert torch.allclose(got, ref, atol=TOL, rtol=0)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    got.backward(grad)
    assert torch.allclose(b.grad, a.grad, atol=TOL, rtol=0)


def test_sparse_roi_align_with_no_rois():
    feats = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = fast_ops.sparse_roi_align(feats, torch.zeros(0, 5), (7, 7), 0.25, 2)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) == 0.0


def _model(num_classes: int = 1, seed: int = 0):
    from segmodel.config import build_model_config
    from segmodel.detector import build_model

    torch.manual_seed(seed)
    return build_model(build_model_config("tiny", num_classes))


def test_install_swaps_and_keeps_the_state_dict():
    model = _model()
    keys = {k: v.shape for k, v in model.state_dict().items()}
    done = fast_ops.install(model, "cpu")
    assert sum("SparseRoIAlign" in d for d in done) == 24  # 3 stages x (bbox, mask) x 4 levels
    assert any("share one flattened map" in d for d in done)
    assert sum("mask targets" in d for d in done) == 3 and sum("as matmul" in d for d in done) == 3
    assert sum("assigner: box_iou" in d for d in done) == 4  # RPN + 3 RCNN stages
    assert {k: v.shape for k, v in model.state_dict().items()} == keys  # bundles are unchanged
    assert fast_ops.install(model, "cpu") == []  # twice changes nothing more


def test_install_on_cuda_leaves_roi_align_to_mmcv():
    done = fast_ops.install(_model(), "cuda")
    assert not any("SparseRoIAlign" in d or "flattened" in d for d in done)


def test_enabled_follows_the_environment(monkeypatch):
    monkeypatch.delenv(fast_ops.ENV, raising=False)
    assert fast_ops.enabled()
    for off in ("0", "false", "off"):
        monkeypatch.setenv(fast_ops.ENV, off)
        assert not fast_ops.enabled()


def test_extractor_matches_mmdet_over_levels_and_shares_the_map():
    torch.manual_seed(1)
    plain, fast = _model(), _model()
    fast_ops.install(fast, "cpu")
    feats = [torch.randn(2, 64, 64 // 2**i, 64 // 2**i) for i in range(4)]
    rois = _rois(300, 2, 256.0, seed=3)
    for name in ("bbox_roi_extractor", "mask_roi_extractor"):
        ref_feats = [f.clone().requires_grad_() for f in feats]
        got_feats = [f.clone().requires_grad_() for f in feats]
        ref_out = [getattr(plain.roi_head, name)[s](tuple(ref_feats), rois) for s in range(3)]
        got_out = [getattr(fast.roi_head, name)[s](tuple(got_feats), rois) for s in range(3)]
        for r, g in zip(ref_out, got_out, strict=True):
            assert torch.allclose(g, r, atol=TOL, rtol=0)
            # the mask head's input is a channels-last view (no copy), the bbox head's contiguous
            assert (g.is_contiguous(memory_format=torch.channels_last) if name == "mask_roi_extractor"
                    else g.is_contiguous())
        grads = [torch.randn_like(r) for r in ref_out]
        torch.autograd.backward(ref_out, grads)
        torch.autograd.backward(got_out, grads)
        for r, g in zip(ref_feats, got_feats, strict=True):
            assert torch.allclose(g.grad, r.grad, atol=1e-4, rtol=0)
    # the shared flattened map is reused for the same tensors and rebuilt after an in-place change
    maps = fast.roi_head.bbox_roi_extractor[0]._segbot_maps
    first = maps.get(tuple(feats))[0]
    assert maps.get(tuple(feats))[0] is first
    feats[0].add_(1.0)
    assert maps.get(tuple(feats))[0] is not first
    maps.clear()


def test_mask_targets_are_identical_to_mmdet():
    from mmdet.structures.mask import BitmapMasks, mask_target
    from mmengine.config import ConfigDict

    rng = np.random.default_rng(0)
    gts, proposals, inds = [], [], []
    for n_gt, n_pos in ((5, 17), (3, 40), (4, 0)):
        masks = np.zeros((n_gt, 96, 80), np.uint8)
        for m in masks:
            y, x = rng.integers(0, 70), rng.integers(0, 60)
            m[y:y + rng.integers(3, 26), x:x + rng.integers(3, 20)] = 1
        gts.append(BitmapMasks(masks, 96, 80))
        xy = torch.from_numpy(rng.uniform(-10, 90, (n_pos, 2))).float()
        wh = torch.from_numpy(rng.uniform(1, 40, (n_pos, 2))).float()
        proposals.append(torch.cat([xy, xy + wh], dim=1))
        inds.append(torch.from_numpy(rng.integers(0, n_gt, n_pos)).long())
    cfg = ConfigDict(mask_size=28)
    ref = mask_target(proposals, inds, gts, cfg)
    got = fast_ops.mask_targets(proposals, inds, gts, cfg)
    assert got.dtype == ref.dtype and torch.equal(got, ref)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_mask_head_forward_matches_mmdet(num_classes):
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead

    plain, fast = _model(num_classes=num_classes), _model(num_classes=num_classes)
    fast_ops.install(fast, "cpu")
    head_ref, head_got = plain.roi_head.mask_head[0], fast.roi_head.mask_head[0]
    assert isinstance(head_got, FCNMaskHead) and "forward" in vars(head_got)
    x = torch.randn(37, 64, 14, 14)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, got = head_ref(a), head_got(b)
    assert got.shape == ref.shape == (37, num_classes, 28, 28)
    assert torch.allclose(got, ref, atol=TOL, rtol=0)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    got.backward(grad)
    assert torch.allclose(b.grad, a.grad, atol=TOL, rtol=0)
    for (name, p), q in zip(head_ref.named_parameters(), head_got.parameters(), strict=True):
        assert torch.allclose(q.grad, p.grad, rtol=1e-4, atol=1e-4), name
    assert head_got(torch.zeros(0, 64, 14, 14)).shape == (0, num_classes, 28, 28)


def test_box_iou_is_bit_identical_to_mmdet():
    from mmdet.structures.bbox import bbox_overlaps

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 256
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 60], dim=1)
    boxes[:3] = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 256.0, 256.0], [5.0, 5.0, 5.0, 5.0]])
    gts = boxes[::7].clone()
    assert torch.equal(fast_ops.box_iou(gts, boxes), bbox_overlaps(gts, boxes))
    model = _model()
    fast_ops.install(model, "cpu")
    calc = model.rpn_head.assigner.iou_calculator
    assert isinstance(calc, fast_ops.FastOverlaps2D)
    scored = torch.cat([boxes, torch.rand(300, 1, generator=g)], dim=1)  # RoIs with scores
    assert torch.equal(calc(gts, scored), calc.plain(gts, scored))
    assert torch.equal(calc(gts, boxes, mode="iof"), calc.plain(gts, boxes, mode="iof"))
    assert calc(gts, boxes[:0]).shape == (len(gts), 0)


def _synthetic_batch():
    from trainer.dataset import SampleSource, build_regions
    from trainer.synthetic import synthetic_scene, with_crops
    from trainer.train import _to_batch

    ann = with_crops(synthetic_scene(5), n_crops=2, crop_size=256, seed=5)
    regions = build_regions([ann], sorted({i.label for i in ann.instances}), 1.0)
    source = SampleSource(regions, 256, augment=False, seed=0)
    return _to_batch([source.draw(), source.draw()]), ann


def _one_step(batch, fast: bool):
    model = _model(num_classes=2)
    if fast:
        fast_ops.install(model, "cpu")
    model.train()
    torch.manual_seed(7)  # the RPN and RoI samplers draw from torch's generator
    data = model.data_preprocessor(batch, training=True)
    loss, log = model.parse_losses(model(**data, mode="loss"))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v) for k, v in log.items()}, grads


def test_a_training_step_computes_the_same_losses_and_gradients():
    batch, _ = _synthetic_batch()
    ref_log, ref_grads = _one_step(batch, fast=False)
    got_log, got_grads = _one_step(batch, fast=True)
    assert set(got_log) == set(ref_log)
    for k, v in ref_log.items():
        assert got_log[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    assert set(got_grads) == set(ref_grads)
    for k, g in ref_grads.items():
        scale = float(g.abs().max()) + 1e-8
        assert float((got_grads[k] - g).abs().max()) <= 1e-3 * scale, k


@pytest.mark.parametrize("threads", [1, 2])
def test_a_model_detects_the_same_with_and_without_the_swaps(threads):
    from segmodel.detector import MMDetDetector

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _detect_with_and_without(MMDetDetector)
    finally:
        torch.set_num_threads(before)


def _detect_with_and_without(MMDetDetector):
    _, ann = _synthetic_batch()
    model = _model(num_classes=2, seed=3)
    detector = MMDetDetector(model, ["particle", "pit"], 1.0, 256, score_thr=0.05)
    tiles = [ann.image[:256, :256], ann.image[100:356, 60:316]]
    ref = detector.detect(tiles)
    assert fast_ops.install(model, "cpu")
    got = detector.detect(tiles)
    assert sum(len(d) for d in ref) > 10  # random weights: plenty of low-score detections
    for r, g in zip(ref, got, strict=True):
        assert len(g) == len(r)
        # detections of equal score may come in either order: pair each with its twin first
        from scipy.optimize import linear_sum_assignment

        same = ((np.abs(r.boxes[:, None] - g.boxes[None]).max(axis=2) < 1e-3)
                & (np.abs(r.scores[:, None] - g.scores[None]) < 1e-5) & (r.labels[:, None] == g.labels[None]))
        ro, go = linear_sum_assignment(~same)
        assert same[ro, go].all()
        differ = (g.masks[go] != r.masks[ro]).sum() / max(1, r.masks.sum())
        assert differ < 1e-3
