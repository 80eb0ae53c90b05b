"""CNN encoders: images (B, 1, H, W) + pixel mask -> features (B, C, h, w) + feature mask."""

from texscribe.models.encoders.densenet import DenseNetEncoder
from texscribe.models.encoders.efficientnet import EfficientNetEncoder
from texscribe.models.encoders.resnet import ResNetEncoder
from texscribe.models.encoders.satrn import SATRNEncoder
from texscribe.models.encoders.vgg import VGGEncoder

__all__ = ["DenseNetEncoder", "EfficientNetEncoder", "ResNetEncoder", "SATRNEncoder", "VGGEncoder"]
