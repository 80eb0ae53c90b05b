"""How much faster is bf16 than fp32 on this CPU for the convolutions the `base` preset trains?

The training step's bf16/fp32 speed-up (`benchmarks/train_throughput.py`) cannot exceed what the dominant
kernels gain: on the `base` preset convolutions (forward + backward) are about half of a bf16 step. This
times the preset's convolution shapes alone (3x3, stride 1, channels 64/128/256 at the spatial sizes a
CROHME batch reaches them), forward and forward + backward, in fp32 NCHW, fp32 channels-last and bf16
channels-last, next to the 2048^2 matmul of each dtype, all in one run.

    python benchmarks/conv_kernels.py [--repeats 7] [--batch 16] [--threads 2]

Prints TFLOPS (median of `--repeats` timed calls, FLOPs = 2 x MACs; backward counted as 2 x forward) and the
bf16 / fp32-channels-last ratio per shape.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import matmul_peak  # noqa: E402

# (channels, height, width) of the base preset's 3x3 convolutions on a typical CROHME batch at half scale
# (input ~80 x 400 px): stage 1 at stride 2, stage 2 at stride 4, stage 3 at stride 8.
SHAPES = [(64, 40, 200), (128, 20, 100), (256, 10, 50)]
LAYOUTS = [
    ("fp32 NCHW", torch.float32, torch.contiguous_format),
    ("fp32 channels-last", torch.float32, torch.channels_last),
    ("bf16 channels-last", torch.bfloat16, torch.channels_last),
]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernel for the shape on the first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def conv_tflops(
    channels: int, height: int, width: int, batch: int, dtype: torch.dtype, layout: torch.memory_format,
    repeats: int,
) -> tuple[float, float]:  # fmt: skip
    """(forward, forward + backward) TFLOPS of a channels -> channels 3x3 convolution."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dtype=dtype, memory_format=layout)
    x = torch.randn(batch, channels, height, width, dtype=dtype).to(memory_format=layout).requires_grad_(True)
    flops = 2 * channels * channels * 9 * height * width * batch

    def forward() -> None:
        with torch.no_grad():
            conv(x)

    def forward_backward() -> None:
        conv(x).sum().backward()

    return (
        flops / median_seconds(forward, repeats) / 1e12,
        3 * flops / median_seconds(forward_backward, repeats) / 1e12,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16, help="images per call (base trains ~16 per batch)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(
        f"2048^2 matmul: fp32 {matmul_peak(torch.float32, repeats=args.repeats):.3f} TFLOPS, "
        f"bf16 {matmul_peak(torch.bfloat16, repeats=args.repeats):.3f} TFLOPS\n"
    )
    header = f"{'3x3 conv (C, H, W)':<20}{'layout':<20}{'fwd TFLOPS':>11}{'fwd+bwd TFLOPS':>16}"
    print(header + f"{'bf16 / fp32-CL':>16}")
    print("-" * (len(header) + 16))
    for channels, height, width in SHAPES:
        rows = {
            name: conv_tflops(channels, height, width, args.batch, dtype, layout, args.repeats)
            for name, dtype, layout in LAYOUTS
        }
        fp32_cl = rows["fp32 channels-last"]
        for name, (fwd, both) in rows.items():
            ratio = ""
            if name.startswith("bf16"):
                ratio = f"{fwd / fp32_cl[0]:.2f}x / {both / fp32_cl[1]:.2f}x"
            print(f"{str((channels, height, width)):<20}{name:<20}{fwd:>11.3f}{both:>16.3f}{ratio:>16}")
    print("\nbf16 / fp32-CL: forward / forward + backward speed-up of bf16 over fp32 channels-last.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
