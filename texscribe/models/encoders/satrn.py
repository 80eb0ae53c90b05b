"""SATRN encoder (Lee et al. 2020): a shallow CNN, then Transformer layers over the 2D feature grid.

    images -> [3×3 conv-BN-ReLU, pool] × len(pools) -> + adaptive 2D positions
           -> num_layers × (self-attention over all cells, locality-aware feed-forward) -> features

Adaptive 2D positional encoding (A2DPE): the encoding of cell (y, x) is α·P(y) + β·P(x), with P the
sinusoid of the integer row/column index and α, β = sigmoid(MLP(masked mean of the features)) per
channel, so the model learns per image how much the vertical vs horizontal position matters (a
fraction stacks vertically, a sum runs horizontally).

Locality-aware feed-forward: 1×1 conv - 3×3 depthwise conv - 1×1 conv on the grid instead of the
position-wise MLP, so each layer also mixes neighbouring cells.

SATRN divides by 4; each attention layer costs (h·w)², so the default pools divide by 8 (a 96×512
image gives 12×64 = 768 cells), which a CPU can train. Padding-exact: integer positions count from
the top-left, attention ignores padding keys, convs see padding as zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.models.encoders.common import (
    Stride,
    masked_mean,
    pad_to_stride,
    run_vgg_layers,
    to_padding_mask,
    total_stride,
    vgg_layers,
)
from texscribe.models.interface import Encoder
from texscribe.models.positional import sinusoid


class Adaptive2DPositions(nn.Module):
    """features (B, D, h, w) + valid (B, 1, h, w) -> (B, D, h, w) encodings α·P(row) + β·P(column)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gates = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU(), nn.Conv2d(dim, 2 * dim, 1))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        alpha, beta = torch.sigmoid(self.gates(masked_mean(x, valid))).chunk(2, dim=1)  # (B, D, 1, 1)
        _, dim, height, width = x.shape
        rows = sinusoid(torch.arange(height, device=x.device), dim).to(x.dtype)  # (h, D)
        cols = sinusoid(torch.arange(width, device=x.device), dim).to(x.dtype)  # (w, D)
        return alpha * rows.t()[None, :, :, None] + beta * cols.t()[None, :, None, :]


class LocalityFeedForward(nn.Module):
    """(B, D, h, w) -> (B, D, h, w): 1×1 expand, 3×3 depthwise, 1×1 project (ReLU between)."""

    def __init__(self, dim: int, ff_dim: int, dropout: float):
        super().__init__()
        self.expand = nn.Conv2d(dim, ff_dim, 1)
        self.depthwise = nn.Conv2d(ff_dim, ff_dim, 3, padding=1, groups=ff_dim)
        self.project = nn.Conv2d(ff_dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = F.relu(self.expand(x)) * valid
        h = F.relu(self.depthwise(h))
        return self.project(self.dropout(h))


class SATRNLayer(nn.Module):
    """Pre-norm layer: x + SelfAttention(LN(x)); x + LocalityFF(LN(x)). x (B, L, D) row-major over (h, w)."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = LocalityFeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor, padding: Tensor) -> Tensor:
        """x (B, L, D), valid (B, 1, h, w), padding (B, L) True=padding."""
        h = self.norm1(x)
        x = x + self.dropout(self.attn(h, h, h, key_padding_mask=padding, need_weights=False)[0])
        batch, _, height, width = valid.shape
        grid = self.norm2(x).transpose(1, 2).reshape(batch, -1, height, width)
        return x + self.dropout(self.ff(grid, valid).flatten(2).transpose(1, 2))


class SATRNEncoder(Encoder):
    """images (B, 1, H, W) -> features (B, dim, H/sh, W/sw), (sh, sw) = product of `pools`.

    channels: widths of the shallow CNN's conv layers (one per entry of `pools`, which may be 1, an
    int or [h, w]); dim: Transformer width; num_layers / num_heads / ff_dim / dropout: its layers.
    """

    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 128),
        pools: Sequence[int | Sequence[int]] = (2, 2, 2),
        dim: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        ff_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if dim % num_heads or dim % 2:
            raise ValueError(f"dim ({dim}) must be even and divisible by num_heads ({num_heads})")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.pools, self.convs, self.norms = vgg_layers(channels, pools)
        self.to_dim = nn.Conv2d(channels[-1], dim, 1)
        self.positions = Adaptive2DPositions(dim)
        self.layers = nn.ModuleList(SATRNLayer(dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(dim)
        self.out_channels = dim
        self.stride: Stride = total_stride(self.pools)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = pad_to_stride(images, pixel_mask, self.stride)
        x, valid = run_vgg_layers(self.convs, self.norms, self.pools, x, valid)
        x = self.to_dim(x) * valid
        x = x + self.positions(x, valid)
        batch, dim, height, width = x.shape
        padding = to_padding_mask(valid)
        seq = x.flatten(2).transpose(1, 2)  # (B, L, D)
        for layer in self.layers:
            seq = layer(seq, valid, padding.flatten(1))
        out = self.out_norm(seq).transpose(1, 2).reshape(batch, dim, height, width)
        return out * valid, padding
