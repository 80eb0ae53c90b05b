"""Prediction latency and throughput on CROHME 2014 test images: greedy vs beam search, batch 1 vs batched.

    python benchmarks/predict_latency.py [--model default|PATH] [--n 40] [--beam 5] [--batch-size 8]

Per-image latency is end to end (decode the BMP bytes, preprocess, encode, decode tokens) through
`Recognizer.predict`, one image at a time; throughput runs the same images through one batched call.
Images come from `crohme/crohme_offline.zip` (split 2014) under ../shared/data (or
$TEXSCRIBE_SHARED_DATA); the script says so and exits 0 when the archive is absent.
`--preset NAME` benchmarks an UNTRAINED model of that architecture instead of a model file: its outputs
are meaningless and always run to --max-len tokens, so give --max-len a typical label length.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXSCRIBE_SHARED_DATA", REPO.parent / "shared" / "data"))


def crohme_images(n: int) -> list[tuple[str, bytes]]:
    """The first `n` CROHME 2014 test bitmaps (sorted by name), as (name, encoded bytes)."""
    archive = SHARED / "crohme" / "crohme_offline.zip"
    if not archive.is_file():
        print(f"SKIPPED: {archive} not found (set TEXSCRIBE_SHARED_DATA to the folder holding crohme/)")
        sys.exit(0)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(m for m in zf.namelist() if m.startswith("data/2014/img/") and m.endswith(".bmp"))
        return [(name, zf.read(name)) for name in names[:n]]


def untrained_model_file(preset: str, out: Path) -> Path:
    import torch

    from texscribe.checkpoint import save_model_file
    from texscribe.config import load_config
    from texscribe.data.prepared import PreparedDataset
    from texscribe.latex import Vocab
    from texscribe.models.registry import build_model

    cfg = load_config(preset)
    vocab_dir = Path("/work/prepared/crohme_train")
    vocab = (
        PreparedDataset.open(vocab_dir).vocab
        if (vocab_dir / "vocab.json").is_file()
        else Vocab(list("xy12+="))
    )
    torch.manual_seed(0)
    return save_model_file(out, cfg, vocab, build_model(cfg.model, len(vocab)).state_dict())


def time_per_image(rec, payloads: list[bytes], beam: int, max_len: int) -> tuple[list[float], list[int]]:
    """Seconds of `rec.predict` per image, one image at a time, and each prediction's token count."""
    latencies, lengths = [], []
    for data in payloads:
        start = time.perf_counter()
        pred = rec.predict(data, beam=beam, max_len=max_len)
        latencies.append(time.perf_counter() - start)
        lengths.append(len(pred.tokens))
    return latencies, lengths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="shipped name or model file (default: default)")
    parser.add_argument("--preset", help="benchmark an untrained model of this preset instead (see above)")
    parser.add_argument("--n", type=int, default=40, help="number of test images (default 40)")
    parser.add_argument("--beam", type=int, default=5, help="beam width to compare with greedy (default 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size for throughput (default 8)")
    parser.add_argument("--max-len", type=int, default=200, help="longest output in tokens (default 200)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available CPUs)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import tempfile

    import torch

    from texscribe.inference import load_model

    images = crohme_images(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        source = untrained_model_file(args.preset, Path(tmp) / "m.pt") if args.preset else args.model
        rec = load_model(source, device=args.device, num_threads=args.threads)
    label = f"untrained preset {args.preset!r}" if args.preset else str(rec.models[0].path)
    payloads = [data for _, data in images]
    rec.predict(payloads[:2], max_len=args.max_len)  # warm-up (allocator, kernels)

    rows = []
    for beam in (1, args.beam):
        latencies, lengths = time_per_image(rec, payloads, beam, args.max_len)
        total = sum(latencies)
        rows.append(
            (
                f"{'greedy' if beam == 1 else f'beam {beam}'}, batch 1",
                latencies,
                len(payloads) / total,
                lengths,
            )
        )
    for beam in (1, args.beam):
        start = time.perf_counter()
        preds = rec.predict(payloads, beam=beam, batch_size=args.batch_size, max_len=args.max_len)
        total = time.perf_counter() - start
        name = f"{'greedy' if beam == 1 else f'beam {beam}'}, batch {args.batch_size}"
        rows.append((name, None, len(payloads) / total, [len(p.tokens) for p in preds]))

    base_median = statistics.median(rows[0][1])
    base_rate = rows[0][2]
    print(f"model: {label}; {len(payloads)} CROHME 2014 images; device {args.device}, "
          f"torch threads {torch.get_num_threads()}; max_len {args.max_len}")  # fmt: skip
    header = (
        f"{'mode':<20} {'median ms':>10} {'p90 ms':>10} {'images/s':>9} {'latency x':>10} {'throughput x':>13} "
        f"{'mean tokens':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, lat, rate, lengths in rows:
        med = f"{1000 * statistics.median(lat):.1f}" if lat else "-"
        p90 = f"{1000 * percentile(lat, 0.9):.1f}" if lat else "-"
        lat_ratio = f"{statistics.median(lat) / base_median:.2f}" if lat else "-"
        print(
            f"{name:<20} {med:>10} {p90:>10} {rate:>9.2f} {lat_ratio:>10} {rate / base_rate:>13.2f} "
            f"{statistics.mean(lengths):>12.1f}"
        )
    print("ratios are relative to greedy, batch 1 (latency: median per image; throughput: images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
