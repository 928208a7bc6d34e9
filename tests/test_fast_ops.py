"""segmodel.fast_ops: each swapped op computes what mmdet/mmcv compute (forward and backward), and a
model with the swaps trains and detects as the model without them.

"The same", for float32 sums taken in another order, means within what rounding allows on any processor
(the order, SIMD width and fused multiply-adds of a matrix product depend on the processor it runs on;
mmcv's loops add in their own order). Per element, `rounding_bound(n, sum|terms|)`: two computations of
the same n terms differ by at most (n - 1 + TERM_ROUNDINGS) * eps * sum|terms| (any order, each side
within (n - 1) u sum|terms| of the exact sum, u = eps / 2: Higham, Accuracy and Stability of Numerical
Algorithms, 2nd ed., 4.2); long sums, by at most LAMBDA * sqrt(n + TERM_ROUNDINGS) * eps * sum|terms|
except with a probability below 2 n exp(-LAMBDA^2 / 2) (the roundings as independent random variables:
Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019). The magnitudes sum|terms| come from mmcv/mmdet
themselves (their weights applied to absolute values); a real bug moves a result far more
(test_the_roi_align_gradient_comparison_catches_realistic_bugs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmodel import fast_ops

pytestmark = pytest.mark.slow  # builds real mmdet models (~2.5 min on 2 cores)

EPS = torch.finfo(torch.float32).eps
# Roundings in forming one term, on each side: the bilinear weight product, the 1 / count average, the
# multiplication by the feature (or gradient), and one for a cast or a fused multiply-add done otherwise.
TERM_ROUNDINGS = 4
LAMBDA = 10.0  # the probabilistic bound fails with probability < 2 n exp(-50): 1e-17 at n = 30 000 terms
CASES = [(7, 2, 0.25), (14, 2, 0.125), (7, 1, 0.5), (5, 3, 1.0)]


def rounding_bound(n_terms: int | torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Per element, the most two float32 computations of the same sum of `n_terms` terms, each adding
    in its own order, may differ by (see the module's docstring): the smaller of the worst case and the
    probabilistic bound. `magnitude`: sum|terms| per element."""
    n = torch.as_tensor(n_terms, dtype=torch.float64) + TERM_ROUNDINGS
    return torch.minimum(n - 1, LAMBDA * n.sqrt()) * EPS * magnitude.double()


def within_rounding(got: torch.Tensor, ref: torch.Tensor, n_terms: int | torch.Tensor,
                    magnitude: torch.Tensor) -> bool:
    return bool(((got.double() - ref.double()).abs() <= rounding_bound(n_terms, magnitude)).all())


def assert_within_rounding(got: torch.Tensor, ref: torch.Tensor, n_terms: int | torch.Tensor,
                           magnitude: torch.Tensor, what: str = "") -> None:
    assert got.shape == ref.shape, what
    diff = (got.double() - ref.double()).abs()
    bound = rounding_bound(n_terms, magnitude).expand_as(diff)
    over = diff > bound
    assert not over.any(), (f"{what}: {int(over.sum())} of {diff.numel()} elements differ by more than "
                            f"rounding allows, e.g. {float(diff[over][0]):.3g} > {float(bound[over][0]):.3g}")


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


def _roi_align_case(output_size: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, RoIs over them and a gradient for the RoIAlign output."""
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 37, 45)
    rois = _rois(120, 2, 45 / scale, seed=output_size)
    grad = torch.randn(len(rois), 8, output_size, output_size)
    return feats, rois, grad


def _mmcv_roi_align(feats: torch.Tensor, rois: torch.Tensor, grad: torch.Tensor, output_size: int,
                    scale: float, ratio: int, aligned: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """mmcv's RoIAlign output and the gradient `grad` sends back to the features."""
    from mmcv.ops import roi_align

    x = feats.clone().requires_grad_()
    out = roi_align(x, rois, (output_size, output_size), scale, ratio, "avg", aligned)
    out.backward(grad)
    return out.detach(), x.grad


def _roi_align_terms(rois: torch.Tensor, shape: tuple[int, int, int], output_size: tuple[int, int],
                     scale: float, ratio: int) -> torch.Tensor:
    """How many terms RoIAlign's backward adds into each input pixel, [B, 1, H, W]: the nonzero bilinear
    weights that reach it (one per RoI, bin, sample and corner). Only which samples touch which pixel,
    the sum's shape, is taken from fast_ops' matrix; the values compared are not."""
    m = fast_ops.roi_align_matrix(rois, shape, output_size, scale, ratio)
    cols = m.col_indices()[m.values() != 0]
    return torch.bincount(cols, minlength=m.shape[1]).view(shape[0], 1, shape[1], shape[2])


@pytest.mark.parametrize("output_size, ratio, scale", CASES)
def test_sparse_roi_align_matches_mmcv_forward_and_backward(output_size, ratio, scale):
    feats, rois, grad = _roi_align_case(output_size, scale)
    ref, ref_grad = _mmcv_roi_align(feats, rois, grad, output_size, scale, ratio)
    # mmcv's bilinear weights are never negative: RoIAlign of |features| is each output's sum|terms|,
    # its backward with |grad| each input gradient's
    out_mag, grad_mag = _mmcv_roi_align(feats.abs(), rois, grad.abs(), output_size, scale, ratio)
    b = feats.clone().requires_grad_()
    got = fast_ops.sparse_roi_align(b, rois, (output_size, output_size), scale, ratio)
    assert got.shape == ref.shape and got.is_contiguous()
    assert_within_rounding(got, ref, 4 * ratio * ratio, out_mag, "forward")  # 4 corners x ratio^2 samples
    got.backward(grad)
    terms = _roi_align_terms(rois, (2, 37, 45), (output_size, output_size), scale, ratio)
    assert_within_rounding(b.grad, ref_grad, terms, grad_mag, "input gradient")


def _ordinary_roi(rois: torch.Tensor, height: int, width: int, scale: float) -> int:
    """The first of the random RoIs that lies inside the map and spans more than a pixel."""
    box = rois[:, 1:] * scale
    inside = ((box[:, :2] >= 0) & (box[:, 2:] <= torch.tensor([width, height]))
              & (box[:, 2:] - box[:, :2] > 1)).all(dim=1)
    return int(torch.nonzero(inside[3:])[0]) + 3


@pytest.mark.parametrize("output_size, ratio, scale", CASES)
def test_the_roi_align_gradient_comparison_catches_realistic_bugs(output_size, ratio, scale):
    """The rounding bound is no blanket: gradients with a real bug fail the comparison above."""
    feats, rois, grad = _roi_align_case(output_size, scale)
    ref, ref_grad = _mmcv_roi_align(feats, rois, grad, output_size, scale, ratio)
    out_mag, grad_mag = _mmcv_roi_align(feats.abs(), rois, grad.abs(), output_size, scale, ratio)
    terms = _roi_align_terms(rois, (2, 37, 45), (output_size, output_size), scale, ratio)
    k = _ordinary_roi(rois, 37, 45, scale)
    _, one_roi = _mmcv_roi_align(feats, rois[k:k + 1], grad[k:k + 1], output_size, scale, ratio)
    unaligned_out, unaligned = _mmcv_roi_align(feats, rois, grad, output_size, scale, ratio, aligned=False)
    wrong = {"one RoI's contribution dropped": ref_grad - one_roi,
             "one RoI's weights 3 % too large": ref_grad + 0.03 * one_roi,
             "the half-pixel offset forgotten": unaligned}
    for bug, bad_grad in wrong.items():
        assert not within_rounding(bad_grad, ref_grad, terms, grad_mag), bug
    assert not within_rounding(unaligned_out, ref, 4 * ratio * ratio, out_mag)


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


def _extractor_magnitudes(extractors: list, feats: list[torch.Tensor], rois: torch.Tensor,
                          grads: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """sum|terms| of each extractor's output and of each level's gradient (all extractors backward
    together), by mmdet's own extractors (mmcv's RoIAlign per level) on |features| and |gradients|."""
    x = [f.abs().requires_grad_() for f in feats]
    outs = [e(tuple(x), rois) for e in extractors]
    torch.autograd.backward(outs, [g.abs() for g in grads])
    return [o.detach() for o in outs], [f.grad for f in x]


def _extractor_terms(extractors: list, feats: list[torch.Tensor], rois: torch.Tensor) -> list[torch.Tensor]:
    """Per level, how many terms the backward of all `extractors` adds into each pixel: each RoI's on
    the level mmdet maps it to (map_roi_levels)."""
    counts = [torch.zeros(f.shape[0], 1, f.shape[2], f.shape[3], dtype=torch.long) for f in feats]
    for extractor in extractors:
        levels = extractor.map_roi_levels(rois, len(feats))
        for level, (f, layer) in enumerate(zip(feats, extractor.roi_layers, strict=True)):
            counts[level] += _roi_align_terms(rois[levels == level], (f.shape[0], f.shape[2], f.shape[3]),
                                              tuple(layer.output_size), layer.spatial_scale,
                                              layer.sampling_ratio)
    return counts


def test_extractor_matches_mmdet_over_levels_and_shares_the_map():
    torch.manual_seed(1)
    plain, fast = _model(), _model()
    fast_ops.install(fast, "cpu")
    feats = [torch.randn(2, 64, 64 // 2**i, 64 // 2**i) for i in range(4)]
    rois = _rois(300, 2, 256.0, seed=3)
    for name in ("bbox_roi_extractor", "mask_roi_extractor"):
        ref_extractors = list(getattr(plain.roi_head, name))
        got_extractors = list(getattr(fast.roi_head, name))
        ref_feats = [f.clone().requires_grad_() for f in feats]
        got_feats = [f.clone().requires_grad_() for f in feats]
        ref_out = [e(tuple(ref_feats), rois) for e in ref_extractors]
        got_out = [e(tuple(got_feats), rois) for e in got_extractors]
        grads = [torch.randn_like(r) for r in ref_out]
        out_mag, grad_mag = _extractor_magnitudes(ref_extractors, feats, rois, grads)
        ratio = ref_extractors[0].roi_layers[0].sampling_ratio
        for r, g, mag in zip(ref_out, got_out, out_mag, strict=True):
            assert_within_rounding(g, r, 4 * ratio * ratio, mag, name)
            # the mask head's input is a channels-last view (no copy), the bbox head's contiguous
            assert (g.is_contiguous(memory_format=torch.channels_last) if name == "mask_roi_extractor"
                    else g.is_contiguous())
        torch.autograd.backward(ref_out, grads)
        torch.autograd.backward(got_out, grads)
        terms = _extractor_terms(ref_extractors, feats, rois)
        for r, g, mag, n in zip(ref_feats, got_feats, grad_mag, terms, strict=True):
            assert_within_rounding(g.grad, r.grad, n, mag, f"{name} gradient")
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


class _Captured:
    """The output of a module's last call, kept with its gradient (a forward hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        module.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        self.value = out


def _upsample_magnitudes(head: torch.nn.Module, h: torch.Tensor, grad: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """sum|terms| of the part the swap computes otherwise (deconv, ReLU, 1x1 logits conv), for its output,
    the gradient at its input h and its parameters' gradients: mmdet's layers with |weights| on |h| (the
    ReLU then passes everything, an upper bound where it cuts) and |grad|. A term's own error from an
    earlier layer is covered by counting that layer's terms too (the bound is first order in eps)."""
    up, logits = head.upsample, head.conv_logits
    params = {f"upsample.{k}": v for k, v in up.named_parameters()}
    params |= {f"conv_logits.{k}": v for k, v in logits.named_parameters()}
    absolute = {k: v.detach().double().abs().requires_grad_() for k, v in params.items()}
    x = h.detach().double().abs().requires_grad_()
    y = F.conv_transpose2d(x, absolute["upsample.weight"], absolute["upsample.bias"], stride=up.stride)
    out = F.conv2d(y, absolute["conv_logits.weight"], absolute["conv_logits.bias"])
    out.backward(grad.double().abs())
    return out.detach(), x.grad, {k: v.grad for k, v in absolute.items()}


@pytest.mark.parametrize("num_classes", [1, 3])
def test_mask_head_forward_matches_mmdet(num_classes):
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead

    plain, fast = _model(num_classes=num_classes), _model(num_classes=num_classes)
    fast_ops.install(fast, "cpu")
    head_ref, head_got = plain.roi_head.mask_head[0], fast.roi_head.mask_head[0]
    assert isinstance(head_got, FCNMaskHead) and "forward" in vars(head_got)
    h_ref, h_got = _Captured(head_ref.convs[-1]), _Captured(head_got.convs[-1])
    x = torch.randn(37, 64, 14, 14)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, got = head_ref(a), head_got(b)
    assert got.shape == ref.shape == (37, num_classes, 28, 28)
    assert torch.equal(h_got.value, h_ref.value)  # mmdet's own convs come first, untouched
    grad = torch.randn_like(ref)
    out_mag, h_mag, param_mag = _upsample_magnitudes(head_ref, h_ref.value, grad)
    n, c, height, width = h_ref.value.shape
    channels, stride = head_ref.upsample.out_channels, head_ref.upsample.stride[0]
    pixels = n * height * width  # deconv inputs; the logits see stride^2 as many
    # terms: the deconv sums c channels + bias, the logits conv `channels` + bias
    assert_within_rounding(got, ref, (c + 1) + (channels + 1), out_mag, "output")
    ref.backward(grad)
    got.backward(grad)
    # h's gradient: the logits' num_classes terms back to each deconv output, then its channels x stride^2
    assert_within_rounding(h_got.value.grad, h_ref.value.grad, num_classes + channels * stride**2, h_mag, "h")
    terms = {"upsample.weight": pixels + num_classes, "upsample.bias": pixels * stride**2 + num_classes,
             "conv_logits.weight": pixels * stride**2 + c + 1, "conv_logits.bias": pixels * stride**2}
    got_params = dict(head_got.named_parameters())
    for name, p in head_ref.named_parameters():
        if name in terms:
            assert_within_rounding(got_params[name].grad, p.grad, terms[name], param_mag[name], name)
    # The convs are mmdet's in both heads: the fast head's gradient at h, sent back through the plain
    # head's convs, gives exactly the fast head's input and conv gradients.
    again = x.clone().requires_grad_()
    h = again
    for conv in head_ref.convs:
        h = conv(h)
    conv_params = list(head_ref.convs.named_parameters())
    expected = torch.autograd.grad(h, [again] + [p for _, p in conv_params], h_got.value.grad)
    assert torch.equal(b.grad, expected[0])
    for (name, _), want in zip(conv_params, expected[1:], strict=True):
        assert torch.equal(got_params[f"convs.{name}"].grad, want), name
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
