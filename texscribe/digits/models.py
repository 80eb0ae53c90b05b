"""Digit classifiers for 28×28 MNIST images, by name.

Every model takes images (B, 1, 28, 28) float in [0, 1], ink bright (the MNIST convention and the
library's canonical form), normalises them itself, and returns logits (B, 10). So a model file
needs nothing but its architecture name and weights, and no caller repeats the normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.errors import TexscribeError

MNIST_MEAN = 0.1307  # pixel statistics of the MNIST training set
MNIST_STD = 0.3081


class Normalize(nn.Module):
    """(x - mean) / std with MNIST statistics; a module so that it travels inside the model."""

    def forward(self, x: Tensor) -> Tensor:
        return (x - MNIST_MEAN) / MNIST_STD


class LocalResponseNorm(nn.Module):
    """AlexNet's across-channel normalisation, b_c = a_c / (k + alpha/n * sum of a^2 over n channels around c)^beta.

    Same result as `nn.LocalResponseNorm`, computed with a cumulative sum over channels: torch's
    version goes through a 3-D average pool and took 75 % of AlexNet's CPU training time.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        n = self.size
        squares = x.float().square()
        # zeros: n//2 + 1 before (the extra one makes window sums a difference of cumsums), (n-1)//2 after
        cum = F.pad(squares, (0, 0, 0, 0, n // 2 + 1, (n - 1) // 2)).cumsum(1)
        window = cum[:, n:] - cum[:, :-n]
        return (x.float() / (self.k + self.alpha / n * window).pow(self.beta)).to(x.dtype)


def conv_bn(
    c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None
) -> list[nn.Module]:
    """Conv (no bias: batch norm has one) -> BatchNorm -> ReLU. `padding=None` keeps the size ("same")."""
    pad = kernel // 2 if padding is None else padding
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def course_cnn(dropout: float = 0.25) -> nn.Sequential:
    """The course CNN: conv 5×5 ×2 -> pool -> conv 3×3 ×2 -> pool -> conv 3×3 -> conv 1×1 -> FC -> FC.

    Shapes: 28×28×32 -> 14×14×32 -> 14×14×64 -> 7×7×64 -> 7×7×128 -> 7×7×64 -> 256 -> 10.
    """
    return nn.Sequential(
        Normalize(),
        *conv_bn(1, 32, 5),
        *conv_bn(32, 32, 5),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        *conv_bn(32, 64, 3),
        *conv_bn(64, 64, 3),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        *conv_bn(64, 128, 3),
        *conv_bn(128, 64, 1),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256, bias=False),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(2 * dropout),
        nn.Linear(256, 10),
    )


def lenet5() -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling in place of the scaled tanh and subsampling.

    Shapes: 28×28 (padded to 32×32 by the first conv) -> 6@28×28 -> 6@14×14 -> 16@10×10 -> 16@5×5
    -> C5 120 -> F6 84 -> 10.
    """
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, 10),
    )


def alexnet_small(dropout: float = 0.5) -> nn.Sequential:
    """AlexNet's shape scaled to 28×28: 5 convs (5×5, 5×5, 3×3 ×3) with overlapping 3×3/2 max pooling
    and local response norm (after the pooling, as in CaffeNet: 4× fewer pixels to normalise), then two
    dropout-regularised 512-wide FC layers.

    Shapes: 28×28 -> 48@28×28 -> 48@13×13 -> 96@13×13 -> 96@6×6 -> 144, 144, 96 @6×6 -> 96@2×2 -> 512 -> 512 -> 10.
    """
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 48, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        LocalResponseNorm(5),
        nn.Conv2d(48, 96, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        LocalResponseNorm(5),
        nn.Conv2d(96, 144, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(144, 144, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(144, 96, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(96 * 2 * 2, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Linear(512, 10),
    )


def mlp(hidden: int = 512, dropout: float = 0.2) -> nn.Sequential:
    """Two hidden layers on the flattened 784 pixels: 784 -> 512 -> 512 -> 10."""
    return nn.Sequential(
        Normalize(),
        nn.Flatten(),
        nn.Linear(28 * 28, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


def best_cnn(width: int = 32, dropout: float = 0.15) -> nn.Sequential:
    """Our design: all-convolutional, batch-normed, strided 5×5 convs instead of pooling.

    Two stages of (3×3 valid, 3×3 valid, 5×5 stride 2) then a 4×4 conv that sees the whole 4×4 map:
    28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4 -> 1, channels w, w, w, 2w, 2w, 2w, 4w -> 10.
    ~15 M multiply-adds per image with w=32: cheap enough for ~30 epochs of augmented
    training on two CPU cores in 15 minutes (bf16 autocast, channels-last).
    """
    w = width
    return nn.Sequential(
        Normalize(),
        *conv_bn(1, w, 3, padding=0),
        *conv_bn(w, w, 3, padding=0),
        *conv_bn(w, w, 5, stride=2),
        nn.Dropout(dropout),
        *conv_bn(w, 2 * w, 3, padding=0),
        *conv_bn(2 * w, 2 * w, 3, padding=0),
        *conv_bn(2 * w, 2 * w, 5, stride=2),
        nn.Dropout(dropout),
        *conv_bn(2 * w, 4 * w, 4, padding=0),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * w, 10),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "cnn": course_cnn,
    "lenet": lenet5,
    "alexnet": alexnet_small,
    "mlp": mlp,
    "best": best_cnn,
}


def build_digit_model(name: str) -> nn.Module:
    """A fresh model by name (one of `MODELS`)."""
    if name not in MODELS:
        raise TexscribeError(f"unknown digit model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def multiply_adds(model: nn.Module) -> int:
    """Multiply-adds of one forward pass on one 28×28 image (convs and linears only)."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_out
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 1, 28, 28))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
