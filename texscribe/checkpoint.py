"""Model files and training checkpoints: the one place that reads and writes model weights on disk.

A model file is self-describing: config + vocab + fp16 weights (+ provenance `meta`) in one `.pt`,
loadable with nothing else (`save_model_file`, `read_model_file`; `texscribe.inference.load_model`
builds the model from it). A Lightning training checkpoint (`<run dir>/checkpoints/*.ckpt`) carries the
config and vocab as hyperparameters next to the LightningModule's state; `read_checkpoint` reads it,
`checkpoint_weights` takes out the evaluated model's weights, and `export_checkpoint` turns it into a
model file (`texscribe export --format pt`). `read_weights` reads either kind, for a run that starts
from existing weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from texscribe import __version__
from texscribe.config import Config, stored_config, upgrade_stored, with_data_overrides
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


def load_stamped(path: Path) -> Any:
    """`torch.load` of a file written by `write_stamped` (weights only); a corrupt or foreign file is a
    `ModelLoadError` naming it. The caller checks the stamp (format, version) against what it reads."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise ModelLoadError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from exc


def read_model_file(path: str | Path) -> ModelFile:
    """Read and validate a model file; every problem is a `ModelLoadError` that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    payload = load_stamped(path)
    if _is_training_checkpoint(payload):
        raise ModelLoadError(
            f"{path}: a training checkpoint, not a model file; convert it with "
            f"`texscribe export --format pt --model {path} --out model.pt`"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path}: not a texscribe model file (write one with `texscribe train`, or convert a training "
            "checkpoint with `texscribe export --format pt`)"
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


# ------------------------------------------------------------------------------------ training checkpoints
def _is_training_checkpoint(payload: Any) -> bool:
    """A Lightning checkpoint of `texscribe.training` (config + vocab in `hyper_parameters`)."""
    if not isinstance(payload, dict) or "state_dict" not in payload:
        return False
    hp = payload.get("hyper_parameters")
    return isinstance(hp, dict) and "config" in hp and "vocab" in hp


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint written by `texscribe.training` (config + vocab in `hyper_parameters`), whole."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: torch raises many types, some with pages of text
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise ModelLoadError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {detail})") from exc
    if not _is_training_checkpoint(ckpt):
        raise ModelLoadError(f"{path}: not a texscribe training checkpoint (no config/vocab/state_dict)")
    return ckpt


@dataclass
class Weights:
    """A model's weights with what describes them: the vocabulary and the config's `model` section (a
    dict, as stored: compare it with `dataclasses.asdict(config.model)`)."""

    state_dict: dict[str, torch.Tensor]
    vocab: Vocab
    model_config: dict[str, Any]


def checkpoint_weights(ckpt: dict[str, Any]) -> Weights:
    """The evaluated model's weights in a training checkpoint: the EMA teacher's (mean teacher) if present,
    else the model's; the LightningModule's attribute prefix (`teacher.`, `model.`) is removed."""
    prefix = "teacher." if any(k.startswith("teacher.") for k in ckpt["state_dict"]) else "model."
    state = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    hp = ckpt["hyper_parameters"]
    return Weights(state, Vocab.from_list(hp["vocab"]), upgrade_stored(hp["config"])["model"])


def read_weights(path: str | Path) -> Weights:
    """The weights of a model file or of a training checkpoint (tried in that order)."""
    try:
        mf = read_model_file(path)
        return Weights(mf.state_dict, mf.vocab, asdict(mf.config.model))
    except ModelLoadError:
        return checkpoint_weights(read_checkpoint(path))


def export_checkpoint(
    ckpt_path: str | Path | Sequence[str | Path],
    out: str | Path,
    meta: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Training checkpoint(s) -> self-describing model file (config + vocab + fp16 weights + meta).

    Several checkpoints of one run are averaged (`average_weights`): snapshots taken along a run at a
    high learning rate average to a flatter, better model (Izmailov et al. 2018, SWA). The config and
    the step in `meta` are the last checkpoint's. `overrides`: `data.KEY=VALUE` settings of how the model
    file reads images (e.g. `data.ink_height=34`: a model trained with scale augmentation may read
    detail better a little larger than its training mean); recorded in `meta`. The model section
    describes the weights and cannot change.
    """
    paths = [ckpt_path] if isinstance(ckpt_path, (str, Path)) else list(ckpt_path)
    if not paths:
        raise ModelLoadError("no checkpoint to export")
    ckpts = [read_checkpoint(p) for p in paths]
    ckpt = ckpts[-1]
    weights = average_weights([checkpoint_weights(c) for c in ckpts], [str(p) for p in paths])
    try:
        config = stored_config(ckpt["hyper_parameters"]["config"])
    except ConfigError as exc:
        raise ModelLoadError(f"{paths[-1]}: stored config is invalid for this version: {exc}") from exc
    if overrides:
        config = with_data_overrides(config, overrides)
    meta = {"checkpoint": Path(paths[-1]).name, "checkpoint_step": ckpt.get("global_step"),
            "checkpoint_epoch": ckpt.get("epoch"), **(meta or {})}  # fmt: skip
    if overrides:
        meta["export_overrides"] = list(overrides)
    if len(paths) > 1:
        meta["averaged_checkpoints"] = [
            {"file": Path(p).name, "step": c.get("global_step")} for p, c in zip(paths, ckpts)
        ]
    return save_model_file(out, config, weights.vocab, weights.state_dict, meta)


def with_reading_settings(model_file: str | Path, out: str | Path, overrides: Sequence[str]) -> Path:
    """A model file -> a copy at `out` that reads images with `overrides` (`data.KEY=VALUE`, e.g.
    `data.read_ink_heights=[28,42]`): the same weights, vocabulary and meta, the overrides appended to
    `meta["export_overrides"]`. `out` may be `model_file` itself (the write is atomic)."""
    mf = read_model_file(model_file)
    config = with_data_overrides(mf.config, overrides)
    meta = {**mf.meta, "export_overrides": [*mf.meta.get("export_overrides", []), *overrides]}
    return save_model_file(out, config, mf.vocab, mf.state_dict, meta)


def is_model_file(path: str | Path) -> bool:
    """Whether `path` is a file in the model-file format (not a training checkpoint, not anything else)."""
    try:
        payload = load_stamped(Path(path))
    except ModelLoadError:
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def average_weights(weights: Sequence[Weights], names: Sequence[str]) -> Weights:
    """The element-wise mean of the floating-point tensors of `weights` (same model and vocabulary, e.g.
    snapshots of one run), in fp32; integer buffers (batch-norm step counts) are the last one's. Batch-norm
    running statistics are averaged too, a close approximation of recomputing them for the mean weights.
    `ModelLoadError` naming the odd one out when the models or vocabularies differ."""
    first = weights[0]
    for w, name in zip(weights[1:], names[1:]):
        if w.model_config != first.model_config or w.vocab.itos != first.vocab.itos:
            raise ModelLoadError(
                f"{name}: cannot average with {names[0]}: a different model or vocabulary (average "
                "checkpoints of one run)"
            )
    if len(weights) == 1:
        return first
    state = {}
    for key, last in weights[-1].state_dict.items():
        if last.is_floating_point():
            state[key] = torch.stack([w.state_dict[key].float() for w in weights]).mean(0)
        else:
            state[key] = last
    return Weights(state, first.vocab, first.model_config)
