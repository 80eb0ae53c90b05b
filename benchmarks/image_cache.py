"""What the decoded-image cache saves: training items per second from a prepared dataset, PNG decode each time
vs from memory (`data.image_cache_mb`), with and without the preset's augmentation.

    python benchmarks/image_cache.py --data prepared/crohme_train [--config base] [--items 2000] [--repeats 3]

Prints the median of `--repeats` passes over the same `--items` items (the cached pass after one filling
pass) and the ratio; one process, one thread, as a DataLoader worker runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from texscribe.config import load_config  # noqa: E402
from texscribe.data.augment import build_augmenter  # noqa: E402
from texscribe.data.datamodule import LatexDataset  # noqa: E402
from texscribe.data.prepared import PreparedDataset  # noqa: E402


def items_per_s(dataset: LatexDataset, count: int, repeats: int) -> float:
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            dataset[i]
        speeds.append(count / (time.perf_counter() - start))
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="base")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = PreparedDataset.open(args.data)
    config = load_config(args.config)
    count = min(args.items, len(data))
    print(f"{args.data}, preset {args.config}, {count} items, median of {args.repeats} passes, 1 thread")
    print(f"{'augmentation':<13} {'decode each time':>17} {'cached':>10} {'ratio':>6}")
    for augmented in (False, True):
        augment = build_augmenter(config.data.augment, seed=0) if augmented else None
        plain = LatexDataset(
            [data], data.vocab, replace(config.data, image_cache_mb=0), augment=augment, limit=count
        )
        cached = LatexDataset([data], data.vocab, config.data, augment=augment, limit=count)
        items_per_s(cached, count, 1)  # fills the cache
        a, b = items_per_s(plain, count, args.repeats), items_per_s(cached, count, args.repeats)
        print(f"{'on' if augmented else 'off':<13} {a:>13.0f} /s {b:>6.0f} /s {b / a:>5.2f}x")


if __name__ == "__main__":
    main()
