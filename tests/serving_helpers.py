"""Shared by the serving tests (server, ONNX, browser): a tiny real model file and formula images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from texscribe.checkpoint import save_model_file
from texscribe.config import load_config
from texscribe.latex import Vocab
from texscribe.models.registry import build_model

TINY_TOKENS = ["x", "y", "2", "+", "=", "\\frac", "{", "}", "^", "_", "1", "a", "-", "(", ")"]


def make_tiny_model(path: Path) -> Path:
    """The `tiny` preset with seeded, untrained weights, saved as a self-describing model file."""
    torch.manual_seed(0)
    config = load_config("tiny")
    vocab = Vocab(TINY_TOKENS)
    model = build_model(config.model, len(vocab))
    return save_model_file(path, config, vocab, model.state_dict(), meta={"note": "untrained test model"})


def formula_png(text: str = "x+2", width: int = 220, height: int = 70, invert: bool = False) -> bytes:
    """A rendered formula-like PNG (dark ink on white, as a screenshot would be; `invert` for white on black)."""
    img = np.full((height, width), 255, np.uint8)
    cv2.putText(img, text, (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 0, 3)
    if invert:
        img = 255 - img
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()
