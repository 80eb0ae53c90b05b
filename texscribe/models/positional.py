"""Sinusoidal positional encodings: 1D for token positions, 2D (CoMER-style) for the feature grid.

Neither has parameters or a maximum length: values are computed from positions on the fly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _frequencies(dim: int, temperature: float, device: torch.device) -> Tensor:
    """(dim // 2,) inverse wavelengths 1 / temperature^(2i / dim)."""
    exponent = torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
    return torch.exp(-math.log(temperature) * exponent)


def sinusoid(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """positions (...,) float -> (..., dim) with sin on even and cos on odd channels."""
    if dim % 2:
        raise ValueError(f"sinusoidal encoding needs an even dimension, got {dim}")
    angles = positions.float().unsqueeze(-1) * _frequencies(dim, temperature, positions.device)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def token_positions(start: int | Tensor, length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) encodings for token positions start, start + 1, ... (start > 0 while decoding)."""
    positions = torch.arange(length, device=device) + start
    return sinusoid(positions, dim)


class PositionalEncoding2D(nn.Module):
    """2D sinusoidal encoding over normalised (y, x) coordinates of the valid feature cells.

    Coordinates count valid cells only and are scaled to (0, 2π] per image, so an image's encoding
    does not depend on the padding its batch adds. Half the channels encode y, half x.
    """

    def __init__(self, d_model: int, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"2D positional encoding needs d_model divisible by 4, got {d_model}")
        self.d_model = d_model
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: Tensor) -> Tensor:
        """mask (B, h, w) True=padding -> encodings (B, h, w, d_model)."""
        valid = (~mask).float()
        y = valid.cumsum(1)
        x = valid.cumsum(2)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        half = self.d_model // 2
        return torch.cat((sinusoid(y, half, self.temperature), sinusoid(x, half, self.temperature)), dim=-1)
