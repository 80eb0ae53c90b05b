"""im2markup / course Model 1 CNN: 3×3 conv-BN-ReLU layers, each optionally followed by a max-pool.

`pools[i]` is the pool after layer i: 1 (none), an int (square) or [height, width] (e.g. [2, 1]
halves only the height). The total stride is the product, (8, 8) with the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from texscribe.models.encoders.common import (
    Stride,
    pad_to_stride,
    run_vgg_layers,
    to_padding_mask,
    total_stride,
    vgg_layers,
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
        self.pools, self.convs, self.norms = vgg_layers(channels, pools, batch_norm)
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = channels[-1]
        self.stride: Stride = total_stride(self.pools)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = pad_to_stride(images, pixel_mask, self.stride)
        x, valid = run_vgg_layers(self.convs, self.norms, self.pools, x, valid)
        return self.dropout(x), to_padding_mask(valid)
