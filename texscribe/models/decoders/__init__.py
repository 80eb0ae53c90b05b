"""Token decoders over the image memory; each implements `texscribe.models.interface.Decoder`."""

from texscribe.models.decoders.rnn_attention import RNNAttentionDecoder
from texscribe.models.decoders.transformer import TransformerDecoder

__all__ = ["RNNAttentionDecoder", "TransformerDecoder"]
