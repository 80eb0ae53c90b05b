"""Training throughput on this machine: images/s of full optimizer steps, per preset, on real batches.

    python benchmarks/train_throughput.py [--presets small base] [--precisions 32-true bf16-mixed] [--data DIR]
        [--batches 6] [--repeats 3] [--warm-shapes] [--compile] [--json PATH]

Batches are built exactly as training builds them (`LatexDataset` + `SizeBucketBatchSampler` under each
preset's pixel budget, padded into the preset's `data.size_buckets` shapes or `--buckets K`) from a
prepared dataset: `--data DIR`, else the first 256 CROHME train samples prepared into a temporary folder
from ../shared/data, else synthetic formula-like images (said so in the output). Per preset and precision
(`32-true`, `bf16-mixed` = bf16 autocast as Lightning runs it), in the same run:
- img/s: forward + backward + AdamW step on pre-collated batches, median over `--repeats` passes of
  `--batches` batches each, every pass on batches not seen before (as in an epoch: new shapes cost kernel
  set-up in oneDNN, which repeated batches would hide); img/CPU-s divides by the process's CPU time instead,
  so other load on the machine distorts it less;
- GFLOP/img counted by `torch.utils.flop_counter.FlopCounterMode` on the timed batches (forward + backward),
  achieved TFLOPS = img/s x GFLOP/img, and that as a fraction of the machine's measured 2048^2 matmul peak
  of the same dtype (measured at the start of the run);
- data img/s: loading + augmentation + preprocessing + collate in one process, to judge whether
  `data.num_workers` needs to be > 0.
`--compile` adds a row per precision with the encoder under `torch.compile` (one graph per bucket shape);
it and `--warm-shapes` first step once on every distinct shape, so every row shows the steady state of a
long bucketed run, and the `warm s` column what reaching it cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from texscribe.config import load_config
from texscribe.data.augment import build_augmenter
from texscribe.data.batching import SizeBucketBatchSampler, collate, kmeans_buckets
from texscribe.data.datamodule import LatexDataset
from texscribe.data.prepared import PreparedDataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def find_data(arg: str | None, workdir: Path) -> tuple[PreparedDataset, str]:
    if arg:
        return PreparedDataset.open(arg), f"prepared dataset {arg}"
    zip_path = SHARED / "crohme" / "crohme_offline.zip"
    if zip_path.is_file():
        from texscribe.data.prepare import prepare

        prepare([f"{zip_path}:train"], workdir / "crohme", limit=256, workers=1, progress=False)
        return PreparedDataset.open(workdir / "crohme"), "first 256 CROHME train samples"
    return synthetic(workdir / "synthetic"), "SYNTHETIC images (../shared/data not found)"


def synthetic(root: Path, n: int = 256) -> PreparedDataset:
    """Formula-like strokes at CROHME-like sizes, written in the prepared layout."""
    import cv2

    from texscribe.data.prepared import PreparedRecord, write_prepared_manifest
    from texscribe.images import save_png
    from texscribe.latex import Vocab

    rng = np.random.default_rng(0)
    alphabet = list("xyz0123456789+-=") + ["\\frac", "{", "}", "^", "_"]
    records = []
    for i in range(n):
        h, w = int(rng.integers(60, 200)), int(rng.integers(100, 900))
        img = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(3, 15))):
            pts = rng.integers([0, 0], [w, h], size=(4, 2)).astype(np.int32)
            cv2.polylines(img, [pts], False, 255, int(rng.integers(2, 5)))
        tokens = [str(t) for t in rng.choice(alphabet, size=int(rng.integers(3, 40)))]
        path = root / "images" / f"s{i}.png"
        save_png(img.astype(np.float32) / 255, path)
        records.append(PreparedRecord(f"s{i}", path, tokens, "synthetic", h, w))
    write_prepared_manifest(root, records)
    Vocab.build(r.tokens for r in records).save(root / "vocab.json")
    return PreparedDataset.open(root)


PRECISIONS = ("32-true", "bf16-mixed")


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured TFLOPS of an n x n matmul in `dtype` (median of `repeats` timed products)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e12


def measure(
    preset: str,
    precision: str,
    data: PreparedDataset,
    n_batches: int,
    repeats: int,
    buckets: int | None,
    profile: bool = False,
    compiled: bool = False,
    warm_shapes: bool = False,
) -> dict[str, float]:
    """One preset at one precision: a training step as Lightning runs it (autocast for bf16-mixed, the
    module's AdamW flavour, gradient clipping) on real augmented batches. Every timed pass trains on batches
    it has not seen, as an epoch does: batch shapes change from step to step unless size buckets fix them,
    and oneDNN builds kernels per new shape (in bf16 that costs as much as the step).

    `compiled` wraps the encoder (convolutions, batch norm, activations: where eager bf16 loses its time) in
    `torch.compile(dynamic=False)`, one graph per input shape; the decoder's target length changes with every
    batch, so it stays eager. `warm_shapes` first runs one step per distinct input shape among the timed
    batches (what a long run with size buckets pays once), timed as `warm_s`, so the passes show the
    steady state."""
    from torch.utils.flop_counter import FlopCounterMode

    from texscribe.models.registry import count_parameters
    from texscribe.training.lit_module import LitImageToLatex, adam_implementation

    cfg = load_config(preset)
    k = cfg.data.size_buckets if buckets is None else (buckets or None)
    torch.manual_seed(0)
    module = LitImageToLatex(cfg.to_dict(), data.vocab.itos)
    module.train()
    augment = build_augmenter(cfg.data.augment, seed=0)
    dataset = LatexDataset([data], data.vocab, cfg.data, augment=augment, seed=0, name=preset)
    shapes = kmeans_buckets(dataset.sizes, k) if k else None
    sampler = SizeBucketBatchSampler(
        dataset.sizes, cfg.data.batch_max_pixels, cfg.data.batch_max_size, seed=0, buckets=shapes
    )
    indices = list(sampler)[: 1 + n_batches * repeats]

    started = time.perf_counter()
    batches = [collate([dataset[i] for i in b], cfg.train.bidirectional, shapes) for b in indices]
    data_rate = sum(len(b) for b in batches) / (time.perf_counter() - started)
    passes = [batches[1 + r * n_batches : 1 + (r + 1) * n_batches] for r in range(repeats)]

    if compiled:  # dynamo is imported only here: plain runs do not pay for it
        from torch._dynamo import config as dynamo_config

        distinct_shapes = len({tuple(b.images.shape) for b in batches})
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 2 * distinct_shapes)
        module.model.encoder = torch.compile(module.model.encoder, dynamic=False)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, **adam_implementation(cfg.train.grad_clip))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0, label_smoothing=cfg.train.label_smoothing)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step(batch) -> None:  # noqa: ANN001
        with autocast:
            logits, tgt = module.logits(batch, both_directions=True)
        loss = loss_fn(logits.flatten(0, 1).float(), tgt.flatten())
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up (allocator, first-call overheads)
    warm_started = time.perf_counter()
    if warm_shapes:
        first_of_shape = {tuple(b.images.shape): b for b in reversed(batches[1:])}
        for batch in first_of_shape.values():
            step(batch)
    warm_s = time.perf_counter() - warm_started
    rates, cpu_rates = [], []
    for timed in passes:
        n_images = sum(len(b) for b in timed)
        started, cpu_started = time.perf_counter(), time.process_time()
        for batch in timed:
            step(batch)
        rates.append(n_images / (time.perf_counter() - started))
        cpu_rates.append(n_images / (time.process_time() - cpu_started))
    counter = FlopCounterMode(display=False)
    encoder = module.model.encoder
    if compiled:  # the same FLOPs, counted on the eager encoder (a dispatch mode does not see into a graph)
        module.model.encoder = encoder._orig_mod
    with counter:  # forward + backward FLOPs of every timed batch, counted by torch, not estimated
        for batch in batches[1:]:
            step(batch)
    module.model.encoder = encoder
    gflop_per_img = counter.get_total_flops() / sum(len(b) for b in batches[1:]) / 1e9
    if profile:  # where a step's CPU time goes: the first timed pass again, under torch.profiler
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in passes[0]:
                step(batch)
        print(f"\n{preset} {precision}: ops by self CPU time over {len(passes[0])} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    sizes = [tuple(b.images.shape[2:]) for b in batches[1:]]
    distinct = len(set(tuple(b.images.shape) for b in batches[1:]))
    img_s = statistics.median(rates)
    return {
        "params": count_parameters(module.model),
        "batch": statistics.mean(len(b) for b in batches[1:]),
        "shapes": distinct,
        "pixels": statistics.mean(h * w for h, w in sizes),
        "img_s": img_s,
        "spread": (max(rates) - min(rates)) / img_s,
        "cpu": statistics.median(cpu_rates),
        "data": data_rate,
        "gflop_per_img": gflop_per_img,
        "tflops": img_s * gflop_per_img / 1000,
        "warm_s": warm_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--data", help="prepared dataset folder (default: 256 CROHME train samples)")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--buckets",
        type=int,
        default=None,
        help="size buckets k (0 = none; default: each preset's data.size_buckets)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print torch.profiler's op table of one pass per row"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time each precision with the encoder under torch.compile (implies --warm-shapes)",
    )
    parser.add_argument(
        "--warm-shapes",
        action="store_true",
        help="before timing, one step per distinct batch shape (the steady state of a long bucketed run)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    results: dict[str, object] = {"peak_tflops": peaks}
    with tempfile.TemporaryDirectory() as tmp:
        data, what = find_data(args.data, Path(tmp))
        print(f"data: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(
            f"measured 2048x2048 matmul peak: bf16 {peaks['bf16']:.2f} TFLOPS, fp32 {peaks['fp32']:.2f} TFLOPS\n"
        )
        header = (
            f"{'preset':<8}{'precision':<20}{'params':>11}{'img/batch':>10}{'shapes':>7}{'px/img':>9}{'GFLOP/img':>10}"
            f"{'img/s':>8}{'spread':>7}{'TFLOPS':>8}{'% peak':>7}{'vs fp32':>8}{'img/CPU-s':>10}{'data img/s':>11}{'warm s':>8}"
        )
        print(header)
        print("-" * len(header))
        for preset in args.presets:
            per_precision: dict[str, dict[str, float]] = {}
            variants = [
                (p, c) for p in args.precisions for c in ((False, True) if args.compile else (False,))
            ]
            for precision, compiled in variants:
                r = measure(
                    preset,
                    precision,
                    data,
                    args.batches,
                    args.repeats,
                    args.buckets,
                    args.profile,
                    compiled=compiled,
                    warm_shapes=args.warm_shapes or args.compile,
                )
                row = precision + ("+compile" if compiled else "")
                per_precision[row] = r
                peak = peaks["bf16" if precision.startswith("bf16") else "fp32"]
                base = per_precision.get("32-true")
                ratio = f"{r['img_s'] / base['img_s']:.2f}x" if base else "-"
                print(
                    f"{preset:<8}{row:<20}{r['params']:>11,}{r['batch']:>10.1f}{r['shapes']:>7}{r['pixels']:>9,.0f}"
                    f"{r['gflop_per_img']:>10.2f}{r['img_s']:>8.1f}{r['spread']:>6.0%}{r['tflops']:>8.3f}"
                    f"{r['tflops'] / peak:>7.0%}{ratio:>8}{r['cpu']:>10.1f}{r['data']:>11.1f}{r['warm_s']:>8.0f}",
                    flush=True,
                )
            results[preset] = {
                p: {k: r[k] for k in ("img_s", "gflop_per_img", "tflops", "params", "warm_s")}
                for p, r in per_precision.items()
            }
    print(
        "\nimg/s: median over passes of full optimizer steps, each pass on new batches; spread = (max - min) / median."
    )
    print("shapes: distinct (B, C, H, W) input shapes among the timed batches (size buckets bound them).")
    print("GFLOP/img: forward + backward FLOPs counted by torch.utils.flop_counter on the timed batches.")
    print("% peak: achieved TFLOPS over the measured matmul peak of the same dtype (bf16 for bf16-mixed).")
    print(
        "warm s: seconds of one step per distinct batch shape before timing (--warm-shapes, --compile): "
        "kernel set-up and compilation a long run pays once per shape."
    )
    print("+compile: the encoder under torch.compile(dynamic=False), one graph per input shape.")
    print("img/CPU-s: images per second of this process's CPU time (all threads): robust to other load.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
