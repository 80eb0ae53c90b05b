"""The composed recogniser: CNN encoder -> 1×1 projection to d_model -> + 2D positions -> decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from texscribe.models.interface import Decoder, DecodingModel, Encoder, Memory
from texscribe.models.positional import PositionalEncoding2D


class ImageToLatex(nn.Module, DecodingModel):
    """images (B, 1, H, W) in [0, 1] + pixel_mask (B, H, W) True=padding -> token logits.

    `encode` runs once per image batch; `decoder.init_cache/step` then decode token by token
    (the `DecodingModel` of `texscribe.models.interface`), `forward` is the teacher-forced training pass.
    """

    decoder: Decoder

    def __init__(self, encoder: Encoder, decoder: Decoder, d_model: int, vocab_size: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.d_model = d_model
        self.vocab_size = vocab_size
        self.proj = nn.Conv2d(encoder.out_channels, d_model, 1)
        self.pos2d = PositionalEncoding2D(d_model)
        self.norm = nn.LayerNorm(d_model)
        # channels-last (NHWC) convolutions: oneDNN's fast path on CPUs (2-3x NCHW in fp32 and bf16);
        # load_state_dict copies into these tensors, so loaded weights keep the layout
        self.encoder.to(memory_format=torch.channels_last)
        self.proj.to(memory_format=torch.channels_last)

    @property
    def stride(self) -> tuple[int, int]:
        """(sh, sw) total downsampling of the encoder (`Encoder.stride`): memory grid h = ceil(H / sh)."""
        return tuple(self.encoder.stride)

    def encode(self, images: Tensor, pixel_mask: Tensor) -> Memory:
        """-> Memory with features (B, h*w, d_model) row-major, mask (B, h*w) True=padding."""
        features, mask = self.encoder(images.contiguous(memory_format=torch.channels_last), pixel_mask)
        x = self.proj(features).permute(0, 2, 3, 1)  # (B, h, w, D)
        x = self.norm(x + self.pos2d(mask).to(x.dtype))
        batch, height, width, dim = x.shape
        return Memory(
            x.reshape(batch, height * width, dim), mask.reshape(batch, height * width), height, width
        )

    def forward(
        self, images: Tensor, pixel_mask: Tensor, tgt_in: Tensor, teacher_forcing: float | None = None
    ) -> Tensor:
        """tgt_in (B, T) starting with <sos> -> logits (B, T, vocab_size)."""
        memory = self.encode(images, pixel_mask)
        if teacher_forcing is None:
            return self.decoder(memory, tgt_in)
        return self.decoder(memory, tgt_in, teacher_forcing=teacher_forcing)
