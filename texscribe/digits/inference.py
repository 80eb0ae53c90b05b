"""Digit model files and the classifier users call: `load_digit_model().predict(...)`.

A digit model file is a `torch.save` dict: architecture name + fp16 weights + provenance `meta`
(test accuracy, training command and time). The LaTeX model files of `texscribe.checkpoint` carry a
config and a vocabulary that a 10-class classifier does not have, hence this separate small format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from texscribe.checkpoint import cast_weights, load_stamped, write_stamped
from texscribe.digits.models import MODELS, build_digit_model
from texscribe.digits.preprocess import load_digit_image
from texscribe.errors import ModelLoadError

FORMAT = "texscribe-digits"
FORMAT_VERSION = 1
SHIPPED = "digits.pt"  # inside the texscribe.weights package


def save_digit_model(
    path: str | Path, arch: str, model: nn.Module, meta: dict[str, Any] | None = None
) -> Path:
    """Write `model` (architecture `arch`) with fp16 weights (half the size, no accuracy change at 4 decimals)."""
    return write_stamped(
        path, FORMAT, FORMAT_VERSION, {"arch": arch, "state_dict": cast_weights(model.state_dict())}, meta
    )


def shipped_model_path() -> Path:
    """`texscribe/weights/digits.pt` inside the installed package."""
    return Path(__file__).resolve().parents[1] / "weights" / SHIPPED


def read_digit_model(path: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a digit model file (default: the shipped one) -> (fp32 model in eval mode, meta dict)."""
    path = Path(path) if path is not None else shipped_model_path()
    if not path.is_file():
        raise ModelLoadError(
            f"digit model file not found: {path}; train one with `texscribe digits train --model best --out {path}`"
        )
    payload = load_stamped(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a texscribe digit model (written by `texscribe digits train`?)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: digit model format {payload.get('format_version')} but this texscribe reads "
            f"{FORMAT_VERSION}; retrain it with this version"
        )
    arch = payload.get("arch")
    if arch not in MODELS:
        raise ModelLoadError(f"{path}: unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    model = build_digit_model(arch)
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        )
    except (RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{path}: weights do not fit architecture {arch!r}: {exc}") from exc
    model.eval()
    return model, {"arch": arch, **payload.get("meta", {})}


@dataclass
class DigitPrediction:
    """The most likely digit, its probability, and all ten class probabilities."""

    digit: int
    probability: float
    probabilities: list[float]
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "probability": self.probability,
            "probabilities": self.probabilities,
            "source": self.source,
        }


class DigitClassifier:
    """A loaded digit model with MNIST-style preprocessing in front of it."""

    def __init__(self, model: nn.Module, meta: dict[str, Any] | None = None):
        self.model = model.eval()
        self.meta = meta or {}

    @torch.no_grad()
    def predict_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) MNIST-style images -> class probabilities (B, 10)."""
        return torch.softmax(self.model(images.float()), dim=1)

    def predict(self, inputs: Any) -> DigitPrediction | list[DigitPrediction]:
        """Classify one image or a list of them (file paths, encoded bytes, or pixel arrays of either polarity).

        A single input gives one `DigitPrediction`, a list gives a list. Unusable images raise `ImageError`.
        """
        single = not isinstance(inputs, (list, tuple))
        items: Sequence[Any] = [inputs] if single else inputs
        if not items:
            return []
        origins = [os.fspath(x) if isinstance(x, (str, os.PathLike)) else None for x in items]
        batch = np.stack([load_digit_image(x, origin=o) for x, o in zip(items, origins)])
        probs = self.predict_tensor(torch.from_numpy(batch).unsqueeze(1))
        out = [
            DigitPrediction(
                digit=int(p.argmax()),
                probability=float(p.max()),
                probabilities=[round(float(v), 6) for v in p],
                source=o,
            )
            for p, o in zip(probs, origins)
        ]
        return out[0] if single else out


def load_digit_model(path: str | Path | None = None) -> DigitClassifier:
    """The shipped digit classifier (or the model file at `path`), ready to `.predict(...)`."""
    model, meta = read_digit_model(path)
    return DigitClassifier(model, meta)
