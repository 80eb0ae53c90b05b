"""im2markup / course Model 1 CNN: 3×3 conv-BN-ReLU layers, each optionally followed by a max-pool.

`pools[i]` is the pool after layer i: 1 (none), an int (square) or [height, width] (e.g. [2, 1]
halves only the height). The total stride is the product, (8, 8) with the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.models.encoders.common import (
    Stride,
    as_pair,
    pool_valid,
    prepare_input,
    to_padding_mask,
    total_stride,
)
from texscribe.models.interface import Encoder


class VGGEncoder(Encoder):
    """images (B, 1, H, W) -> features (B, channels[-1], H/sh, W/sw), (sh, sw) = `self.stride`."""

    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 256, 256, 512, 512),
        pools: Sequence[int | Sequence[int]] = (2, 2, 1, 2, 1, 1),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not channels or len(channels) != len(pools):
            raise ValueError(
                f"channels ({len(channels)}) and pools ({len(pools)}) need one entry per conv layer"
            )
        self.pools: list[Stride] = [as_pair(p, f"pools[{i}]") for i, p in enumerate(pools)]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        previous = 1
        for width in channels:
            self.convs.append(nn.Conv2d(previous, width, 3, padding=1, bias=not batch_norm))
            self.norms.append(nn.BatchNorm2d(width) if batch_norm else nn.Identity())
            previous = width
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = previous
        self.stride: Stride = total_stride(self.pools)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = prepare_input(images, pixel_mask, self.stride)
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = F.relu(norm(conv(x * valid))) * valid
            if pool != (1, 1):
                x = F.max_pool2d(x, pool)
                valid = pool_valid(valid, pool)
        return self.dropout(x), to_padding_mask(valid)
