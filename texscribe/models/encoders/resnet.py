"""BasicBlock ResNet encoder with configurable depths, widths and which stages run.

ResNet-18 is `layers=[2, 2, 2, 2]`, ResNet-34 `[3, 4, 6, 3]`; `stages=[1, 2, 3]` runs stages 1–3
after the stem (course Model 2), `stages=[2, 3]` feeds the stem straight into stage 2. Stage 1 keeps
the resolution, later stages halve it; the stem divides by `stem_stride` (1, 2 or 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.models.encoders.common import Stride, pad_to_stride, pool_valid, to_padding_mask, total_stride
from texscribe.models.interface import Encoder


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.stride = stride

    def forward(self, x: Tensor, valid_in: Tensor, valid_out: Tensor) -> Tensor:
        x = x * valid_in
        out = F.relu(self.bn1(self.conv1(x))) * valid_out
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetEncoder(Encoder):
    """images (B, 1, H, W) -> features (B, widths[stages[-1]-1], H/s, W/s), s = `self.stride`."""

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        stages: Sequence[int] = (1, 2, 3),
        stem_channels: int = 64,
        stem_stride: int = 4,
    ):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(
                f"layers ({len(layers)} stages) and widths ({len(widths)}) must have equal length"
            )
        stages = list(stages)
        if (
            not stages
            or stages != list(range(stages[0], stages[-1] + 1))
            or stages[0] < 1
            or stages[-1] > len(layers)
        ):
            raise ValueError(f"stages must be consecutive numbers within 1..{len(layers)}, got {stages}")
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        if stem_stride == 1:
            self.stem = nn.Conv2d(1, stem_channels, 3, padding=1, bias=False)
        else:
            self.stem = nn.Conv2d(1, stem_channels, 7, stride=2, padding=3, bias=False)
        self.stem_norm = nn.BatchNorm2d(stem_channels)
        self.stem_stride = stem_stride
        strides: list[Stride] = [(stem_stride, stem_stride)]
        self.blocks = nn.ModuleList()
        channels = stem_channels
        for stage in stages:
            stride = 1 if stage == 1 else 2
            strides.append((stride, stride))
            for index in range(layers[stage - 1]):
                self.blocks.append(BasicBlock(channels, widths[stage - 1], stride if index == 0 else 1))
                channels = widths[stage - 1]
        self.out_channels = channels
        self.stride: Stride = total_stride(strides)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = pad_to_stride(images, pixel_mask, self.stride)
        first = min(self.stem_stride, 2)
        valid = pool_valid(valid, (first, first))
        x = F.relu(self.stem_norm(self.stem(x)))
        valid = valid.to(x.dtype)  # bf16 under autocast: an fp32 mask would promote every masked map to fp32
        if self.stem_stride == 4:
            x = F.max_pool2d(x * valid, 3, stride=2, padding=1)
            valid = pool_valid(valid, (2, 2))
        for block in self.blocks:
            valid_out = pool_valid(valid, (block.stride, block.stride))
            x = block(x, valid, valid_out)
            valid = valid_out
        return x * valid, to_padding_mask(valid)
