"""Padding-exact helpers shared by the CNN encoders.

Every encoder keeps a float "valid" map (B, 1, h, w), 1 on image cells and 0 on padding, at each
resolution it passes through. Two rules make features on real pixels independent of how much
padding a batch adds (so a batched image gives the same output as the image alone):

1. the input is padded up to a multiple of the total stride, so every downsampling divides evenly
   and the valid map is pooled exactly (a cell is padding iff every pixel of its stride block is);
2. the input of every spatial conv/pool is multiplied by the valid map, so padding cells look like
   the zero padding a conv sees at an image border.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

Stride = tuple[int, int]


def as_pair(value: int | Sequence[int], name: str) -> Stride:
    """`2` -> (2, 2); `[2, 1]` -> (2, 1). Raises ValueError naming `name` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return (value, value)
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be a positive int or a [height, width] pair of them, got {value!r}")


def total_stride(strides: Sequence[Stride]) -> Stride:
    return (math.prod(s[0] for s in strides), math.prod(s[1] for s in strides))


def pad_to_stride(images: Tensor, pixel_mask: Tensor, stride: Stride) -> tuple[Tensor, Tensor]:
    """Pad (B, 1, H, W) images and (B, H, W) mask bottom/right to a multiple of `stride`.

    Returns zeroed images (padding pixels set to 0 whatever the batch used) and the valid map
    (B, 1, H', W') float.
    """
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (B, 1, H, W), got {tuple(images.shape)}")
    if pixel_mask.shape != (images.shape[0], images.shape[2], images.shape[3]):
        raise ValueError(
            f"pixel_mask must be (B, H, W) = {tuple(images.shape[::2])}, got {tuple(pixel_mask.shape)}"
        )
    height, width = images.shape[-2:]
    pad_h = (-height) % stride[0]
    pad_w = (-width) % stride[1]
    valid = (~pixel_mask.bool()).unsqueeze(1).to(images.dtype)
    valid = F.pad(valid, (0, pad_w, 0, pad_h), value=0.0)
    images = F.pad(images, (0, pad_w, 0, pad_h), value=0.0) * valid
    return images, valid


def pool_valid(valid: Tensor, stride: Stride) -> Tensor:
    """Valid map after a downsampling by `stride`: a cell is valid if any pixel of its block is."""
    if stride == (1, 1):
        return valid
    return F.max_pool2d(valid, kernel_size=stride, stride=stride)


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """(B, C, h, w) features, (B, 1, h, w) valid map -> (B, C, 1, 1) mean over valid cells."""
    return (x * valid).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True).clamp(min=1.0)


def to_padding_mask(valid: Tensor) -> Tensor:
    """(B, 1, h, w) float valid map -> (B, h, w) bool, True = padding."""
    return valid.squeeze(1) < 0.5


def vgg_layers(
    channels: Sequence[int], pools: Sequence[int | Sequence[int]], batch_norm: bool = True
) -> tuple[list[Stride], nn.ModuleList, nn.ModuleList]:
    """The plain CNN of VGG and of SATRN's stem: a 3x3 conv (+ batch norm) per entry of `channels`, each
    followed by a max-pool of `pools[i]` (1 = none). Returns (pools as pairs, convs, norms)."""
    if not channels or len(channels) != len(pools):
        raise ValueError(f"channels ({len(channels)}) and pools ({len(pools)}) need one entry per conv layer")
    pairs = [as_pair(p, f"pools[{i}]") for i, p in enumerate(pools)]
    convs, norms, previous = nn.ModuleList(), nn.ModuleList(), 1
    for width in channels:
        convs.append(nn.Conv2d(previous, width, 3, padding=1, bias=not batch_norm))
        norms.append(nn.BatchNorm2d(width) if batch_norm else nn.Identity())
        previous = width
    return pairs, convs, norms


def run_vgg_layers(
    convs: nn.ModuleList, norms: nn.ModuleList, pools: Sequence[Stride], x: Tensor, valid: Tensor
) -> tuple[Tensor, Tensor]:
    """Apply `vgg_layers` with padding kept at zero: features (B, C, h, w) and their valid map."""
    for conv, norm, pool in zip(convs, norms, pools):
        x = F.relu(norm(conv(x * valid))) * valid
        if pool != (1, 1):
            x = F.max_pool2d(x, pool)
            valid = pool_valid(valid, pool)
    return x, valid
