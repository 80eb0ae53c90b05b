"""The one interface between models and decoding, so decoding is written once for every model and backend.

    memory = model.encode(images, pixel_mask)                  # once per image batch
    cache = model.decoder.init_cache(memory)
    logits, cache = model.decoder.step(memory, token, cache)   # one token per call
    cache = model.decoder.reorder_cache(cache, index)          # beam search re-ranking
    logits = model.decoder(memory, tgt)                        # teacher-forced: training, R2L rescoring

Shapes: images (B, 1, H, W) float in [0, 1], ink bright on dark; pixel_mask (B, H, W) bool,
True where the pixel is padding. Token ids follow `texscribe.latex.Vocab` (`Vocab.pad_id`,
`Vocab.sos_id`, `Vocab.eos_id`).

`DecodingModel` and `StepDecoder` are what `texscribe.decoding` needs; they are protocols, so the
ONNX runtime backend (plain objects, no torch modules) satisfies them by shape. The torch building
blocks subclass `Encoder` and `Decoder`, which add what training needs: the encoder's `stride`, the
decoder's teacher-forced `forward` and its `repeats_memory` rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

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


@runtime_checkable
class StepDecoder(Protocol):
    """Token-by-token decoding over a `Memory`: what greedy and beam search call, on torch or ONNX."""

    @abstractmethod
    def init_cache(self, memory: Memory) -> Cache:
        """Empty decoding state for a batch of B sequences."""

    @abstractmethod
    def step(self, memory: Memory, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """token (B,) the last emitted id -> logits (B, V) for the next token, and the updated cache.

        An entry the step hands back untouched (the very same tensor) is taken to be memory-derived and
        identical for every beam of an image, so beam search need not copy it when re-ranking beams.
        """

    def reorder_cache(self, cache: Cache, index: Tensor) -> Cache:
        """Keep/duplicate rows: index (B',) row numbers into the cache's batch axis."""
        return {k: v.index_select(0, index) for k, v in cache.items()}

    def __call__(self, memory: Memory, tgt: Tensor) -> Tensor:
        """Teacher-forced pass: tgt (B, T) ids starting with the start token -> logits (B, T, V).

        Decoding uses it only for right-to-left rescoring; a backend without it raises there.
        """
        ...


@runtime_checkable
class DecodingModel(Protocol):
    """What decoding needs from a model: `ImageToLatex` (torch) or the ONNX runtime backend."""

    decoder: StepDecoder

    def encode(self, images: Tensor, pixel_mask: Tensor) -> Memory:
        """images (B, 1, H, W), pixel_mask (B, H, W) True=padding -> Memory."""
        ...


class Encoder(nn.Module, ABC):
    """Image batch -> feature map (torch models).

    out_channels: C of the returned (B, C, h, w) map. stride: (sh, sw) total downsampling, so
    h = ceil(H / sh), w = ceil(W / sw); the encoder pads its input to multiples of it itself, and
    ONNX export with dynamic H, W declares them as multiples of it.
    """

    out_channels: int
    stride: tuple[int, int]

    @abstractmethod
    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Return features (B, C, h, w) and feature mask (B, h, w), True=padding."""


class Decoder(nn.Module, StepDecoder):
    """A torch `StepDecoder` with the teacher-forced `forward` training runs (`decoder(memory, tgt)`).

    repeats_memory: whether `forward` accepts k*B target rows for B memory rows (row i reads memory
    i % B), so training with both directions (k = 2) passes each memory once instead of a copy per
    direction. Decoders that cannot do that keep the default False and get the memory rows repeated.
    """

    repeats_memory: ClassVar[bool] = False

    @abstractmethod
    def forward(self, memory: Memory, tgt: Tensor) -> Tensor:
        """tgt (B, T) ids starting with <sos> -> logits (B, T, V), predicting the next token at each position."""
