"""Model families: CNN encoders, token decoders, the composed `ImageToLatex` and its registry.

from texscribe.models import build_model
model = build_model(config.model, vocab_size=len(vocab))
"""

from texscribe.models.image_to_latex import ImageToLatex
from texscribe.models.interface import Cache, Decoder, Encoder, Memory
from texscribe.models.registry import DECODERS, ENCODERS, build_model, count_parameters, state_dict_bytes

__all__ = [
    "DECODERS",
    "ENCODERS",
    "Cache",
    "Decoder",
    "Encoder",
    "ImageToLatex",
    "Memory",
    "build_model",
    "count_parameters",
    "state_dict_bytes",
]
