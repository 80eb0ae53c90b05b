"""Batch augmentation for 28×28 digits with torch ops: one `grid_sample` per batch.

A random affine map (rotation, scale, shear, shift) and a smooth random elastic field are summed
into one sampling grid, so a whole batch is warped in a single bilinear resampling — fast on CPU,
and no per-image Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class AugmentSettings:
    """Ranges of the random warp; each is drawn uniformly in [-x, x] per image.

    Angles in degrees; scale and shear as fractions; shift and elastic displacement in pixels of the
    28×28 image. `elastic_grid` is the side of the coarse noise grid that is upsampled (bicubic) into
    a smooth field: smaller means smoother, larger-scale deformations.
    """

    rotation: float = 8.0
    scale: float = 0.08
    shear: float = 0.08
    shift: float = 2.0
    elastic: float = 1.0
    elastic_grid: int = 5


def random_warp(
    images: Tensor, settings: AugmentSettings, generator: torch.Generator | None = None
) -> Tensor:
    """Warp a batch (B, 1, H, W) with independent random affine + elastic deformations; same shape out."""
    b, _, h, w = images.shape
    opts = {"device": images.device, "dtype": torch.float32, "generator": generator}

    def uniform(limit: float) -> Tensor:
        return (torch.rand(b, **opts) * 2 - 1) * limit

    angle = uniform(math.radians(settings.rotation))
    scale = 1 + uniform(settings.scale)
    shear = uniform(settings.shear)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output coords to input coords in [-1, 1] units: 1 pixel = 2 / size
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, uniform(2 * settings.shift / w)], dim=1),
            torch.stack([sin, cos + shear * sin, uniform(2 * settings.shift / h)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    if settings.elastic > 0:
        g = settings.elastic_grid
        noise = torch.rand(b, 2, g, g, **opts) * 2 - 1
        field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)
        pixel = torch.tensor([2 * settings.elastic / w, 2 * settings.elastic / h], device=images.device)
        grid = grid + field.permute(0, 2, 3, 1) * pixel
    return F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
