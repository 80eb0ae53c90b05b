"""EfficientNet-b0 encoder (MBConv + squeeze-excitation, SiLU) with optional non-local blocks.

EfficientNet-b0's seven MBConv stages, written for formula images:

    stage      1   2   3   4   5    6    7
    expand     1   6   6   6   6    6    6
    channels  16  24  40  80  112  192  320      (× width_mult, rounded to a multiple of 8)
    repeats    1   2   2   3   3    4    1       (× depth_mult, rounded up)
    kernel     3   3   5   3   5    5    3

The ImageNet network divides by 32 (stem 2 × stages 2, 3, 4, 6). A formula image at the scale the
presets use is 32–96 px high with symbols 10–30 px tall, so /32 leaves one to three feature rows and
merges neighbouring symbols and sub/superscripts into one cell. The default `strides` keep stage 6 at
stride 1, giving /16 (CoMER's DenseNet and the ResNet presets' resolution); `[1, 2, 2, 1, 1, 1, 1]`
gives /8 for small images. A stride may be `[h, w]` (e.g. `[2, 1]`) to keep more columns.

`non_local`: stage numbers (1–7) after which a non-local (self-attention) block runs over the whole
feature grid, so a cell can see a fraction bar or a matching bracket far away (Wang et al. 2018).

Padding-exact like the other encoders (see `common.py`): every spatial op (conv, squeeze pooling,
attention) sees padding as zeros or ignores it, so a batched image gives the same features as alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.models.encoders.common import (
    Stride,
    as_pair,
    masked_mean,
    pad_to_stride,
    pool_valid,
    to_padding_mask,
    total_stride,
)
from texscribe.models.interface import Encoder

# (expand ratio, channels, repeats, kernel) of EfficientNet-b0's stages
B0_STAGES = ((1, 16, 1, 3), (6, 24, 2, 3), (6, 40, 2, 5), (6, 80, 3, 3), (6, 112, 3, 5), (6, 192, 4, 5), (6, 320, 1, 3))  # fmt: skip


def round_channels(channels: float, divisor: int = 8) -> int:
    """Scale-then-round as EfficientNet does: nearest multiple of `divisor`, never below 90 % of the value."""
    out = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * channels else out


class SqueezeExcite(nn.Module):
    """Channel gates from the masked global mean: x * sigmoid(W2 SiLU(W1 mean(x)))."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(masked_mean(x, valid)))))


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand - k×k depthwise (stride) - SE - 1×1 project (+ residual when shapes match).

    drop_path: probability of skipping the residual branch per sample in training (stochastic depth).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand: int,
        kernel: int,
        stride: Stride,
        se_ratio: float,
        drop_path: float,
    ):
        super().__init__()
        hidden = in_channels * expand
        self.expand = (
            nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU())
            if expand != 1
            else nn.Identity()
        )
        self.depthwise = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self.dw_norm = nn.BatchNorm2d(hidden)
        self.se = SqueezeExcite(hidden, max(1, int(in_channels * se_ratio))) if se_ratio > 0 else None
        self.project = nn.Sequential(
            nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.stride = stride
        self.residual = stride == (1, 1) and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: Tensor, valid_in: Tensor, valid_out: Tensor) -> Tensor:
        h = self.expand(x) * valid_in
        h = F.silu(self.dw_norm(self.depthwise(h))) * valid_out
        if self.se is not None:
            h = self.se(h, valid_out)
        h = self.project(h)
        if not self.residual:
            return h
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            h = h * torch.bernoulli(h.new_full((h.shape[0], 1, 1, 1), keep)) / keep
        return x + h


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block: x + BN(W · softmax(θ(x)ᵀ φ(x)) g(x)), padding keys ignored.

    Multi-head scaled dot-product attention over all h·w cells; the output BN starts at zero scale,
    so an inserted block is the identity at initialisation and cannot disturb early training.
    """

    def __init__(self, channels: int, inner: int | None = None, num_heads: int = 1):
        super().__init__()
        inner = inner or max(num_heads, channels // 2)
        if inner % num_heads:
            raise ValueError(f"non-local inner width {inner} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(channels, 3 * inner, 1)
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)  # each (B, inner, L)

        def heads(t: Tensor) -> Tensor:  # (B, inner, L) -> (B, heads, L, inner / heads)
            return t.reshape(batch, self.num_heads, -1, height * width).transpose(2, 3)

        attend = (valid.flatten(1) > 0.5)[:, None, None, :]  # (B, 1, 1, L) True where a key is real
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=attend)
        out = out.transpose(2, 3).reshape(batch, -1, height, width)
        return x + self.norm(self.out(out)) * valid


class EfficientNetEncoder(Encoder):
    """images (B, 1, H, W) -> features (B, out_channels, H/sh, W/sw), (sh, sw) = `self.stride` (16 by default).

    width_mult / depth_mult: EfficientNet's compound scaling factors (b0 = 1.0 / 1.0).
    num_stages: run only the first N of the 7 stages (fewer channels and FLOPs for a CPU budget).
    strides: per-stage stride (int or [h, w]) of the stages that run; the stem adds 2.
    head_channels: a final 1×1 conv-BN-SiLU to this width (b0 uses 1280); 0 = none, out = last stage width.
    non_local: stage numbers followed by a non-local block; non_local_heads: its attention heads.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_stages: int = 7,
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 1, 1, 1),
        stem_channels: int = 32,
        head_channels: int = 0,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
        non_local: Sequence[int] = (),
        non_local_heads: int = 1,
    ):
        super().__init__()
        if not 1 <= num_stages <= len(B0_STAGES):
            raise ValueError(f"num_stages must be in 1..{len(B0_STAGES)}, got {num_stages}")
        if len(strides) < num_stages:
            raise ValueError(
                f"strides needs one entry per stage that runs ({num_stages}), got {list(strides)}"
            )
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(f"width_mult and depth_mult must be > 0, got {width_mult}, {depth_mult}")
        if not 0 <= drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        bad = [s for s in non_local if not (isinstance(s, int) and 1 <= s <= num_stages)]
        if bad:
            raise ValueError(f"non_local lists stage numbers 1..{num_stages}, got {list(non_local)}")
        stage_strides = [as_pair(s, f"strides[{i}]") for i, s in enumerate(strides[:num_stages])]
        stem = round_channels(stem_channels * width_mult)
        self.stem = nn.Conv2d(1, stem, 3, stride=2, padding=1, bias=False)
        self.stem_norm = nn.BatchNorm2d(stem)
        specs = B0_STAGES[:num_stages]
        repeats = [math.ceil(r * depth_mult) for _, _, r, _ in specs]
        total_blocks, index = sum(repeats), 0
        self.blocks = nn.ModuleList()
        self.non_local = nn.ModuleDict()
        channels = stem
        for stage, ((expand, width, _, kernel), count, stride) in enumerate(
            zip(specs, repeats, stage_strides), 1
        ):
            out = round_channels(width * width_mult)
            for i in range(count):
                rate = drop_path * index / max(1, total_blocks - 1)  # linearly deeper -> more often dropped
                block = MBConv(channels, out, expand, kernel, stride if i == 0 else (1, 1), se_ratio, rate)
                self.blocks.append(block)
                channels, index = out, index + 1
            if stage in non_local:
                self.non_local[str(index - 1)] = NonLocalBlock(channels, num_heads=non_local_heads)
        self.head = None
        if head_channels:
            self.head = nn.Sequential(
                nn.Conv2d(channels, head_channels, 1, bias=False), nn.BatchNorm2d(head_channels), nn.SiLU()
            )
            channels = head_channels
        self.out_channels = channels
        self.stride: Stride = total_stride([(2, 2), *stage_strides])

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = pad_to_stride(images, pixel_mask, self.stride)
        valid = pool_valid(valid, (2, 2))
        x = F.silu(self.stem_norm(self.stem(x))) * valid
        for index, block in enumerate(self.blocks):
            valid_out = pool_valid(valid, block.stride)
            x = block(x * valid, valid, valid_out)
            valid = valid_out
            if str(index) in self.non_local:
                x = self.non_local[str(index)](x * valid, valid)
        if self.head is not None:
            x = self.head(x)
        return x * valid, to_padding_mask(valid)
