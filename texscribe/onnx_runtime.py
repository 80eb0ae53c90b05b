"""The onnxruntime backend: an ONNX export directory decoded with the same code as the torch model.

An export directory (written by `texscribe.onnx_export`, `texscribe export`) holds three graphs plus
the model's own config and vocabulary:

    encoder.onnx       images (B,1,H,W) float, pixel_mask (B,H,W) bool
                       -> features (B,L,D), feature_mask (B,h,w) bool (True = padding), L = h*w
    decoder_init.onnx  features, feature_mask -> the decoder's initial cache tensors
    decoder_step.onnx  features, feature_mask, token (B,) int64, cache... -> logits (B,V), new cache...
    model.json         {"format", "format_version", "config", "meta", "cache_names", "static_cache_names",
                        "opset", "quantized"}
    vocab.json         the vocabulary (`texscribe.latex.Vocab` JSON)

The cache is whatever dict the decoder family keeps (`texscribe.models.interface.Cache`), passed
as explicit inputs/outputs in a fixed key order, with dynamic batch, memory-length and time axes.
`OnnxModel` has the `encode` + `decoder.init_cache/step/reorder_cache` shape that
`texscribe.decoding` needs, so greedy and beam search run unchanged on onnxruntime.
`texscribe.inference.load_model(..., backend="onnx")` loads it; this module needs no torch model code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from texscribe.errors import ModelLoadError, TexscribeError
from texscribe.latex import Vocab
from texscribe.models.interface import Cache, Memory

ENCODER_FILE, INIT_FILE, STEP_FILE = "encoder.onnx", "decoder_init.onnx", "decoder_step.onnx"
META_FILE, VOCAB_FILE = "model.json", "vocab.json"
EXPORT_FORMAT = "texscribe-onnx"
EXPORT_VERSION = 1


def grid_memory(features: Tensor, feature_mask: Tensor) -> Memory:
    """Encoder output as the graphs pass it (features (B,L,D), mask (B,h,w)) -> `Memory` (mask (B,L))."""
    return Memory(features, feature_mask.flatten(1), feature_mask.shape[1], feature_mask.shape[2])


class _OnnxDecoder:
    """`init_cache/step/reorder_cache` over two onnxruntime sessions; tensors stay torch on the CPU."""

    def __init__(self, init_session, step_session, names: list[str], static: list[str]):
        self._init, self._step, self.names = init_session, step_session, names
        self.evolving = [n for n in names if n not in static]
        # The exporter drops inputs a graph never reads (a step that only uses the cached memory
        # keys/values has no `features` input), so feed each session only what it declares.
        self._init_inputs = {i.name for i in init_session.get_inputs()}
        self._step_inputs = {i.name for i in step_session.get_inputs()}

    def init_cache(self, memory: Memory) -> Cache:
        outputs = self._init.run(None, _memory_feed(memory, self._init_inputs))
        return {n: torch.from_numpy(v) for n, v in zip(self.names, outputs)}

    def step(self, memory: Memory, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        feed = _memory_feed(memory, self._step_inputs)
        feed["token"] = token.to(torch.int64).numpy()
        for n in self.names:
            feed[n] = cache[n].numpy()
        logits, *new = self._step.run(None, feed)
        updated = {n: torch.from_numpy(v) for n, v in zip(self.evolving, new)}
        # static entries come back as the same tensors, as the torch decoder returns them
        return torch.from_numpy(logits), {n: updated.get(n, cache[n]) for n in self.names}

    def reorder_cache(self, cache: Cache, index: Tensor) -> Cache:
        return {k: v.index_select(0, index) for k, v in cache.items()}

    def __call__(self, memory: Memory, tgt: Tensor) -> Tensor:
        raise TexscribeError(
            "the ONNX backend has no teacher-forced decoder pass; use backend='torch' for R2L rescoring"
        )


def _memory_feed(memory: Memory, wanted: set[str]) -> dict[str, np.ndarray]:
    feed = {}
    if "features" in wanted:
        feed["features"] = memory.features.contiguous().numpy()
    if "feature_mask" in wanted:
        feed["feature_mask"] = memory.mask.reshape(-1, memory.height, memory.width).numpy()
    return feed


class OnnxModel:
    """An exported model on onnxruntime with the `encode` + `decoder` shape of `texscribe.decoding`.

    Attributes: `vocab`, `config` (the dict the model was built from), `meta`, `quantized`.
    `threads` caps onnxruntime's intra-op threads per session (None: onnxruntime's default).
    """

    def __init__(self, export_dir: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(export_dir)
        info = read_export_info(self.path)
        self.vocab = Vocab.load(self.path / VOCAB_FILE)
        self.config: dict[str, Any] = info.get("config", {})
        self.meta: dict[str, Any] = info.get("meta", {})
        self.quantized = bool(info.get("quantized"))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # onnxruntime's idle threads spin after every run; between the ~20 short runs of one image
        # they starve the torch ops of the decoding loop on a 2-core CPU (measured: +12 ms/image)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(name: str):
            try:
                return ort.InferenceSession(
                    str(self.path / name), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ModelLoadError(
                    f"{self.path / name}: onnxruntime cannot load it ({exc}); re-export"
                ) from exc

        self._encoder = session(ENCODER_FILE)
        static = list(info.get("static_cache_names", []))
        self.decoder = _OnnxDecoder(session(INIT_FILE), session(STEP_FILE), list(info["cache_names"]), static)

    def encode(self, images: Tensor, pixel_mask: Tensor) -> Memory:
        features, feature_mask = self._encoder.run(
            None, {"images": images.float().contiguous().numpy(), "pixel_mask": pixel_mask.bool().numpy()}
        )
        return grid_memory(torch.from_numpy(features), torch.from_numpy(feature_mask))

    def eval(self) -> OnnxModel:  # decoding code may call model.eval(); nothing to switch here
        return self


def is_export_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file() and (p / ENCODER_FILE).is_file()


def read_export_info(path: str | Path) -> dict[str, Any]:
    """model.json of an export directory, validated; `ModelLoadError` says what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"ONNX export directory not found: {path} (create one with `texscribe export`)")
    missing = [
        n for n in (ENCODER_FILE, INIT_FILE, STEP_FILE, META_FILE, VOCAB_FILE) if not (path / n).is_file()
    ]
    if missing:
        raise ModelLoadError(
            f"{path}: not a complete ONNX export, missing {', '.join(missing)}; re-run `texscribe export`"
        )
    try:
        info = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path / META_FILE}: unreadable ({exc}); re-run `texscribe export`") from exc
    if info.get("format") != EXPORT_FORMAT or info.get("format_version") != EXPORT_VERSION:
        raise ModelLoadError(
            f"{path / META_FILE}: export format {info.get('format')!r} v{info.get('format_version')} is not "
            f"{EXPORT_FORMAT!r} v{EXPORT_VERSION}; re-export with this texscribe"
        )
    return info
