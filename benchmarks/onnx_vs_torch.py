"""ONNX Runtime vs torch on CROHME 2014 test images: per-image latency and output agreement.

    python benchmarks/onnx_vs_torch.py [--model default|PATH] [--n 100] [--int8] [--threads 2] [--beam 1]
    python benchmarks/onnx_vs_torch.py --preset default --max-len 30   # before a trained model exists

Exports the model (float, and int8 with --int8) into a temporary folder unless --onnx DIR is given,
then runs every image through `Recognizer.predict` one at a time with each backend (same
preprocessing, same decoding code; only the backend object differs). Prints the median and p90
per-image latency, the speed ratio, the share of images whose tokens are identical to torch's, and
each backend's exact match against the CROHME label. Images come from `crohme/crohme_offline.zip`
(split 2014) under ../shared/data (or $TEXSCRIBE_SHARED_DATA); without it the script says so and exits 0.
`--preset NAME` times an UNTRAINED model of that architecture instead (seeded weights, CROHME-sized
vocabulary): agreement is still meaningful, exact match is not, and outputs run to --max-len tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXSCRIBE_SHARED_DATA", REPO.parent / "shared" / "data"))


def crohme_2014(n: int) -> list[tuple[str, bytes, list[str]]]:
    """The first `n` CROHME 2014 test samples (by id): (id, BMP bytes, normalised label tokens)."""
    from texscribe.data.readers.comer import read_comer
    from texscribe.data.sample import Sample
    from texscribe.latex import split_label

    archive = SHARED / "crohme" / "crohme_offline.zip"
    if not archive.is_file():
        print(f"SKIPPED: {archive} not found (set TEXSCRIBE_SHARED_DATA to the folder holding crohme/)")
        sys.exit(0)
    samples = sorted((s for s in read_comer(archive, "2014") if isinstance(s, Sample)), key=lambda s: s.id)
    return [(s.id, s.load(), split_label(s.latex)) for s in samples[:n]]


def untrained_model_file(preset: str, out: Path) -> Path:
    """A model file of `preset`'s architecture with seeded random weights and a 110-token vocabulary."""
    import torch

    from texscribe.checkpoint import save_model_file
    from texscribe.config import load_config
    from texscribe.latex import Vocab
    from texscribe.models.registry import build_model

    config = load_config(preset)
    vocab = Vocab([f"tok{i}" for i in range(106)])  # CROHME's vocabulary has about 110 entries
    torch.manual_seed(0)
    return save_model_file(out, config, vocab, build_model(config.model, len(vocab)).state_dict())


def run(recognizer, images, beam: int, max_len: int) -> tuple[list[list[str]], list[float]]:
    """Tokens and wall-clock seconds per image, one `predict` call each (after one warm-up call)."""
    recognizer.predict(images[0][1], beam=beam, max_len=max_len)
    outputs, seconds = [], []
    for _, data, _ in images:
        start = time.perf_counter()
        pred = recognizer.predict(data, beam=beam, max_len=max_len)
        seconds.append(time.perf_counter() - start)
        outputs.append(pred.tokens)
    return outputs, seconds


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="shipped name or model file (.pt)")
    parser.add_argument("--preset", help="time an untrained model of this architecture instead of --model")
    parser.add_argument("--onnx", help="an existing export folder (default: export into a temp folder)")
    parser.add_argument("--int8", action="store_true", help="also export and time a dynamic-int8 model")
    parser.add_argument("--n", type=int, default=100, help="CROHME 2014 images (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both backends (default 2)")
    parser.add_argument("--beam", type=int, default=1, help="beam width (default 1, greedy)")
    parser.add_argument("--max-len", type=int, default=200, help="longest output in tokens")
    args = parser.parse_args(argv)

    from texscribe.inference import load_model
    from texscribe.onnx_export import export_model_file

    images = crohme_2014(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="texscribe-onnx-"))
    if args.preset:
        args.model = str(untrained_model_file(args.preset, tmp / f"untrained-{args.preset}.pt"))
    variants = [("torch", load_model(args.model, num_threads=args.threads))]
    onnx_dir = Path(args.onnx) if args.onnx else export_model_file(args.model, tmp / "fp32").out_dir
    variants.append(("onnx fp32", load_model(str(onnx_dir), backend="onnx", num_threads=args.threads)))
    if args.int8:
        int8_dir = export_model_file(args.model, tmp / "int8", quantize="int8").out_dir
        variants.append(("onnx int8", load_model(str(int8_dir), backend="onnx", num_threads=args.threads)))

    label = f"{args.preset} (untrained)" if args.preset else args.model
    print(
        f"model {label}, {len(images)} CROHME 2014 images, beam {args.beam}, {args.threads} threads, batch 1"
    )
    results = {name: run(rec, images, args.beam, args.max_len) for name, rec in variants}
    torch_tokens, torch_seconds = results["torch"]
    torch_median = statistics.median(torch_seconds)
    header = f"{'backend':<10} {'median ms':>10} {'p90 ms':>8} {'speed vs torch':>15} {'same as torch':>14} {'exact match':>12}"
    print(header)
    print("-" * len(header))
    for name, (tokens, seconds) in results.items():
        median = statistics.median(seconds)
        same = sum(a == b for a, b in zip(tokens, torch_tokens)) / len(images)
        exact = sum(t == label for t, (_, _, label) in zip(tokens, images)) / len(images)
        print(
            f"{name:<10} {median * 1000:>10.1f} {quantile(seconds, 0.9) * 1000:>8.1f} "
            f"{torch_median / median:>14.2f}x {same:>14.1%} {exact:>12.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
