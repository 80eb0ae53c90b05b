"""The one place a model is loaded for use: `load_model(...) -> Recognizer`, then `.predict(images)`.

    from texscribe import load_model
    rec = load_model("default")                     # or a model file path, or an ONNX export dir
    rec.predict("formula.png").latex                # one input  -> Prediction
    rec.predict([png_bytes, pil_image, array])      # a list     -> list[Prediction], same order

Backends. `Recognizer` never calls torch modules directly: it hands a *backend object* to
`texscribe.decoding`. A backend has the `DecodingModel` shape:

    backend.encode(images (B,1,H,W), pixel_mask (B,H,W)) -> Memory
    backend.decoder.init_cache(memory) / .step(memory, token, cache) / .reorder_cache(cache, index)
    backend.decoder(memory, tgt)   # teacher-forced logits, only needed for R2L rescoring

`backend="torch"` uses the `ImageToLatex` module itself; `backend="onnx"` uses
`texscribe.onnx_runtime.OnnxModel` on a directory written by `texscribe export`. Each loaded model is a
`LoadedModel` (`.model`: that object; `.backend`: the backend's name). A new backend is one entry in
`BACKENDS`: a function `(name_or_path, device, num_threads) -> LoadedModel`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from texscribe.config import Config, DataConfig, stored_config, with_data_overrides
from texscribe.data.readers.inkml import INKML_SUFFIX, read_ink_file
from texscribe.data.render_strokes import Ink, render_ink
from texscribe.errors import ConfigError, ModelLoadError, TexscribeError
from texscribe.images import (
    DEFAULT_MAX_PIXELS,
    HANDWRITING_SYMBOL_HEIGHT,
    load_image,
    pil_to_array,
    preprocess_views,
)
from texscribe.latex import Vocab
from texscribe.metrics import latex_string

log = logging.getLogger(__name__)

SHIPPED = {"default": "default.pt"}  # names resolved inside the package's weights/ folder

ModelInput = np.ndarray | tuple[np.ndarray, ...]
"""What `Recognizer.preprocess` gives and `predict_images` reads: one canonical float32 (H, W) image, or
(when the model reads at several ink heights, `data.read_ink_heights`) a tuple of views of one input,
of which the most confident reading is kept."""


def model_input(
    image: np.ndarray, data: DataConfig, *, origin: str | None = None, refuse_squeezed: bool = False
) -> ModelInput:
    """A canonical image -> the model's input under `data` (`images.preprocess_views`): one array when
    there is one distinct view, else the tuple of views. Raises `ImageError` as `images.preprocess`."""
    views = preprocess_views(image, data, origin=origin, refuse_squeezed=refuse_squeezed)
    return views[0] if len(views) == 1 else tuple(views)


@dataclass
class Prediction:
    """One recognised image.

    score: mean per-step probability the model gave its own output tokens (the final <eos> included),
    in [0, 1]; min_prob: the lowest of those. They rank how sure the model is, they are not the
    probability that the LaTeX is correct (see docs/CONFIDENCE.md). An empty output scores 0 on both:
    only images with ink reach the model, so "no formula" is a failure to read, never an answer.
    seconds: this image's preprocessing time plus its share of its batch's model time. source: where
    the image came from.
    """

    latex: str
    tokens: list[str]
    score: float
    min_prob: float
    seconds: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A loaded model plus what describes it: config (image preprocessing, training options), vocab,
    provenance. `model` is what decoding runs (`texscribe.decoding.DecodingModel`): the torch
    `ImageToLatex` module for backend "torch", a `texscribe.onnx_runtime.OnnxModel` for "onnx"."""

    model: Any  # texscribe.decoding.DecodingModel
    backend: str  # the BACKENDS entry that loaded it: "torch" | "onnx"
    config: Config
    vocab: Vocab
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped name (`default`) -> its file inside the package; anything else must be an existing path."""
    text = os.fspath(name_or_path)
    if text in SHIPPED:
        path = Path(str(resources.files("texscribe") / "weights" / SHIPPED[text]))
        if not path.is_file():
            raise ModelLoadError(
                f"the shipped model {text!r} is not installed (expected {path}). Reinstall texscribe from a "
                "release that includes its weights, or pass a model file: --model path/to/model.pt "
                "(train one with `texscribe train`)"
            )
        return path
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"no model named {text!r}: not a shipped name ({', '.join(SHIPPED)}) and no such file or folder"
        )
    return path


def _load_torch(name_or_path: str | os.PathLike, device: str, num_threads: int | None) -> LoadedModel:
    import torch

    from texscribe.checkpoint import cast_weights, read_model_file
    from texscribe.models.registry import build_model

    path = resolve_model_path(name_or_path)
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; the torch backend needs a model file (.pt)")
    mf = read_model_file(path)
    try:
        model = build_model(mf.config.model, len(mf.vocab))
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: its model config cannot be built by this texscribe: {exc}") from exc
    try:
        model.load_state_dict(cast_weights(mf.state_dict, torch.float32), strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the model its config describes: {exc}") from exc
    try:
        model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot use device {device!r}: {exc}") from exc
    return LoadedModel(model, "torch", mf.config, mf.vocab, path, mf.meta)


def _load_onnx(name_or_path: str | os.PathLike, device: str, num_threads: int | None) -> LoadedModel:
    from texscribe.onnx_runtime import OnnxModel, is_export_dir

    path = resolve_model_path(name_or_path)
    if not is_export_dir(path):
        raise ModelLoadError(
            f"{path} is not an ONNX export folder; create one with "
            f"`texscribe export --model {name_or_path} --format onnx --out DIR` and pass DIR"
        )
    if device != "cpu":
        raise ModelLoadError(f"the ONNX backend runs on the CPU only, not {device!r}")
    model = OnnxModel(path, threads=num_threads)
    try:
        config = stored_config(model.config)
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: stored config is invalid for this version: {exc}") from exc
    return LoadedModel(model, "onnx", config, model.vocab, path, model.meta)


BACKENDS: dict[str, Callable[[str | os.PathLike, str, int | None], LoadedModel]] = {
    "torch": _load_torch,
    "onnx": _load_onnx,
}


def available_cpus() -> int:
    """CPUs this process may use (affinity and cgroup quota), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def load_model(
    name_or_path: str | os.PathLike | Sequence[str | os.PathLike] = "default",
    device: str = "cpu",
    backend: str = "torch",
    num_threads: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data_overrides: Sequence[str] = (),
) -> Recognizer:
    """Load a shipped model by name, a model file, or an ONNX export folder (backend="onnx").

    data_overrides: `data.KEY=VALUE` settings of how the model reads images for this session (e.g.
    `data.read_ink_heights=[28,42]`), applied to each model's config and checked as a training config's
    (`config.with_data_overrides`): a wrong key or value raises `ConfigError` naming it.

    A list of paths loads an ensemble (step log-probs averaged; all must share one vocabulary; images are
    preprocessed with the first model's data config). On the CPU, torch's intra-op threads are set to
    `num_threads` (default: the CPUs available to this process), so a 2-core machine is not oversubscribed.
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if num_threads is not None:
        check_threads("num_threads", num_threads)
    if device == "cpu":
        import torch

        torch.set_num_threads(num_threads or available_cpus())
    names = [name_or_path] if isinstance(name_or_path, (str, os.PathLike)) else list(name_or_path)
    if not names:
        raise ModelLoadError("no model given")
    loaded = [BACKENDS[backend](n, device, num_threads) for n in names]
    if data_overrides:
        loaded = [replace(m, config=with_data_overrides(m.config, data_overrides)) for m in loaded]
    for other in loaded[1:]:
        if other.vocab.itos != loaded[0].vocab.itos:
            raise ModelLoadError(
                f"cannot ensemble {other.path} with {loaded[0].path}: they use different vocabularies"
            )
        if _input_settings(other.config) != _input_settings(loaded[0].config):
            log.warning("%s preprocesses images differently from %s; the ensemble uses the latter's settings",
                        other.path, loaded[0].path)  # fmt: skip
    return Recognizer(loaded, device=device, max_pixels=max_pixels)


# decoding argument -> (smallest, largest valid value or None, what it means); the CLIs check their
# flags against this table too. The largest values stop requests that can only run for hours (a million
# beams, or a million tokens from an image the model never ends reading); data prepare keeps formulas of
# at most 512 tokens, so no model learns longer ones.
DECODE_LIMITS = {
    "beam": (1, 100, "1 = greedy"),
    "max_len": (1, 1024, "tokens"),
    "batch_size": (1, None, "images per batch"),
}
MAX_THREADS = 1024  # far above any CPU count; OpenMP killed the process (SIGSEGV) at 100,000
MAX_LENGTH_PENALTY = 10.0  # -1e9 divided by length**-1e9 == 0.0; past 10 the ranking is length alone anyway


def check_range(label: str, value: Any, low: int, high: int | None, meaning: str) -> None:
    """`ConfigError` naming `label` (`beam`, `--max-len`) unless `value` is an integer (not a bool) in
    `low..high` (no upper bound when `high` is None)."""
    bounds = f">= {low}" if high is None else f"in {low}..{high}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{label} must be an integer {bounds} ({meaning}), got {value!r}")
    if value < low:
        raise ConfigError(f"{label} must be >= {low} ({meaning}), got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{label} must be <= {high} ({meaning}), got {value}")


def check_threads(label: str, value: Any) -> None:
    """`ConfigError` naming `label` (`num_threads`, `--threads`) unless `value` is an integer in 1..MAX_THREADS:
    torch asks OpenMP for that many threads, and OpenMP kills the process when it cannot create them."""
    check_range(label, value, 1, MAX_THREADS, "torch CPU threads; leave it out to use all available")


def check_decode_args(length_penalty: Any = 1.0, **values: Any) -> None:
    """`ConfigError` naming the first of `beam`, `max_len`, `batch_size`, `length_penalty` out of range."""
    for name, value in values.items():
        check_range(name, value, *DECODE_LIMITS[name])
    number = isinstance(length_penalty, (int, float, np.integer, np.floating)) and not isinstance(
        length_penalty, bool
    )
    if not number or not 0 <= length_penalty <= MAX_LENGTH_PENALTY:  # NaN fails the comparison too
        raise ConfigError(
            f"length_penalty must be a number in 0..{MAX_LENGTH_PENALTY:g} (beam hypotheses are ranked by "
            f"log-probability / length**length_penalty; 0 = off), got {length_penalty!r}"
        )


class Recognizer:
    """Loaded model(s) + preprocessing + batched decoding. Thread-compatible for `preprocess` (pure)."""

    def __init__(
        self,
        models: LoadedModel | Sequence[LoadedModel],
        device: str = "cpu",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.models = [models] if isinstance(models, LoadedModel) else list(models)
        self.device = device
        self.max_pixels = max_pixels
        self.config: Config = self.models[0].config
        self.vocab: Vocab = self.models[0].vocab

    @property
    def backends(self) -> list[Any]:
        return [m.model for m in self.models]

    @property
    def bidirectional(self) -> bool:
        """Whether every model was trained on R2L targets too (then beam search can rescore with R2L)."""
        return all(m.config.train.bidirectional for m in self.models)

    def preprocess(self, x: Any, origin: str | None = None, *, drawn: bool = False) -> ModelInput:
        """Load (path, bytes, PIL image, ndarray, or pen traces: `Ink` or an `.inkml` path, see `render_ink`)
        and preprocess to the model's input (`ModelInput`: one array, or the views of
        `data.read_ink_heights`); raises `ImageError` (`InputError` for a malformed InkML file).

        `drawn`: the image is handwriting drawn at any size (the web page's canvas, a tablet). Its writing
        size is then normalised (`images.normalise_ink_size`) to the model's `data.ink_height`, or, for a
        model without one, to `images.HANDWRITING_SYMBOL_HEIGHT`, the scale of the CROHME bitmaps every
        handwriting set here is drawn at. (Print is not normalised that way unless the model says so: its
        symbols are a quarter of that size.)
        """
        if isinstance(x, (str, os.PathLike)) and os.fspath(x).lower().endswith(INKML_SUFFIX):
            x = read_ink_file(x)
        if isinstance(x, Ink):  # pen traces: drawn at the training look, whatever size they were written at
            x = render_ink(x, origin=origin)
        if _is_pil(x):
            x = pil_to_array(x, origin=origin, max_pixels=self.max_pixels)
        image = load_image(x, origin=origin, max_pixels=self.max_pixels)
        data = self.config.data
        if drawn and data.ink_height is None:
            data = replace(data, ink_height=HANDWRITING_SYMBOL_HEIGHT)
        return model_input(image, data, origin=origin, refuse_squeezed=True)

    def predict(
        self,
        x: Any,
        *,
        beam: int = 1,
        batch_size: int = 8,
        max_len: int = 200,
        r2l: bool | None = None,
        length_penalty: float = 1.0,
    ) -> Prediction | list[Prediction]:
        """Recognise one input (-> Prediction) or a list of inputs (-> list in the same order).

        Inputs: file path, encoded bytes, PIL image or ndarray. The first unusable input raises `ImageError`
        naming it; use `preprocess` + `predict_images` to skip bad inputs instead. A `beam`, `batch_size` or
        `max_len` that is not an integer >= 1 raises `ConfigError` naming it.
        """
        check_decode_args(
            beam=beam, batch_size=batch_size, max_len=max_len, length_penalty=length_penalty
        )  # before any image is read
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        arrays, sources, prep = [], [], []
        for i, item in enumerate(items):
            source = _describe(item, i)
            start = time.perf_counter()
            arrays.append(self.preprocess(item, origin=source))
            prep.append(time.perf_counter() - start)
            sources.append(source)
        out = self.predict_images(
            arrays,
            sources,
            beam=beam,
            batch_size=batch_size,
            max_len=max_len,
            r2l=r2l,
            length_penalty=length_penalty,
            prep_seconds=prep,
        )
        return out[0] if single else out

    def predict_images(
        self,
        images: Sequence[ModelInput],
        sources: Sequence[str] | None = None,
        *,
        beam: int = 1,
        batch_size: int = 8,
        max_len: int = 200,
        r2l: bool | None = None,
        length_penalty: float = 1.0,
        prep_seconds: Sequence[float] | None = None,
        deadline: float | None = None,
    ) -> list[Prediction]:
        """Decode already-preprocessed inputs (`ModelInput`: canonical float32 (H, W), or a tuple of views
        of one input), batched by size, order preserved. Every view is read; an input's prediction is its
        highest-scoring view's (the first on ties), its `seconds` the sum of its views' shares.

        Batches group images of similar area, bounded by `batch_size` and the config's `batch_max_pixels`
        (padded area). r2l=None rescores with the R2L pass when beam > 1 and the model is bidirectional.
        length_penalty: beam hypotheses are ranked by sum log-prob / length**length_penalty.
        deadline: a `time.monotonic()` value; past it, decoding stops within one step and raises
        `DeadlineExceeded`.
        """
        import torch

        from texscribe.data.batching import pad_batch, size_batches
        from texscribe.decoding import decode

        check_decode_args(beam=beam, batch_size=batch_size, max_len=max_len, length_penalty=length_penalty)
        sources = list(sources) if sources is not None else [f"<image {i}>" for i in range(len(images))]
        prep = list(prep_seconds) if prep_seconds is not None else [0.0] * len(images)
        use_r2l = (beam > 1 and self.bidirectional) if r2l is None else r2l
        stop_check = None if deadline is None else partial(check_deadline, deadline)
        views: list[np.ndarray] = []
        starts: list[int] = []  # images[i]'s views are views[starts[i] : starts[i + 1]]
        for i, item in enumerate(images):
            if isinstance(item, tuple) and not item:
                raise ValueError(f"input {i} ({sources[i]}) is an empty tuple: give an image or its views")
            starts.append(len(views))
            views.extend(item if isinstance(item, tuple) else (item,))
        starts.append(len(views))
        reads: list[Prediction | None] = [None] * len(views)  # one per view; seconds: its batch share
        # multiple=1: sorted by exact size, the budget counting the images' own sides -- the batches (and so
        # the padding, and the bit-exact predictions) inference has always used
        sizes = [im.shape[:2] for im in views]
        for batch in size_batches(sizes, batch_size, self.config.data.batch_max_pixels, multiple=1):
            start = time.perf_counter()
            tensors, mask = pad_batch([views[k] for k in batch])
            tensors, mask = tensors.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                hyps = decode(
                    self.backends,
                    tensors,
                    mask,
                    beam=beam,
                    max_len=max_len,
                    length_penalty=length_penalty,
                    r2l_rescore=use_r2l,
                    stop_check=stop_check,
                )
            share = (time.perf_counter() - start) / len(batch)
            for k, hyp in zip(batch, hyps):
                reads[k] = self._prediction(hyp, "", share)
        results = []
        for i in range(len(images)):
            own: list[Prediction] = reads[starts[i] : starts[i + 1]]  # type: ignore[assignment]
            # max keeps the first of equals: ties go to the earlier view (the model's own ink_height first)
            best = max(own, key=lambda p: p.score)
            results.append(replace(best, source=sources[i], seconds=prep[i] + sum(p.seconds for p in own)))
        return results

    def _prediction(self, hyp: Any, source: str, seconds: float) -> Prediction:
        tokens = self.vocab.decode(hyp.tokens)
        logps = list(hyp.token_logprobs) + ([hyp.eos_logprob] if hyp.eos_logprob is not None else [])
        probs = [math.exp(lp) for lp in logps] or [0.0]
        latex = latex_string(tokens)
        if not latex.strip():  # images reach the model only with ink, so "no formula" is never a reading
            probs = [0.0]
        return Prediction(
            latex=latex,
            tokens=tokens,
            score=sum(probs) / len(probs),
            min_prob=min(probs),
            seconds=seconds,
            source=source,
        )


class DeadlineExceeded(TexscribeError):
    """Work passed the deadline its caller set (`Recognizer.predict_images(deadline=...)`)."""


def check_deadline(deadline: float | None) -> None:
    """Raise `DeadlineExceeded` once `time.monotonic()` is past `deadline` (None: no deadline)."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"stopped: the deadline passed {time.monotonic() - deadline:.2f} s ago")


@dataclass
class Outcome:
    """One input of a streamed job: its prediction, or why it was skipped.

    error: the reason alone (reports list it beside `source`); message: the error's full text, naming
    the source where the error does (what a caller shows on its own, e.g. the server's JSON error).
    load_seconds: time spent loading and preprocessing the image (included in `prediction.seconds`).
    """

    index: int
    source: str
    prediction: Prediction | None = None
    error: str | None = None
    message: str | None = None
    load_seconds: float = 0.0


def iter_predictions(
    recognizer: Recognizer,
    items: Sequence[tuple[str, Any]],
    *,
    load: Callable[[Any, str], np.ndarray] | None = None,
    workers: int = 2,
    chunk_size: int = 64,
    deadline: float | None = None,
    **decode_kwargs: Any,
) -> Iterator[Outcome]:
    """Predict many `(source, payload)` items, yielding one `Outcome` per item in input order.

    Loading/preprocessing (`load(payload, source)`, default `recognizer.preprocess`) runs in a thread pool
    of `workers` (PIL/OpenCV release the GIL) one chunk ahead of decoding, so memory stays bounded by
    two chunks. An item whose loading raises a `TexscribeError` is yielded with `error` set; the rest go on.
    deadline: a `time.monotonic()` value; past it, `DeadlineExceeded` is raised before the next image is
    loaded or within one decoding step (it ends the whole job, it is not one item's error).
    decode_kwargs: beam, batch_size, max_len, r2l (see `Recognizer.predict_images`).
    """
    from concurrent.futures import ThreadPoolExecutor

    load = load or (lambda payload, source: recognizer.preprocess(payload, origin=source))
    if deadline is not None:
        decode_kwargs["deadline"] = deadline

    def timed_load(item: tuple[str, Any]) -> tuple[np.ndarray | None, float, TexscribeError | None]:
        check_deadline(deadline)
        start = time.perf_counter()
        try:
            return load(item[1], item[0]), time.perf_counter() - start, None
        except TexscribeError as exc:
            return None, 0.0, exc

    chunks = [range(i, min(i + chunk_size, len(items))) for i in range(0, len(items), chunk_size)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(timed_load, items[i]) for i in chunks[0]] if chunks else []
        for n, rows in enumerate(chunks):
            current = pending
            if n + 1 < len(chunks):
                pending = [pool.submit(timed_load, items[i]) for i in chunks[n + 1]]
            loaded = [f.result() for f in current]
            ok = [j for j, (img, _, _) in enumerate(loaded) if img is not None]
            preds = (
                recognizer.predict_images(
                    [loaded[j][0] for j in ok],
                    [items[rows[j]][0] for j in ok],
                    prep_seconds=[loaded[j][1] for j in ok],
                    **decode_kwargs,
                )
                if ok
                else []
            )
            by_row = dict(zip(ok, preds))
            for j, i in enumerate(rows):
                _, seconds, exc = loaded[j]
                reason = None if exc is None else getattr(exc, "reason", None) or str(exc)
                message = None if exc is None else str(exc)
                yield Outcome(i, items[i][0], by_row.get(j), reason, message, seconds)


def _input_settings(config: Config) -> tuple:
    d = config.data
    return (d.img_min_height, d.img_max_height, d.img_max_width, d.scale)


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert")


def _describe(item: Any, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__} {index}>"
