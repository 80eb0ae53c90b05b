"""ONNX export of a recogniser: a model (file) -> an export directory for `texscribe.onnx_runtime`.

`export_onnx` traces three graphs (encoder, decoder cache init, one decoder step with its cache as
explicit inputs/outputs; layout in `texscribe.onnx_runtime`) and writes them with the model's config
and vocabulary; `export_model_file` does it for a shipped model or model file (`texscribe export`);
`check_export` compares onnxruntime with torch on random images.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from texscribe.errors import TexscribeError
from texscribe.latex import Vocab
from texscribe.models.interface import Cache
from texscribe.onnx_runtime import (
    ENCODER_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    INIT_FILE,
    META_FILE,
    STEP_FILE,
    VOCAB_FILE,
    OnnxModel,
    grid_memory,
)

OPSET = 17


class _EncoderGraph(nn.Module):
    """encode() with the feature mask kept 2-D, so the grid size (h, w) travels as a shape."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        memory = self.model.encode(images, pixel_mask)
        return memory.features, memory.mask.reshape(-1, memory.height, memory.width)


class _InitGraph(nn.Module):
    def __init__(self, decoder: nn.Module, names: list[str]):
        super().__init__()
        self.decoder, self.names = decoder, names

    def forward(self, features: Tensor, feature_mask: Tensor) -> tuple[Tensor, ...]:
        cache = self.decoder.init_cache(grid_memory(features, feature_mask))
        return tuple(cache[n] for n in self.names)


class _StepGraph(nn.Module):
    """One decoder step; outputs only the cache entries that change (`evolving`), not the static ones."""

    def __init__(self, decoder: nn.Module, names: list[str], evolving: list[str]):
        super().__init__()
        self.decoder, self.names, self.evolving = decoder, names, evolving

    def forward(
        self, features: Tensor, feature_mask: Tensor, token: Tensor, *cache: Tensor
    ) -> tuple[Tensor, ...]:
        logits, new = self.decoder.step(
            grid_memory(features, feature_mask), token, dict(zip(self.names, cache))
        )
        return (logits, *(new[n] for n in self.evolving))


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, int]  # file name -> bytes
    seconds: float
    quantized: bool


@dataclass
class _Example:
    """Tensors of one example decoding run, used to trace the three graphs."""

    images: Tensor
    pixel_mask: Tensor
    features: Tensor
    feature_mask: Tensor
    token: Tensor
    cache: Cache  # after `steps` steps: what the traced step receives
    names: list[str]
    static: list[str]  # entries a step returns untouched (the same tensor)


@torch.no_grad()
def _run_example(model: nn.Module, batch: int, height: int, width: int, steps: int) -> _Example:
    images = torch.rand(batch, 1, height, width)
    pixel_mask = torch.zeros(batch, height, width, dtype=torch.bool)
    pixel_mask[1:, :, width // 2 :] = True  # padded rows, so masking is part of the trace
    features, feature_mask = _EncoderGraph(model)(images, pixel_mask)
    memory = grid_memory(features, feature_mask)
    cache = model.decoder.init_cache(memory)
    names = sorted(cache)
    token = torch.ones(batch, dtype=torch.long)
    previous = cache
    for _ in range(steps):  # a non-empty history, so no axis is traced at size 0 or 1
        previous = cache
        logits, cache = model.decoder.step(memory, token, cache)
        token = logits.argmax(-1)
    # Entries a step hands back untouched (memory keys/values) are not step outputs: onnxruntime would
    # copy them every step, and decoding relies on getting the very same tensor back for them.
    static = [n for n in names if cache[n] is previous[n]]
    return _Example(images, pixel_mask, features, feature_mask, token, cache, names, static)


def export_onnx(
    model: nn.Module,
    vocab: Vocab,
    out_dir: str | Path,
    *,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    quantize: str | None = None,
    opset: int = OPSET,
    example_size: tuple[int, int] = (64, 256),
) -> ExportResult:
    """Export `model` (an `ImageToLatex`-shaped module) into `out_dir`; `quantize="int8"` adds dynamic int8.

    The graphs are traced on an example batch of 2 images of `example_size` (H, W) after 3 decoding
    steps; batch, image size, memory length and every cache axis that varies are dynamic.
    """
    if quantize not in (None, "int8"):
        raise TexscribeError(f"unknown quantization {quantize!r}; the only choice is 'int8'")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    height, width = example_size
    example = _run_example(model, 2, height, width, steps=3)
    # A second, differently sized run tells which cache axes vary (batch, memory length, steps taken,
    # coverage grid...) and so must be dynamic; the others (hidden sizes) stay fixed.
    other = _run_example(model, 3, height + 32, width + 64, steps=4)
    _export_graphs(model, example, _cache_axes(example, other), out, opset)
    if quantize == "int8":
        _quantize_dynamic(out)
    (out / VOCAB_FILE).write_text(vocab.to_json(), encoding="utf-8")
    info = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "opset": opset,
        "quantized": quantize,
        "cache_names": example.names,
        "static_cache_names": example.static,
        "config": config or {},
        "meta": meta or {},
    }
    (out / META_FILE).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return ExportResult(out, files, time.perf_counter() - start, quantize == "int8")


def _cache_axes(example: _Example, other: _Example) -> dict[str, dict[int, str]]:
    """Dynamic axes of each cache entry: the batch axis, and every axis whose size differs between two
    example runs of different batch, image size and step count (fixed hidden sizes stay static)."""
    return {
        n: {axis: ("batch" if axis == 0 else f"{n}_dim{axis}")
            for axis, (a, b) in enumerate(zip(example.cache[n].shape, other.cache[n].shape)) if a != b or axis == 0}
        for n in example.names
    }  # fmt: skip


def _export_graphs(
    model: nn.Module, ex: _Example, cache_axes: dict[str, dict[int, str]], out: Path, opset: int
) -> None:
    """Trace encoder, decoder-init and decoder-step graphs on the example run into `out`."""
    names, evolving = ex.names, [n for n in ex.names if n not in ex.static]
    batch = {0: "batch"}
    mem = {0: "batch", 1: "mem_len"}
    grid = {0: "batch", 1: "grid_h", 2: "grid_w"}
    _export(
        _EncoderGraph(model),
        (ex.images, ex.pixel_mask),
        out / ENCODER_FILE,
        ["images", "pixel_mask"],
        ["features", "feature_mask"],
        {"images": {0: "batch", 2: "height", 3: "width"}, "pixel_mask": {0: "batch", 1: "height", 2: "width"},
         "features": mem, "feature_mask": grid},
        opset,
    )  # fmt: skip
    _export(
        _InitGraph(model.decoder, names),
        (ex.features, ex.feature_mask),
        out / INIT_FILE,
        ["features", "feature_mask"],
        names,
        {"features": mem, "feature_mask": grid, **cache_axes},
        opset,
    )
    _export(
        _StepGraph(model.decoder, names, evolving),
        (ex.features, ex.feature_mask, ex.token, *(ex.cache[n] for n in names)),
        out / STEP_FILE,
        ["features", "feature_mask", "token", *names],
        ["logits", *(f"{n}.out" for n in evolving)],
        {"features": mem, "feature_mask": grid, "token": batch, "logits": batch, **cache_axes,
         **{f"{n}.out": cache_axes[n] for n in evolving}},
        opset,
    )  # fmt: skip


def export_model_file(
    name_or_path: str, out_dir: str | Path, *, quantize: str | None = None, opset: int = OPSET
) -> ExportResult:
    """Export a shipped model or model file (what `texscribe export` does); its config/vocab/meta travel along."""
    from texscribe.inference import load_model

    loaded = load_model(name_or_path, backend="torch").models[0]
    meta = {**loaded.meta, "exported_from": loaded.path.name}
    return export_onnx(
        loaded.model,
        loaded.vocab,
        out_dir,
        config=loaded.config.to_dict(),
        meta=meta,
        quantize=quantize,
        opset=opset,
        example_size=_example_size(loaded.config.data.img_max_height, loaded.config.data.img_max_width),
    )


def _example_size(max_height: int, max_width: int) -> tuple[int, int]:
    """A modest trace size within the model's input range (tracing cost grows with it)."""
    return (min(64, max_height), min(256, max_width))


def check_export(name_or_path: str, export_dir: str | Path, images: int = 3, max_len: int = 50) -> str:
    """Compare onnxruntime with torch on random images of several sizes: encoder |diff| and greedy tokens.

    Raises `TexscribeError` when a float (non-quantised) export's features differ by more than 1e-3:
    that export would not decode like the model it came from.
    """
    from texscribe.decoding import greedy_decode
    from texscribe.inference import load_model

    torch_model = load_model(name_or_path, backend="torch").models[0].model
    onnx_model = OnnxModel(export_dir)
    generator = torch.Generator().manual_seed(0)
    worst, same = 0.0, 0
    for i in range(images):
        height, width = 32 + 24 * i, 96 + 80 * i
        batch = torch.rand(1, 1, height, width, generator=generator)
        mask = torch.zeros(1, height, width, dtype=torch.bool)
        with torch.inference_mode():
            a, b = torch_model.encode(batch, mask), onnx_model.encode(batch, mask)
        worst = max(worst, float((a.features - b.features).abs().max()))
        same += greedy_decode(torch_model, batch, mask, max_len) == greedy_decode(
            onnx_model, batch, mask, max_len
        )
    if not onnx_model.quantized and worst > 1e-3:
        raise TexscribeError(
            f"{export_dir}: onnxruntime features differ from torch by {worst:.2e} (> 1e-3); "
            "the export is wrong for this model, please report it with the model config"
        )
    return (
        f"check: {images} random images, encoder max |onnx - torch| = {worst:.2e}, "
        f"greedy tokens identical for {same}/{images}"
    )


def _export(module, args, path, input_names, output_names, dynamic_axes, opset) -> None:
    # The exporter restores the wrapper's train/eval flag recursively afterwards: a fresh wrapper
    # (training=True) would flip the wrapped model into training mode, so set eval first.
    module.eval()
    # The TorchScript exporter (dynamo=False): torch.export (dynamo=True) cannot prove the encoders'
    # pad-to-stride arithmetic consistent for symbolic sizes (torch 2.13). The tracer warns about the
    # Python shape checks of input validation, which do not change the graph for valid inputs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantize_dynamic(out: Path) -> None:
    """Replace each graph by its dynamic int8 version (weights int8, activations quantised on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger for every graph
    try:
        for name in (ENCODER_FILE, INIT_FILE, STEP_FILE):
            src = out / name
            tmp = out / f"{name}.int8"
            # Convs stay float: onnxruntime's CPU ConvInteger ran the tiny encoder 4x slower than float Conv.
            quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
            tmp.replace(src)
    finally:
        root.setLevel(level)
