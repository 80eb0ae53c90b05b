"""Pre-norm Transformer decoder: causal self-attention, cross-attention to the image memory, FFN.

Decoding state (`Cache`, all batch-first): per layer i the self-attention keys/values of the tokens
emitted so far, `k{i}`/`v{i}` (B, t, D), growing by one row per `step`, and the cross-attention
keys/values of the memory, `mem_k{i}`/`mem_v{i}` (B, L, D), computed once in `init_cache`. A step
therefore costs one token; it has no Python branches on tensor values (ONNX-friendly).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from texscribe.latex import Vocab
from texscribe.models.interface import Cache, Decoder, Memory
from texscribe.models.positional import token_positions


class Attention(nn.Module):
    """Multi-head attention with the key/value projection split out so it can be cached."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, S, D) -> keys, values (B, S, D)."""
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return k, v

    def forward(
        self, x: Tensor, k: Tensor, v: Tensor, attend: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """x (B, T, D) queries over k, v (B, S, D); attend (B, 1, 1, S) True where allowed."""
        batch, length, dim = x.shape
        heads = self.num_heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(batch, -1, heads, dim // heads).transpose(1, 2)

        out = scaled_dot_product_attention(
            split(self.q_proj(x)),
            split(k),
            split(v),
            attend,
            dropout=self.dropout if self.training else 0.0,
            causal=causal,
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, attend: Tensor | None, *, dropout: float, causal: bool
) -> Tensor:
    """`F.scaled_dot_product_attention` (q (B, H, T, d) over k, v (B, H, S, d)) with the faster CPU kernel
    for bf16 causal self-attention: torch's CPU flash-attention kernel is slow in bf16 on short sequences
    (in `benchmarks/train_throughput.py --profile` its backward took 16 % of a `base` bf16 training step,
    2.7x its own fp32 time), while the plain matmul-softmax-matmul path runs on the bf16 matrix units (a
    50-token causal block timed alone: 4 ms vs 20 ms forward + backward). Cross-attention over the long image
    memory keeps flash."""
    if causal and q.dtype == torch.bfloat16 and q.device.type == "cpu":
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attend, dropout_p=dropout, is_causal=True
            )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout, is_causal=causal)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, num_heads, attention_dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = Attention(d_model, num_heads, attention_dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mem_k: Tensor, mem_v: Tensor, attend: Tensor) -> Tensor:
        """Teacher-forced: x (B, T, D) -> (B, T, D), causal over T."""
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        x = x + self.dropout(self.self_attn(h, k, v, causal=True))
        return self._cross_and_ff(x, mem_k, mem_v, attend)

    def step(
        self, x: Tensor, past_k: Tensor, past_v: Tensor, mem_k: Tensor, mem_v: Tensor, attend: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One token: x (B, 1, D), past keys/values (B, t, D) -> output and keys/values (B, t+1, D)."""
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        k = torch.cat((past_k, k), dim=1)
        v = torch.cat((past_v, v), dim=1)
        x = x + self.dropout(self.self_attn(h, k, v))
        return self._cross_and_ff(x, mem_k, mem_v, attend), k, v

    def _cross_and_ff(self, x: Tensor, mem_k: Tensor, mem_v: Tensor, attend: Tensor) -> Tensor:
        x = x + self.dropout(self.cross_attn(self.norm2(x), mem_k, mem_v, attend))
        return x + self.dropout(self.ff(self.norm3(x)))


class TransformerDecoder(Decoder):
    """Token ids -> next-token logits, attending over `Memory` (B, L, d_model).

    tie_embeddings: the output projection reuses the input embedding matrix (fewer parameters).
    teacher_forcing: probability of feeding the ground-truth previous token in training; below 1,
    `forward` runs a first no-grad pass and replaces each input token (except <sos>) by the model's
    own argmax prediction with probability 1 - teacher_forcing (two-pass scheduled sampling).
    attention_dropout: dropout on the attention weights (None: `dropout`). On a CPU it costs a random draw
    per (query, key, head) of every attention map: 0 trains markedly faster (see benchmarks/train_throughput.py).
    """

    repeats_memory = True  # `forward` takes k*B target rows for B memories (see `_decode`)

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_layers: int = 3,
        num_heads: int = 8,
        ff_dim: int = 1024,
        dropout: float = 0.1,
        tie_embeddings: bool = True,
        teacher_forcing: float = 1.0,
        attention_dropout: float | None = None,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        self.d_model = d_model
        self.vocab_size = vocab_size
        self.teacher_forcing = teacher_forcing
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(
                d_model,
                num_heads,
                ff_dim,
                dropout,
                dropout if attention_dropout is None else attention_dropout,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.tie_embeddings = tie_embeddings
        if tie_embeddings:
            self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.out_proj = nn.Linear(d_model, vocab_size)

    def forward(self, memory: Memory, tgt: Tensor, teacher_forcing: float | None = None) -> Tensor:
        """tgt (B, T) starting with <sos> -> logits (B, T, V); tgt may hold k*B rows, row i reading memory i % B."""
        ratio = self.teacher_forcing if teacher_forcing is None else teacher_forcing
        if self.training and ratio < 1.0:
            tgt = self._mix_predictions(memory, tgt, ratio)
        return self._decode(memory, tgt)

    def init_cache(self, memory: Memory) -> Cache:
        batch = memory.features.shape[0]
        empty = memory.features.new_zeros(batch, 0, self.d_model)
        cache: Cache = {}
        for i, layer in enumerate(self.layers):
            cache[f"k{i}"], cache[f"v{i}"] = empty, empty
            cache[f"mem_k{i}"], cache[f"mem_v{i}"] = layer.cross_attn.keys_values(memory.features)
        return cache

    def step(self, memory: Memory, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """token (B,) -> logits (B, V); position = number of tokens already in the cache."""
        x = self._embed(token.unsqueeze(1), start=cache["k0"].shape[1])
        attend = _attend_mask(memory)
        new: Cache = {}
        for i, layer in enumerate(self.layers):
            x, new[f"k{i}"], new[f"v{i}"] = layer.step(
                x, cache[f"k{i}"], cache[f"v{i}"], cache[f"mem_k{i}"], cache[f"mem_v{i}"], attend
            )
            new[f"mem_k{i}"], new[f"mem_v{i}"] = cache[f"mem_k{i}"], cache[f"mem_v{i}"]
        return self._logits(x).squeeze(1), new

    def _decode(self, memory: Memory, tgt: Tensor) -> Tensor:
        """tgt (k*B, T) over memory (B, L, D): row i reads memory i % B. The memory keys/values are
        projected once per image and repeated, not projected k times (bidirectional training has k = 2)."""
        x = self._embed(tgt, start=0)
        repeats, rest = divmod(tgt.shape[0], memory.features.shape[0])
        if rest:
            raise ValueError(
                f"tgt rows ({tgt.shape[0]}) must be a multiple of memory rows ({memory.features.shape[0]})"
            )
        attend = _attend_mask(memory).repeat(repeats, 1, 1, 1)
        for layer in self.layers:
            mem_k, mem_v = layer.cross_attn.keys_values(memory.features)
            x = layer(x, mem_k.repeat(repeats, 1, 1), mem_v.repeat(repeats, 1, 1), attend)
        return self._logits(x)

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        x = self.embedding(tokens) * math.sqrt(self.d_model)
        x = x + token_positions(start, tokens.shape[1], self.d_model, tokens.device).to(x.dtype)
        return self.dropout(x)

    def _logits(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        if self.tie_embeddings:
            return F.linear(x, self.embedding.weight, self.out_bias)
        return self.out_proj(x)

    @torch.no_grad()
    def _mix_predictions(self, memory: Memory, tgt: Tensor, ratio: float) -> Tensor:
        """Replace inputs 1..T-1 by the model's own previous-position argmax with probability 1 - ratio."""
        predicted = self._decode(memory, tgt).argmax(-1)  # predicted[:, t] is a guess for tgt[:, t + 1]
        swap = torch.rand(tgt.shape, device=tgt.device) >= ratio
        swap[:, 0] = False
        swap &= tgt != Vocab.pad_id  # keep <pad> positions as they are
        mixed = tgt.clone()
        mixed[:, 1:] = torch.where(swap[:, 1:], predicted[:, :-1], tgt[:, 1:])
        return mixed


def _attend_mask(memory: Memory) -> Tensor:
    """(B, L) True=padding -> (B, 1, 1, L) True where attention is allowed."""
    return (~memory.mask)[:, None, None, :]
