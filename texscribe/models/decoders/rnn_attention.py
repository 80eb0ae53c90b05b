"""Recurrent attention decoder (WAP-style): conditional LSTM/GRU with Bahdanau + coverage attention.

Each step (token y_{t-1}, state s_{t-1}):
    ŝ = cell1(embed(y_{t-1}), s_{t-1})
    e_i = vᵀ tanh(W ŝ + U a_i + U_f F_i),  F = conv(Σ_{k<t} α_k) over the (h, w) grid (coverage)
    α = softmax(e) over valid memory cells,  c = Σ α_i a_i
    s_t = cell2(c, ŝ);  logits = W_o dropout(tanh(W_p [s_t; c; embed(y_{t-1})]))

Cache (batch-first): `h` (and `c` for LSTM) the recurrent state, `coverage` (B, h, w) the sum of past
attention maps, `memory` (B, L, D) the (optionally row-encoded) annotations and `memory_proj`
(B, L, A) their attention projection, both computed once in `init_cache`. `step` reads the grid
shape from `coverage`, not from Python ints, and has no branches on tensor values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from texscribe.models.interface import Cache, Decoder, Memory


class RowEncoder(nn.Module):
    """BiLSTM over each row of the feature grid (im2markup's row encoder), padding-exact.

    The backward direction runs over each row reversed *within its valid length*, so padding never
    feeds into valid cells. Assumes each row's valid cells come first (images padded right/bottom).
    """

    def __init__(self, d_model: int):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"row_encoder needs an even d_model, got {d_model}")
        self.forward_rnn = nn.LSTM(d_model, d_model // 2, batch_first=True)
        self.backward_rnn = nn.LSTM(d_model, d_model // 2, batch_first=True)

    def forward(self, memory: Memory) -> Tensor:
        """-> (B, L, D) row-contextualised features."""
        batch, _, dim = memory.features.shape
        rows = memory.features.reshape(batch * memory.height, memory.width, dim)
        lengths = (~memory.mask).reshape(batch * memory.height, memory.width).sum(1, keepdim=True)
        position = torch.arange(memory.width, device=rows.device).unsqueeze(0)
        flip = torch.where(position < lengths, lengths - 1 - position, position)  # an involution
        flip = flip.unsqueeze(-1).expand(-1, -1, dim // 2)
        forward_out, _ = self.forward_rnn(rows)
        reversed_rows = rows.gather(1, flip[..., :1].expand(-1, -1, dim))
        backward_out, _ = self.backward_rnn(reversed_rows)
        backward_out = backward_out.gather(1, flip)
        out = torch.cat((forward_out, backward_out), dim=-1)
        return out.reshape(batch, memory.height * memory.width, dim)


class RNNAttentionDecoder(Decoder):
    """Token ids -> next-token logits with a conditional LSTM/GRU and coverage attention.

    teacher_forcing: in training, the probability that step t is fed the ground-truth token
    y_{t-1}; otherwise (per sequence and step, probability 1 - teacher_forcing) it is fed its own
    argmax from step t-1, detached (scheduled sampling). In eval mode it is always 1.
    row_encoder: run a BiLSTM over the encoder rows before attention (off by default).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        cell: str = "gru",
        hidden_dim: int = 256,
        embed_dim: int = 256,
        attn_dim: int = 256,
        coverage_channels: int = 64,
        coverage_kernel: int = 11,
        dropout: float = 0.2,
        row_encoder: bool = False,
        teacher_forcing: float = 1.0,
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if coverage_kernel < 1 or coverage_kernel % 2 == 0:
            raise ValueError(f"coverage_kernel must be odd (keeps the grid size), got {coverage_kernel}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        self.vocab_size = vocab_size
        self.is_lstm = cell == "lstm"
        self.teacher_forcing = teacher_forcing
        rnn_cell = nn.LSTMCell if self.is_lstm else nn.GRUCell
        self.row_encoder = RowEncoder(d_model) if row_encoder else None
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.init_h = nn.Linear(d_model, hidden_dim)
        self.init_c = nn.Linear(d_model, hidden_dim) if self.is_lstm else None
        self.cell1 = rnn_cell(embed_dim, hidden_dim)
        self.cell2 = rnn_cell(d_model, hidden_dim)
        self.query_proj = nn.Linear(hidden_dim, attn_dim)
        self.memory_proj = nn.Linear(d_model, attn_dim, bias=False)
        self.coverage_conv = nn.Conv2d(1, coverage_channels, coverage_kernel, padding=coverage_kernel // 2)
        self.coverage_proj = nn.Linear(coverage_channels, attn_dim, bias=False)
        self.energy = nn.Linear(attn_dim, 1)
        self.pre_out = nn.Linear(hidden_dim + d_model + embed_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def init_cache(self, memory: Memory) -> Cache:
        features = self.row_encoder(memory) if self.row_encoder is not None else memory.features
        valid = (~memory.mask).unsqueeze(-1).to(features.dtype)
        mean = (features * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        cache: Cache = {
            "h": torch.tanh(self.init_h(mean)),
            "coverage": features.new_zeros(features.shape[0], memory.height, memory.width),
            "memory": features,
            "memory_proj": self.memory_proj(features),
        }
        if self.init_c is not None:
            cache["c"] = torch.tanh(self.init_c(mean))
        return cache

    def step(self, memory: Memory, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """token (B,) -> logits (B, V), updated cache."""
        emb = self.dropout(self.embedding(token))
        state = self._cell(self.cell1, emb, cache)
        query = state[0] if self.is_lstm else state
        coverage = cache["coverage"]
        batch, height, width = coverage.shape
        cov = self.coverage_conv(coverage.unsqueeze(1)).flatten(2).transpose(1, 2)  # (B, L, Q)
        energy = self.energy(
            torch.tanh(self.query_proj(query).unsqueeze(1) + cache["memory_proj"] + self.coverage_proj(cov))
        ).squeeze(-1)
        alpha = energy.masked_fill(memory.mask, float("-inf")).softmax(dim=-1)  # (B, L)
        context = torch.bmm(alpha.unsqueeze(1), cache["memory"]).squeeze(1)  # (B, D)
        new = dict(cache)
        if self.is_lstm:
            new["h"], new["c"] = self.cell2(context, state)
        else:
            new["h"] = self.cell2(context, state)
        new["coverage"] = coverage + alpha.reshape(batch, height, width)
        hidden = torch.tanh(self.pre_out(torch.cat((new["h"], context, emb), dim=-1)))
        return self.out(self.dropout(hidden)), new

    def forward(self, memory: Memory, tgt: Tensor, teacher_forcing: float | None = None) -> Tensor:
        """tgt (B, T) starting with <sos> -> logits (B, T, V), one `step` per position."""
        ratio = self.teacher_forcing if teacher_forcing is None else teacher_forcing
        sample = self.training and ratio < 1.0
        if sample:
            use_truth = torch.rand(tgt.shape, device=tgt.device) < ratio
        cache = self.init_cache(memory)
        outputs: list[Tensor] = []
        token = tgt[:, 0]
        for t in range(tgt.shape[1]):
            if t > 0:
                token = tgt[:, t]
                if sample:
                    token = torch.where(use_truth[:, t], token, outputs[-1].detach().argmax(-1))
            logits, cache = self.step(memory, token, cache)
            outputs.append(logits)
        return torch.stack(outputs, dim=1)

    def _cell(self, cell: nn.Module, x: Tensor, cache: Cache) -> Tensor | tuple[Tensor, Tensor]:
        if self.is_lstm:
            return cell(x, (cache["h"], cache["c"]))
        return cell(x, cache["h"])
