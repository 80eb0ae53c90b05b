"""Throughput of batch recognition: local (no Ray) vs Ray with 1 and 2 workers, on the same images.

    python benchmarks/ray_predict.py [--images prepared/crohme_2014/images] [--n 1000] [--repeats 3]
                                     [--model default] [--json out.json]

Every configuration reads the same `--n` PNG files (sorted by name; cycled when the folder holds fewer)
with the same decoding (greedy, batch 8, chunks of 32, as `texscribe predict` does), through the
library's own paths: `inference.iter_predictions` for local mode, `ray_engine.RayRecognizerPool` for
Ray (a private Ray on loopback, started once; each worker holds the model and uses 1 torch thread).
Configurations run interleaved, `--repeats` rounds, so a machine whose load drifts (a shared one)
affects all alike; the table gives the median images/s of the rounds. Start-up (Ray and the workers
loading the model) is timed apart, not inside images/s. Derived figures:

- Ray overhead per image: median seconds per image of Ray 1 worker minus local with 1 thread (the
  same compute: one process, one thread), i.e. what scheduling, pickling and transport add;
- scaling efficiency: (Ray 2 workers images/s) / (2 x Ray 1 worker images/s).

Every run's LaTeX must equal local mode's for every image (same chunks, same batches).
`--images` defaults to the prepared CROHME 2014 set (`texscribe data prepare
../shared/data/crohme/crohme_offline.zip:2014 --out prepared/crohme_2014`); without it the script says
so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DECODE = {"beam": 1, "batch_size": 8, "max_len": 200}
CHUNK = 32  # texscribe predict's chunk for --batch-size 8


def image_paths(folder: Path, n: int) -> list[str]:
    found = sorted(str(p) for p in folder.glob("*.png"))
    if not found:
        print(f"SKIPPED: no PNG images in {folder} (prepare CROHME 2014 first; see --help)")
        sys.exit(0)
    return [found[i % len(found)] for i in range(n)]


def run_local(recognizer, items) -> tuple[float, list]:
    from texscribe.inference import iter_predictions

    start = time.perf_counter()
    outs = list(iter_predictions(recognizer, items, workers=1, chunk_size=CHUNK, **DECODE))
    return time.perf_counter() - start, outs


def run_ray(pool, items) -> tuple[float, list]:
    start = time.perf_counter()
    outs = list(pool.predict(items, chunk_size=CHUNK, **DECODE))
    return time.perf_counter() - start, outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=REPO / "prepared" / "crohme_2014" / "images")
    ap.add_argument("--n", type=int, default=1000, help="images per run (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all configurations (default 3)")
    ap.add_argument("--model", default="default", help="shipped name or model file (default: default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch

    from texscribe.inference import available_cpus, load_model
    from texscribe.ray_engine import RayRecognizerPool, import_ray

    paths = image_paths(args.images, args.n)
    items = [(p, p) for p in paths]
    distinct = len(set(paths))
    print(f"{len(items)} images ({distinct} distinct) from {args.images}, model {args.model}, "
          f"{available_cpus()} CPUs, {args.repeats} rounds", flush=True)  # fmt: skip

    local = {threads: load_model(args.model, num_threads=threads) for threads in (1, 2)}
    torch.set_num_threads(2)
    ray = import_ray(local=True)
    start = time.perf_counter()
    # one loopback Ray for both pools (3 workers' worth of logical CPUs; only one pool runs at a time)
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    ray_start = time.perf_counter() - start
    startup = {}
    pools = {}
    for workers in (1, 2):
        start = time.perf_counter()
        pools[workers] = RayRecognizerPool(args.model, workers=workers, threads=1)
        startup[f"ray_{workers}"] = time.perf_counter() - start

    configs = {
        "local, 1 thread": lambda: run_local(local[1], items),
        "local, 2 threads": lambda: run_local(local[2], items),
        "Ray, 1 worker": lambda: run_ray(pools[1], items),
        "Ray, 2 workers": lambda: run_ray(pools[2], items),
    }
    warm = items[: 2 * CHUNK]  # first calls pay one-off costs (allocator, kernels): not timed
    for threads, recognizer in local.items():
        torch.set_num_threads(threads)
        run_local(recognizer, warm)
    for pool in pools.values():
        run_ray(pool, warm)  # a chunk for each worker
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    reference = None
    mismatches = 0
    for r in range(args.repeats):
        for name, fn in configs.items():
            if name.startswith("local, 1"):
                torch.set_num_threads(1)
            elif name.startswith("local, 2"):
                torch.set_num_threads(2)
            elapsed, outs = fn()
            latex = [(o.index, o.prediction.latex if o.prediction else o.error) for o in outs]
            if reference is None:
                reference = latex
            mismatches += sum(a != b for a, b in zip(latex, reference)) + abs(len(latex) - len(reference))
            seconds[name].append(elapsed)
            print(
                f"round {r + 1}: {name:17s} {elapsed:7.1f} s  {len(items) / elapsed:6.1f} images/s",
                flush=True,
            )
    for pool in pools.values():
        pool.close()
    ray.shutdown()

    n = len(items)
    med = {name: statistics.median(s) for name, s in seconds.items()}
    ips = {name: n / s for name, s in med.items()}
    overhead_ms = 1000 * (med["Ray, 1 worker"] - med["local, 1 thread"]) / n
    efficiency = ips["Ray, 2 workers"] / (2 * ips["Ray, 1 worker"])
    base = ips["local, 2 threads"]
    print(f"\n| engine | images/s (median of {args.repeats}) | vs local, 2 threads | seconds per run |")
    print("|---|---:|---:|---|")
    for name in configs:
        runs = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"| {name} | {ips[name]:.1f} | {ips[name] / base:.2f}x | {runs} |")
    print(f"\nRay overhead per image (Ray 1 worker - local 1 thread): {overhead_ms:+.2f} ms; "
          f"scaling 1 -> 2 workers: {ips['Ray, 2 workers'] / ips['Ray, 1 worker']:.2f}x "
          f"(efficiency {100 * efficiency:.0f} %)")  # fmt: skip
    print(f"start-up: Ray {ray_start:.1f} s; 1 worker loading the model {startup['ray_1']:.1f} s, "
          f"2 workers {startup['ray_2']:.1f} s (not in images/s)")  # fmt: skip
    print(f"outputs differing from the first run: {mismatches} of {n * len(configs) * args.repeats}")
    if args.json:
        args.json.write_text(json.dumps({
            "images": n, "distinct_images": distinct, "model": args.model, "repeats": args.repeats,
            "cpus": available_cpus(), "machine": platform.platform(), "seconds": seconds,
            "images_per_s": ips, "ray_overhead_ms_per_image": overhead_ms, "scaling_efficiency": efficiency,
            "startup_s": {"ray": ray_start, **startup}, "mismatches": mismatches,
        }, indent=2))  # fmt: skip
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
