"""ONNX export of a recogniser and an onnxruntime backend that decodes with the same code as torch.

An export directory holds three graphs plus the model's own config and vocabulary:

    encoder.onnx       images (B,1,H,W) float, pixel_mask (B,H,W) bool
                       -> features (B,L,D), feature_mask (B,h,w) bool (True = padding), L = h*w
    decoder_init.onnx  features, feature_mask -> the decoder's initial cache tensors
    decoder_step.onnx  features, feature_mask, token (B,) int64, cache... -> logits (B,V), new cache...
    model.json         {"config", "meta", "cache_names", "static_cache_names", "opset", "quantized"}
    vocab.json         the vocabulary (`texscribe.latex.Vocab` JSON)

The cache is whatever dict the decoder family keeps (`texscribe.models.interface.Cache`), passed
as explicit inputs/outputs in a fixed key order, with dynamic batch, memory-length and time axes.
`OnnxBackend` has the `encode` + `decoder.init_cache/step/reorder_cache` shape that
`texscribe.decoding` needs, so greedy and beam search run unchanged on onnxruntime.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from texscribe.errors import ModelLoadError, TexscribeError
from texscribe.latex import Vocab
from texscribe.models.interface import Cache, Memory

ENCODER_FILE, INIT_FILE, STEP_FILE = "encoder.onnx", "decoder_init.onnx", "decoder_step.onnx"
META_FILE, VOCAB_FILE = "model.json", "vocab.json"
OPSET = 17
EXPORT_FORMAT = "texscribe-onnx"
EXPORT_VERSION = 1


# ----------------------------------------------------------------------------------------------- export
class _EncoderGraph(nn.Module):
    """encode() with the feature mask kept 2-D, so the grid size (h, w) travels as a shape."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
        memory = self.model.encode(images, pixel_mask)
        return memory.features, memory.mask.reshape(-1, memory.height, memory.width)


def _memory(features: Tensor, feature_mask: Tensor) -> Memory:
    return Memory(features, feature_mask.flatten(1), feature_mask.shape[1], feature_mask.shape[2])


class _InitGraph(nn.Module):
    def __init__(self, decoder: nn.Module, names: list[str]):
        super().__init__()
        self.decoder, self.names = decoder, names

    def forward(self, features: Tensor, feature_mask: Tensor) -> tuple[Tensor, ...]:
        cache = self.decoder.init_cache(_memory(features, feature_mask))
        return tuple(cache[n] for n in self.names)


class _StepGraph(nn.Module):
    """One decoder step; outputs only the cache entries that change (`evolving`), not the static ones."""

    def __init__(self, decoder: nn.Module, names: list[str], evolving: list[str]):
        super().__init__()
        self.decoder, self.names, self.evolving = decoder, names, evolving

    def forward(
        self, features: Tensor, feature_mask: Tensor, token: Tensor, *cache: Tensor
    ) -> tuple[Tensor, ...]:
        logits, new = self.decoder.step(_memory(features, feature_mask), token, dict(zip(self.names, cache)))
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
    memory = _memory(features, feature_mask)
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
    decoder = model.decoder
    height, width = example_size
    ex = _run_example(model, 2, height, width, steps=3)
    # A second, differently sized run tells which cache axes vary (batch, memory length, steps taken,
    # coverage grid...) and so must be dynamic; the others (hidden sizes) stay fixed.
    other = _run_example(model, 3, height + 32, width + 64, steps=4)
    names, static = ex.names, ex.static
    evolving = [n for n in names if n not in static]
    cache_axes = {
        n: {axis: ("batch" if axis == 0 else f"{n}_dim{axis}")
            for axis, (a, b) in enumerate(zip(ex.cache[n].shape, other.cache[n].shape)) if a != b or axis == 0}
        for n in names
    }  # fmt: skip
    images, pixel_mask, features, feature_mask = ex.images, ex.pixel_mask, ex.features, ex.feature_mask
    cache, token = ex.cache, ex.token
    batch = {0: "batch"}
    mem = {0: "batch", 1: "mem_len"}
    grid = {0: "batch", 1: "grid_h", 2: "grid_w"}
    _export(
        _EncoderGraph(model),
        (images, pixel_mask),
        out / ENCODER_FILE,
        ["images", "pixel_mask"],
        ["features", "feature_mask"],
        {"images": {0: "batch", 2: "height", 3: "width"}, "pixel_mask": {0: "batch", 1: "height", 2: "width"},
         "features": mem, "feature_mask": grid},
        opset,
    )  # fmt: skip
    _export(
        _InitGraph(decoder, names),
        (features, feature_mask),
        out / INIT_FILE,
        ["features", "feature_mask"],
        names,
        {"features": mem, "feature_mask": grid, **cache_axes},
        opset,
    )
    step_outputs = ["logits", *(f"{n}.out" for n in evolving)]
    _export(
        _StepGraph(decoder, names, evolving),
        (features, feature_mask, token, *(cache[n] for n in names)),
        out / STEP_FILE,
        ["features", "feature_mask", "token", *names],
        step_outputs,
        {"features": mem, "feature_mask": grid, "token": batch, "logits": batch, **cache_axes,
         **{f"{n}.out": cache_axes[n] for n in evolving}},
        opset,
    )  # fmt: skip
    if quantize == "int8":
        _quantize_dynamic(out)
    (out / VOCAB_FILE).write_text(vocab.to_json(), encoding="utf-8")
    info = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "opset": opset,
        "quantized": quantize,
        "cache_names": names,
        "static_cache_names": static,
        "config": config or {},
        "meta": meta or {},
    }
    (out / META_FILE).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return ExportResult(out, files, time.perf_counter() - start, quantize == "int8")


def export_model_file(
    name_or_path: str, out_dir: str | Path, *, quantize: str | None = None, opset: int = OPSET
) -> ExportResult:
    """Export a shipped model or model file (what `texscribe export` does); its config/vocab/meta travel along."""
    from texscribe.inference import load_model

    loaded = load_model(name_or_path, backend="torch").models[0]
    meta = {**loaded.meta, "exported_from": loaded.path.name}
    return export_onnx(
        loaded.backend,
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

    torch_model = load_model(name_or_path, backend="torch").models[0].backend
    onnx_model = OnnxBackend(export_dir)
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


# ----------------------------------------------------------------------------------------------- runtime
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


class OnnxBackend:
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
        mask = torch.from_numpy(feature_mask)
        return Memory(torch.from_numpy(features), mask.flatten(1), mask.shape[1], mask.shape[2])

    def eval(self) -> OnnxBackend:  # decoding code may call model.eval(); nothing to switch here
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
