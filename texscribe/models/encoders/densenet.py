"""DenseNet-B encoder as in WAP/CoMER: a 7×7 stem, dense blocks of bottleneck layers, compressing
transitions; total stride 4 · 2^(num_blocks - 1) (16 with the usual 3 blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.models.encoders.common import Stride, pad_to_stride, pool_valid, to_padding_mask
from texscribe.models.interface import Encoder


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1(bottleneck) -BN-ReLU-Conv3×3 -> `growth` new channels."""

    def __init__(self, in_channels: int, growth: int, bottleneck: bool, dropout: float):
        super().__init__()
        inner = 4 * growth if bottleneck else in_channels
        self.bottleneck = (
            nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, inner, 1, bias=False),
            )
            if bottleneck
            else nn.Identity()
        )
        self.norm = nn.BatchNorm2d(inner)
        self.conv = nn.Conv2d(inner, growth, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = F.relu(self.norm(self.bottleneck(x))) * valid
        return torch.cat((x, self.dropout(self.conv(h))), dim=1)


class Transition(nn.Module):
    """BN-ReLU-Conv1×1 (channels × compression) then 2×2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))) * valid, 2)


class DenseNetEncoder(Encoder):
    """images (B, 1, H, W) -> features (B, out_channels, H/16, W/16) with the default 3 blocks.

    growth: channels each dense layer adds; depth: layers per block; compression: transition
    channel factor; bottleneck: use the 1×1 bottleneck (DenseNet-B).
    """

    def __init__(
        self,
        growth: int = 24,
        depth: int = 16,
        num_blocks: int = 3,
        compression: float = 0.5,
        bottleneck: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if growth < 1 or depth < 1 or num_blocks < 1:
            raise ValueError(
                f"growth, depth and num_blocks must be >= 1, got {growth}, {depth}, {num_blocks}"
            )
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        channels = 2 * growth
        self.stem = nn.Conv2d(1, channels, 7, stride=2, padding=3, bias=False)
        self.stem_norm = nn.BatchNorm2d(channels)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for index in range(num_blocks):
            layers = nn.ModuleList()
            for _ in range(depth):
                layers.append(DenseLayer(channels, growth, bottleneck, dropout))
                channels += growth
            self.blocks.append(layers)
            if index < num_blocks - 1:
                out = int(channels * compression)
                self.transitions.append(Transition(channels, out))
                channels = out
        self.out_norm = nn.BatchNorm2d(channels)
        self.out_channels = channels
        side = 4 * 2 ** (num_blocks - 1)
        self.stride: Stride = (side, side)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = pad_to_stride(images, pixel_mask, self.stride)
        valid = pool_valid(valid, (2, 2))
        x = F.relu(self.stem_norm(self.stem(x))) * valid
        valid = pool_valid(valid, (2, 2))
        x = F.max_pool2d(x, 2)
        for index, block in enumerate(self.blocks):
            for layer in block:
                x = layer(x, valid)
            if index < len(self.transitions):
                x = self.transitions[index](x, valid)
                valid = pool_valid(valid, (2, 2))
        return self.out_norm(x) * valid, to_padding_mask(valid)
