"""Grow a trained model's vocabulary in place: new token ids are appended, old ids keep their rows.

Fine-tuning on a new domain (chemistry: `O`, `K`, `\\rightleftharpoons`, ...) meets tokens the model
never saw. `grow_vocab` enlarges every vocabulary-indexed tensor of the decoder — the input embedding
(V, E) and the output layer (V, H) weight + (V,) bias, or the bias alone when the output is tied to
the embedding — copying the old rows and starting each new row at the mean of the old ordinary-token
rows plus small noise, so a new token begins as "an average token" rather than at a random spot.
Tied decoders stay tied: the output reads the (replaced) embedding's weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from texscribe.errors import ConfigError
from texscribe.latex import SPECIALS, Vocab
from texscribe.models.image_to_latex import ImageToLatex

OUTPUT_LAYERS = ("out_proj", "out")  # attribute names of untied output projections, per decoder family
NOISE = 0.1  # std of a new row's noise, relative to the per-column std of the old rows


def extended_vocab(base: Vocab, sequences: Iterable[Sequence[str]]) -> tuple[Vocab, list[str]]:
    """`base` + the tokens of `sequences` it lacks, appended most frequent first (ties alphabetical):
    old tokens keep their ids. Returns (new vocab, added tokens in id order)."""
    counts = Counter(t for seq in sequences for t in seq if t not in base)
    added = sorted(counts, key=lambda t: (-counts[t], t))
    return Vocab.from_list([*base.itos, *added]), added


def grow_vocab(model: ImageToLatex, new_size: int, seed: int = 0) -> list[str]:
    """Resize `model` (in place) to `new_size` tokens; returns the names of the tensors that grew.

    Old rows are copied bit for bit; `new_size` equal to the current size is a no-op.
    `ConfigError` when shrinking or when the decoder has no recognisable vocabulary tensors.
    """
    decoder = model.decoder
    old = model.vocab_size
    if new_size < old:
        raise ConfigError(f"cannot shrink a vocabulary ({old} -> {new_size} tokens); old ids must stay valid")
    if new_size == old:
        return []
    gen = torch.Generator().manual_seed(seed)
    grown: list[str] = []
    embedding = getattr(decoder, "embedding", None)
    if not isinstance(embedding, nn.Embedding) or embedding.num_embeddings != old:
        raise ConfigError(
            f"{type(decoder).__name__} has no `embedding` of {old} rows; vocabulary growth cannot handle it"
        )
    new_embedding = nn.Embedding(new_size, embedding.embedding_dim, padding_idx=embedding.padding_idx)
    new_embedding.weight = nn.Parameter(_grow_rows(embedding.weight, new_size, gen))
    decoder.embedding = new_embedding
    grown.append("decoder.embedding.weight")
    if isinstance(getattr(decoder, "out_bias", None), nn.Parameter):  # tied output: logits = x Eᵀ + b
        decoder.out_bias = nn.Parameter(_grow_rows(decoder.out_bias, new_size, gen))
        grown.append("decoder.out_bias")
    for name in OUTPUT_LAYERS:
        layer = getattr(decoder, name, None)
        if isinstance(layer, nn.Linear) and layer.out_features == old:
            new_layer = nn.Linear(layer.in_features, new_size, bias=layer.bias is not None)
            new_layer.weight = nn.Parameter(_grow_rows(layer.weight, new_size, gen))
            grown.append(f"decoder.{name}.weight")
            if layer.bias is not None:
                new_layer.bias = nn.Parameter(_grow_rows(layer.bias, new_size, gen))
                grown.append(f"decoder.{name}.bias")
            setattr(decoder, name, new_layer)
    if len(grown) < 2:
        raise ConfigError(
            f"{type(decoder).__name__}: found no output layer of {old} rows (expected out_bias or one of "
            f"{', '.join(OUTPUT_LAYERS)}); vocabulary growth cannot handle it"
        )
    decoder.vocab_size = new_size
    model.vocab_size = new_size
    return grown


def _grow_rows(old: Tensor, new_size: int, gen: torch.Generator) -> Tensor:
    """(V, ...) -> (new_size, ...): old rows copied, new rows = mean of old ordinary rows + noise."""
    data = old.detach().float()
    base = data[len(SPECIALS) :] if data.shape[0] > len(SPECIALS) + 1 else data
    mean = base.mean(0)
    spread = base.std(0) if base.shape[0] > 1 else torch.zeros_like(mean)
    extra = new_size - data.shape[0]
    noise = torch.randn((extra, *data.shape[1:]), generator=gen) * spread * NOISE
    new_rows = mean.expand(extra, *data.shape[1:]) + noise
    return torch.cat([data, new_rows]).to(old.dtype)
