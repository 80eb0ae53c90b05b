"""Training throughput on this machine: images/s of full optimizer steps, per preset, on real batches.

    python benchmarks/train_throughput.py [--presets tiny model2 default] [--data DIR] [--batches 6] [--repeats 3]

Batches are built exactly as training builds them (`LatexDataset` + `SizeBucketBatchSampler` under each
preset's pixel budget) from a prepared dataset: `--data DIR`, else the first 256 CROHME train samples
prepared into a temporary folder from ../shared/data, else synthetic formula-like images (said so in the
output). Two numbers per preset:
- train img/s: forward + backward + AdamW step + zero_grad on pre-collated batches, median over
  `--repeats` passes of `--batches` batches (after one warm-up batch); this is what bounds a CPU run;
  img/CPU-s divides by the process's CPU time instead of wall time, so other load on the machine
  does not distort it;
- data img/s: loading + augmentation (the preset's `data.augment`) + preprocessing + collate in one
  process, to judge whether `data.num_workers` needs to be > 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from texscribe.config import load_config
from texscribe.data.augment import build_augmenter
from texscribe.data.batching import SizeBucketBatchSampler, collate
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

    from texscribe.data.prepared import PreparedRecord, write_manifest
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
    write_manifest(root, records)
    Vocab.build(r.tokens for r in records).save(root / "vocab.json")
    return PreparedDataset.open(root)


def measure(preset: str, data: PreparedDataset, n_batches: int, repeats: int) -> dict[str, float]:
    from texscribe.models.registry import count_parameters
    from texscribe.training.lit_module import LitImageToLatex

    cfg = load_config(preset)
    torch.manual_seed(0)
    module = LitImageToLatex(cfg.to_dict(), data.vocab.itos)
    module.train()
    augment = build_augmenter(cfg.data.augment, seed=0)
    dataset = LatexDataset([data], data.vocab, cfg.data, augment=augment, seed=0, name=preset)
    sampler = SizeBucketBatchSampler(
        dataset.sizes, cfg.data.batch_max_pixels, cfg.data.batch_max_size, seed=0
    )
    indices = list(sampler)[: n_batches + 1]

    started = time.perf_counter()
    batches = [collate([dataset[i] for i in b], cfg.train.bidirectional) for b in indices]
    data_rate = sum(len(b) for b in batches) / (time.perf_counter() - started)

    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0, label_smoothing=cfg.train.label_smoothing)

    def step(batch) -> None:  # noqa: ANN001
        logits, tgt = module.logits(batch, both_directions=True)
        loss = loss_fn(logits.flatten(0, 1), tgt.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.grad_clip or 1e9)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up (allocator, first-call overheads)
    rates, cpu_rates = [], []
    n_images = sum(len(b) for b in batches[1:])
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        for batch in batches[1:]:
            step(batch)
        rates.append(n_images / (time.perf_counter() - started))
        cpu_rates.append(n_images / (time.process_time() - cpu_started))
    sizes = [tuple(b.images.shape[2:]) for b in batches[1:]]
    return {
        "params": count_parameters(module.model),
        "batch": statistics.mean(len(b) for b in batches[1:]),
        "pixels": statistics.mean(h * w for h, w in sizes),
        "train": statistics.median(rates),
        "spread": (max(rates) - min(rates)) / statistics.median(rates),
        "cpu": statistics.median(cpu_rates),
        "data": data_rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny", "model2", "default"])
    parser.add_argument("--data", help="prepared dataset folder (default: 256 CROHME train samples)")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, what = find_data(args.data, Path(tmp))
        print(f"data: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
        header = f"{'preset':<10}{'params':>10}{'imgs/batch':>12}{'padded px/img':>15}{'train img/s':>13}{'spread':>8}{'img/CPU-s':>11}{'data img/s':>12}"
        print(header)
        print("-" * len(header))
        for preset in args.presets:
            r = measure(preset, data, args.batches, args.repeats)
            print(
                f"{preset:<10}{r['params']:>10,}{r['batch']:>12.1f}{r['pixels']:>15,.0f}"
                f"{r['train']:>13.2f}{r['spread']:>7.0%}{r['cpu']:>11.2f}{r['data']:>12.1f}",
                flush=True,
            )
    print("\ntrain img/s: median over passes; spread = (max - min) / median of the passes.")
    print("img/CPU-s: images per second of this process's CPU time (all threads): robust to other load;")
    print("  on an otherwise idle machine, train img/s is about img/CPU-s x the threads torch can keep busy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
