"""The small interface every model family implements, so decoding is written once.

    memory = model.encode(images, pixel_mask)            # once per image batch
    cache = model.decoder.init_cache(memory)
    logits, cache = model.decoder.step(memory, token, cache)   # one token per call
    cache = model.decoder.reorder_cache(cache, index)          # beam search re-ranking

Shapes: images (B, 1, H, W) float in [0, 1], ink bright on dark; pixel_mask (B, H, W) bool,
True where the pixel is padding. Token ids follow `texscribe.latex.Vocab` (<pad>=0, <sos>=1, <eos>=2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Cache = dict[str, Tensor]  # every tensor batch-first, so reordering is one index_select per entry


@dataclass
class Memory:
    """Encoder output, flattened row-major: features (B, L, D), mask (B, L) True=padding, grid (h, w)."""

    features: Tensor
    mask: Tensor
    height: int
    width: int

    def index_select(self, index: Tensor) -> Memory:
        return Memory(
            self.features.index_select(0, index), self.mask.index_select(0, index), self.height, self.width
        )


class Encoder(nn.Module, ABC):
    """Image batch -> feature map. `out_channels` is C of the returned (B, C, h, w) map."""

    out_channels: int

    @abstractmethod
    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Return features (B, C, h, w) and feature mask (B, h, w), True=padding."""


class Decoder(nn.Module, ABC):
    """Token decoder attending over `Memory`; teacher-forced `forward` for training, `step` for decoding."""

    @abstractmethod
    def forward(self, memory: Memory, tgt: Tensor) -> Tensor:
        """tgt (B, T) ids starting with <sos> -> logits (B, T, V) predicting the next token at each position."""

    @abstractmethod
    def init_cache(self, memory: Memory) -> Cache:
        """Empty decoding state for a batch of B sequences."""

    @abstractmethod
    def step(self, memory: Memory, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """token (B,) the last emitted id -> logits (B, V) for the next token, and the updated cache."""

    def reorder_cache(self, cache: Cache, index: Tensor) -> Cache:
        return {k: v.index_select(0, index) for k, v in cache.items()}


def pixel_to_feature_mask(pixel_mask: Tensor, height: int, width: int) -> Tensor:
    """Downsample a (B, H, W) padding mask to a (B, h, w) feature grid (a cell is padding if all its pixels are)."""
    valid = (~pixel_mask).float().unsqueeze(1)
    pooled = torch.nn.functional.adaptive_max_pool2d(valid, (height, width))
    return pooled.squeeze(1) < 0.5
