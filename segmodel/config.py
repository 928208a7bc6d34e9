"""The mmdet Cascade Mask R-CNN config, built in code from the options and the label statistics.

Presets: `tiny` (ResNet-18, 64-channel FPN/RPN/RoI heads, 2 mask convs, 128 sampled RoIs: about
0.5 s per 256-px iteration on 2 CPU cores), `r50` and `x101` (X-101-64x4d-FPN as in Okunev
et al., Nanomaterials 2020; paper-sized heads, for GPUs). Torch-free: returns plain dicts that go
into bundle.json.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from segmodel.options import LabelStats

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
STRIDES = [4, 8, 16, 32, 64]

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        backbone=dict(type="ResNet", depth=18),
        in_channels=[64, 128, 256, 512],
        width=64, fc=256, mask_convs=2, rcnn_samples=128, rpn_samples=256, lr=0.02, train_proposals=1000,
    ),
    "r50": dict(
        backbone=dict(type="ResNet", depth=50),
        in_channels=[256, 512, 1024, 2048],
        width=256, fc=1024, mask_convs=4, rcnn_samples=512, rpn_samples=256, lr=0.02, train_proposals=2000,
    ),
    "x101": dict(
        backbone=dict(type="ResNeXt", depth=101, groups=64, base_width=4),
        in_channels=[256, 512, 1024, 2048],
        width=256, fc=1024, mask_convs=4, rcnn_samples=512, rpn_samples=256, lr=0.02, train_proposals=2000,
    ),
}


def anchor_scales(stats: LabelStats | None, rescale: float) -> list[float]:
    """Two anchor scales so the finest level's anchors span the small and typical objects.

    Anchor side = stride * scale; with stride 4 on P2 the default scale 8 (32 px) misses 8-20 px
    particles, so the smallest anchor is matched to the 10th-percentile object after rescaling.
    """
    if stats is None or stats.n_objects == 0:
        return [4.0, 8.0]
    small = max(2.0, stats.p10_d_px * rescale / STRIDES[0])
    small = float(min(8.0, round(small * 2) / 2))
    return [small, small * 2]


def anchor_ratios(stats: LabelStats | None) -> list[float]:
    if stats is not None and stats.p90_aspect > 2.5:
        return [0.33, 0.5, 1.0, 2.0, 3.0]
    return [0.5, 1.0, 2.0]


def rcnn_pos_fraction(stats: LabelStats | None, crop_size: int, rescale: float, samples: int) -> float:
    """Dense crops hold more objects than 25% of the sampled RoIs; let positives take up to half."""
    if stats is None or stats.objects_per_mpx <= 0:
        return 0.25
    objects_per_crop = stats.objects_per_mpx * (crop_size / rescale) ** 2 / 1e6
    return 0.5 if objects_per_crop * 3 > samples * 0.25 else 0.25


# A class with few labels beside a common one (the demo's 5 dark pits beside 33 particles) is drowned
# in the RoI heads' classification loss: the model learns to call it background. Its weight there is
# (labels of the most common class / its labels) ** CLASS_WEIGHT_EXPONENT, at most CLASS_WEIGHT_MAX;
# background and the common class 1 (square-root inverse frequency: Mahajan et al. 2018; Cui et al.,
# class-balanced loss, 2019). Measured on the demo (docs/benchmarks.md "A rare class"): pit recall 0.00
# unweighted, 0.73 at weight 1.6, 0.87 at 2.0, 1.00 at 2.57 but with duplicate pits (precision 0.62):
# a weight much above 2 makes a rare class over-confident, hence the cap.
CLASS_WEIGHT_EXPONENT = 0.5
CLASS_WEIGHT_MAX = 2.0


def class_weights(classes: Sequence[str], stats: LabelStats | None) -> list[float] | None:
    """Per-class weights of the classification loss, background last; None with one class (or no
    counts): nothing to balance."""
    if stats is None or len(classes) < 2 or not stats.counts:
        return None
    counts = [max(1, int(stats.counts.get(c, 0))) for c in classes]
    top = max(counts)
    return [round(min(CLASS_WEIGHT_MAX, (top / n) ** CLASS_WEIGHT_EXPONENT), 3) for n in counts] + [1.0]


def _bbox_head(num_classes: int, width: int, fc: int, stds: list[float],
               weights: list[float] | None = None) -> dict[str, Any]:
    loss_cls: dict[str, Any] = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    if weights is not None:
        loss_cls["class_weight"] = list(weights)
    return dict(
        type="Shared2FCBBoxHead", in_channels=width, fc_out_channels=fc, roi_feat_size=7,
        num_classes=num_classes,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=stds),
        reg_class_agnostic=True,
        loss_cls=loss_cls,
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
    )


def _rcnn_train(iou: float, samples: int, pos_fraction: float, mask_size: int) -> dict[str, Any]:
    return dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type="RandomSampler", num=samples, pos_fraction=pos_fraction, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        mask_size=mask_size, pos_weight=-1, debug=False,
    )


def build_model_config(
    arch: str,
    num_classes: int,
    stats: LabelStats | None = None,
    rescale: float = 1.0,
    crop_size: int = 256,
    pretrained_backbone: bool = False,
    max_per_img: int = 2000,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The `model=` dict of an mmdet Cascade Mask R-CNN config; `classes` (in label order) with the
    stats' counts weigh a rare class up in training (class_weights)."""
    if arch not in PRESETS:
        raise ValueError(f"unknown architecture {arch!r}")
    if num_classes < 1:
        raise ValueError("need at least one class")
    p = PRESETS[arch]
    pos_fraction = rcnn_pos_fraction(stats, crop_size, rescale, p["rcnn_samples"])
    model: dict[str, Any] = dict(
        type="CascadeRCNN",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=MEAN, std=STD, bgr_to_rgb=False,
                               pad_mask=True, pad_size_divisor=32),
        backbone=_backbone(p, pretrained_backbone),
        neck=dict(type="FPN", in_channels=list(p["in_channels"]), out_channels=p["width"], num_outs=5),
        rpn_head=_rpn_head(p["width"], stats, rescale),
        roi_head=_roi_head(p, num_classes, class_weights(classes or [], stats)),
        train_cfg=_train_cfg(p, pos_fraction),
        test_cfg=_test_cfg(max_per_img),
    )
    return model


def _backbone(p: dict[str, Any], pretrained: bool) -> dict[str, Any]:
    return dict(
        p["backbone"], num_stages=4, out_indices=(0, 1, 2, 3),
        # Random init: BN statistics must be learnt (norm_eval False) and nothing frozen.
        frozen_stages=1 if pretrained else -1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=bool(pretrained), style="pytorch", init_cfg=None,
    )


def _rpn_head(width: int, stats: LabelStats | None, rescale: float) -> dict[str, Any]:
    return dict(
        type="RPNHead", in_channels=width, feat_channels=width,
        anchor_generator=dict(type="AnchorGenerator", scales=anchor_scales(stats, rescale),
                              ratios=anchor_ratios(stats), strides=list(STRIDES)),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
    )


def _roi_head(p: dict[str, Any], num_classes: int, weights: list[float] | None = None) -> dict[str, Any]:
    """Three cascade stages (box targets tighter at each) sharing the RoI extractors and mask head."""
    width, fc = p["width"], p["fc"]
    return dict(
        type="CascadeRoIHead", num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2),
                                out_channels=width, featmap_strides=STRIDES[:4]),
        bbox_head=[
            _bbox_head(num_classes, width, fc, [0.1, 0.1, 0.2, 0.2], weights),
            _bbox_head(num_classes, width, fc, [0.05, 0.05, 0.1, 0.1], weights),
            _bbox_head(num_classes, width, fc, [0.033, 0.033, 0.067, 0.067], weights),
        ],
        mask_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=2),
                                out_channels=width, featmap_strides=STRIDES[:4]),
        mask_head=dict(type="FCNMaskHead", num_convs=p["mask_convs"], in_channels=width,
                       conv_out_channels=width, num_classes=num_classes,
                       loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)),
    )


def _train_cfg(p: dict[str, Any], pos_fraction: float) -> dict[str, Any]:
    mask_size = 28  # 28x28 mask targets: a 5-50 px object (after rescale 15-150) keeps its outline
    return dict(
        rpn=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=p["rpn_samples"], pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False,
        ),
        rpn_proposal=dict(nms_pre=p["train_proposals"], max_per_img=p["train_proposals"],
                          nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=[
            _rcnn_train(0.5, p["rcnn_samples"], pos_fraction, mask_size),
            _rcnn_train(0.6, p["rcnn_samples"], pos_fraction, mask_size),
            _rcnn_train(0.7, p["rcnn_samples"], pos_fraction, mask_size),
        ],
    )


def _test_cfg(max_per_img: int) -> dict[str, Any]:
    return dict(
        rpn=dict(nms_pre=max(3000, max_per_img), max_per_img=max_per_img,
                 nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=max_per_img,
                  mask_thr_binary=0.5),
    )


def default_lr(arch: str) -> float:
    return float(PRESETS[arch]["lr"])


def with_test_threshold(model_cfg: dict[str, Any], score_thr: float) -> dict[str, Any]:
    """A copy whose RCNN stage drops detections below `score_thr` before the mask head runs."""
    cfg = copy.deepcopy(model_cfg)
    cfg["test_cfg"]["rcnn"]["score_thr"] = float(score_thr)
    return cfg


def count_anchors(model_cfg: dict[str, Any]) -> int:
    gen = model_cfg["rpn_head"]["anchor_generator"]
    return len(gen["scales"]) * len(gen["ratios"])


def describe(model_cfg: dict[str, Any]) -> str:
    bb = model_cfg["backbone"]
    name = f"{bb['type']}-{bb['depth']}" + (f"-{bb['groups']}x{bb['base_width']}d" if "groups" in bb else "")
    scales = model_cfg["rpn_head"]["anchor_generator"]["scales"]
    sizes = sorted({round(s * STRIDES[0]) for s in scales})
    return (f"Cascade Mask R-CNN, {name} + FPN({model_cfg['neck']['out_channels']}), "
            f"finest anchors {sizes} px, max {model_cfg['test_cfg']['rcnn']['max_per_img']} objects per tile")
