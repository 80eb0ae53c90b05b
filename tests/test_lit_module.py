"""Training's validation reads images exactly as users' predictions do (one search, `decoding.decode`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from texscribe import decoding
from texscribe.config import load_config
from texscribe.data.batching import Item, collate
from texscribe.inference import LoadedModel, Recognizer
from texscribe.latex import Vocab
from texscribe.training.lit_module import LitImageToLatex

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKENS = ["x", "y", "1", "2", "+", "-", "=", "\\frac", "{", "}", "^", "_"]


def test_validation_predictions_are_what_users_get(monkeypatch):
    config = load_config("tiny")
    vocab = Vocab(TOKENS)
    torch.manual_seed(0)
    module = LitImageToLatex(config.to_dict(), vocab.itos).eval()
    rng = np.random.default_rng(0)
    images = [rng.random((32, 96), dtype=np.float32) for _ in range(3)]  # one size: identical padding
    labels = [[4, 5, 6], [7], [8, 9, 4, 10, 11]]
    batch = collate([Item(str(i), img, ids) for i, (img, ids) in enumerate(zip(images, labels))])

    calls = []
    real_decode = decoding.decode

    def recorded_decode(*args, **kwargs):
        calls.append(kwargs)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode", recorded_decode)
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step(batch, 0)
    max_len = max(len(ids) for ids in labels) + 1 + 2  # validation's cap: the longest reference + 2
    users = Recognizer(LoadedModel(module.evaluated_model(), "torch", config, vocab, Path("tiny.pt")))
    predictions = users.predict_images(images, max_len=max_len)
    assert [c["beam"] for c in calls] == [1, 1]  # validation, then the users' call
    assert module._val_preds == [p.tokens for p in predictions]
    assert any(module._val_preds)  # an untrained model: long, arbitrary readings, not all empty
