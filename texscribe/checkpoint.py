"""Self-describing model files: config + vocab + weights in one `.pt`, loadable with nothing else.

This is the one place that reads and writes model files. Training exports here (from its best
Lightning checkpoint); `texscribe.inference.load_model` reads here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from texscribe import __version__
from texscribe.config import Config, stored_config
from texscribe.errors import ConfigError, ModelLoadError
from texscribe.latex import Vocab

FORMAT = "texscribe-model"
FORMAT_VERSION = 1


@dataclass
class ModelFile:
    """What a model file holds. `meta` records provenance (training data, steps, metrics)."""

    config: Config
    vocab: Vocab
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def save_model_file(
    path: str | Path,
    config: Config,
    vocab: Vocab,
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a model file; floating tensors are stored in `dtype` (fp16 keeps shipped weights small)."""
    body = {"config": config.to_dict(), "vocab": vocab.itos, "state_dict": cast_weights(state_dict, dtype)}
    return write_stamped(path, FORMAT, FORMAT_VERSION, body, meta)


def cast_weights(
    state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """CPU copies of a state dict with floating tensors cast to `dtype` (integer buffers untouched)."""
    return {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
        for k, v in state_dict.items()
    }


def write_stamped(
    path: str | Path, fmt: str, version: int, body: dict[str, Any], meta: dict[str, Any] | None = None
) -> Path:
    """`torch.save` `body` stamped with format, versions and time, atomically (no half-written file on a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": fmt,
        "format_version": version,
        "texscribe_version": __version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **body,
        "meta": meta or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_model_file(path: str | Path) -> ModelFile:
    """Read and validate a model file; every problem is a `ModelLoadError` that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise ModelLoadError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path}: not a texscribe model file (a Lightning .ckpt? export it with `texscribe train --export`)"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: model file format {version} but this texscribe ({__version__}) reads format {FORMAT_VERSION}; "
            "re-export the model with this version"
        )
    for key in ("config", "vocab", "state_dict"):
        if key not in payload:
            raise ModelLoadError(f"{path}: model file is missing its {key!r}; re-export it")
    try:
        config = stored_config(payload["config"])
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: stored config is invalid for this version: {exc}") from exc
    vocab = Vocab.from_list(payload["vocab"])
    return ModelFile(
        config=config, vocab=vocab, state_dict=payload["state_dict"], meta=payload.get("meta", {})
    )
