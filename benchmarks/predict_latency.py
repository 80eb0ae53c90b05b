"""Prediction latency and throughput on handwriting and print: greedy vs beam search, batch 1 vs batched.

    python benchmarks/predict_latency.py [--model default|PATH] [--n 40] [--beam 5] [--batch-size 8]
                                         [--sets crohme2014 im2latex] [--set data.KEY=VALUE ...]

Per-image latency is end to end (decode the image bytes, preprocess, encode, decode tokens) through
`Recognizer.predict`, one image at a time; throughput runs the same images through one batched call.
One table per set: `crohme2014`, the first N CROHME 2014 test bitmaps (`crohme/crohme_offline.zip`), and
`im2latex`, the first N im2latex-100k validation images (`im2latex/im2latex_val.zip`: arXiv formulas,
median ~48 tokens, so decoding dominates), both under ../shared/data (or $TEXSCRIBE_SHARED_DATA); a set
whose archive is absent is skipped with a message (exit 0 when none is there).
`--set data.KEY=VALUE ...` measures the model a second time in the same run with those reading settings
(e.g. `data.read_ink_heights=[28,42]`), as rows marked `+set` with ratios against the plain model's.
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


SETS = {  # name -> (archive under SHARED, member prefix, suffix, what the table calls it)
    "crohme2014": ("crohme/crohme_offline.zip", "data/2014/img/", ".bmp", "CROHME 2014 handwriting"),
    "im2latex": ("im2latex/im2latex_val.zip", "im2latex_val/formula_images_processed/", ".png",
                 "im2latex-100k validation print"),
}  # fmt: skip


def set_images(name: str, n: int) -> list[tuple[str, bytes]] | None:
    """The first `n` images of set `name` (sorted by member name), as (name, encoded bytes); None (after
    saying why) when its archive is absent."""
    archive_name, prefix, suffix, _ = SETS[name]
    archive = SHARED / archive_name
    if not archive.is_file():
        print(f"SKIPPED {name}: {archive} not found (set TEXSCRIBE_SHARED_DATA to the folder holding it)")
        return None
    with zipfile.ZipFile(archive) as zf:
        names = sorted(m for m in zf.namelist() if m.startswith(prefix) and m.endswith(suffix))
        return [(member, zf.read(member)) for member in names[:n]]


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
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS),
                        help="image sets, one table each (default: all)")  # fmt: skip
    parser.add_argument("--set", nargs="+", default=[], metavar="data.KEY=VALUE",
                        help="also measure the model read with these settings, in the same run")  # fmt: skip
    args = parser.parse_args()

    import tempfile

    import torch

    from texscribe.inference import load_model

    with tempfile.TemporaryDirectory() as tmp:
        source = untrained_model_file(args.preset, Path(tmp) / "m.pt") if args.preset else args.model
        rec = load_model(source, device=args.device, num_threads=args.threads)
        variant = (
            load_model(source, device=args.device, num_threads=args.threads, data_overrides=args.set)
            if args.set
            else None
        )
    label = f"untrained preset {args.preset!r}" if args.preset else str(rec.models[0].path)
    measured = 0
    for name in args.sets:
        images = set_images(name, args.n)
        if not images:
            continue
        payloads = [data for _, data in images]
        rec.predict(payloads[:2], max_len=args.max_len)  # warm-up (allocator, kernels)
        print(f"\nmodel: {label}; {len(payloads)} {SETS[name][3]} images; device {args.device}, "
              f"torch threads {torch.get_num_threads()}; max_len {args.max_len}")  # fmt: skip
        rows = measure(rec, payloads, args.beam, args.batch_size, args.max_len)
        if args.set:
            variant.predict(payloads[:2], max_len=args.max_len)
            rows += [(f"{mode} +set", *rest) for mode, *rest in
                     measure(variant, payloads, args.beam, args.batch_size, args.max_len)]  # fmt: skip
        print_table(rows)
        measured += 1
    if measured:
        print(
            "ratios are relative to greedy, batch 1 of the same set (latency: median per image; throughput: images/s)"
        )
        if args.set:
            print(f"+set: read with {' '.join(args.set)}")
    return 0


def measure(rec, payloads: list[bytes], beam: int, batch_size: int, max_len: int) -> list[tuple]:
    """(mode, per-image latencies or None, images/s, token counts) for greedy and beam `beam`, at batch
    1 and at `batch_size`."""
    rows = []
    for width in (1, beam):
        latencies, lengths = time_per_image(rec, payloads, width, max_len)
        mode = f"{'greedy' if width == 1 else f'beam {width}'}, batch 1"
        rows.append((mode, latencies, len(payloads) / sum(latencies), lengths))
    for width in (1, beam):
        start = time.perf_counter()
        preds = rec.predict(payloads, beam=width, batch_size=batch_size, max_len=max_len)
        total = time.perf_counter() - start
        mode = f"{'greedy' if width == 1 else f'beam {width}'}, batch {batch_size}"
        rows.append((mode, None, len(payloads) / total, [len(p.tokens) for p in preds]))
    return rows


def print_table(rows: list[tuple]) -> None:
    base_median = statistics.median(rows[0][1])
    base_rate = rows[0][2]
    header = (
        f"{'mode':<20} {'median ms':>10} {'p90 ms':>10} {'images/s':>9} {'latency x':>10} {'throughput x':>13} "
        f"{'mean tokens':>12}"
    )
    width = max(20, *(len(row[0]) for row in rows))
    header = header.replace(f"{'mode':<20}", f"{'mode':<{width}}")
    print(header)
    print("-" * len(header))
    for name, lat, rate, lengths in rows:
        med = f"{1000 * statistics.median(lat):.1f}" if lat else "-"
        p90 = f"{1000 * percentile(lat, 0.9):.1f}" if lat else "-"
        lat_ratio = f"{statistics.median(lat) / base_median:.2f}" if lat else "-"
        print(
            f"{name:<{width}} {med:>10} {p90:>10} {rate:>9.2f} {lat_ratio:>10} {rate / base_rate:>13.2f} "
            f"{statistics.mean(lengths):>12.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
