"""Named model parts and `build_model`: the one place a `ModelConfig` becomes an `ImageToLatex`.

The `encoder`/`decoder` sections are `{name: <key below>, **constructor kwargs}`; kwargs are checked
against the constructor so a typo fails with the valid keys listed instead of being ignored.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from texscribe.config import Config, ModelConfig
from texscribe.errors import ConfigError
from texscribe.models.decoders import RNNAttentionDecoder, TransformerDecoder
from texscribe.models.encoders import (
    DenseNetEncoder,
    EfficientNetEncoder,
    ResNetEncoder,
    SATRNEncoder,
    VGGEncoder,
)
from texscribe.models.image_to_latex import ImageToLatex

ENCODERS: dict[str, type[nn.Module]] = {
    "vgg": VGGEncoder,
    "resnet": ResNetEncoder,
    "densenet": DenseNetEncoder,
    "efficientnet": EfficientNetEncoder,
    "satrn": SATRNEncoder,
}
DECODERS: dict[str, type[nn.Module]] = {
    "rnn_attention": RNNAttentionDecoder,
    "transformer": TransformerDecoder,
}
# Filled in by build_model from ModelConfig / the vocabulary, never from the section itself.
_SUPPLIED = {"vocab_size", "d_model"}


def build_model(model_config: ModelConfig | Config, vocab_size: int) -> ImageToLatex:
    """ModelConfig (or a whole Config) + vocabulary size -> a freshly initialised model."""
    if isinstance(model_config, Config):
        model_config = model_config.model
    d_model = model_config.d_model
    if not isinstance(d_model, int) or d_model < 4 or d_model % 4:
        raise ConfigError(f"model.d_model must be a positive multiple of 4 (2D positions), got {d_model!r}")
    if vocab_size < 4:
        raise ConfigError(f"vocab_size must cover at least the 4 special tokens, got {vocab_size}")
    encoder = _build("encoder", ENCODERS, model_config.encoder, {})
    decoder = _build(
        "decoder", DECODERS, model_config.decoder, {"vocab_size": vocab_size, "d_model": d_model}
    )
    return ImageToLatex(encoder, decoder, d_model=d_model, vocab_size=vocab_size)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def state_dict_bytes(model: nn.Module, dtype: torch.dtype = torch.float16) -> int:
    """Size of the weights as a model file stores them: floating tensors in `dtype`, others as they are."""
    total = 0
    for tensor in model.state_dict().values():
        itemsize = (
            torch.empty((), dtype=dtype).element_size()
            if tensor.is_floating_point()
            else tensor.element_size()
        )
        total += tensor.numel() * itemsize
    return total


def _build(
    part: str, table: dict[str, type[nn.Module]], section: dict[str, Any], supplied: dict[str, Any]
) -> nn.Module:
    where = f"model.{part}"
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"{where} must be a mapping with a 'name' (one of: {', '.join(table)})")
    kwargs = dict(section)
    name = kwargs.pop("name")
    if name not in table:
        raise ConfigError(f"{where}.name: unknown {part} {name!r}; choose one of: {', '.join(table)}")
    cls = table[name]
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.name not in _SUPPLIED
    ]
    valid = {p.name for p in params}
    for key in kwargs:
        if key in _SUPPLIED:
            raise ConfigError(
                f"{where}.{key}: set by texscribe (use model.d_model / the vocabulary), remove it"
            )
        if key not in valid:
            raise ConfigError(
                f"unknown config key {where}.{key} for {part} {name!r}; valid keys: {', '.join(sorted(valid))}"
            )
    try:
        return cls(
            **kwargs, **{k: v for k, v in supplied.items() if k in inspect.signature(cls.__init__).parameters}
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from exc
