"""Every PNG plot texscribe writes: training curves of a run, accuracy against training hours, accuracy by
formula length in an evaluation report, and the digits study's loss/accuracy curves. matplotlib with the
Agg backend: no display needed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from texscribe.evaluation.breakdown import LENGTH_BUCKETS


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------------------------- training runs
def read_metrics(csv_paths: Iterable[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """metric name -> sorted (step, value) pairs merged over Lightning CSV logs (one file per run segment)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for path in csv_paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                step = int(float(row.get("step") or 0))
                for key, value in row.items():
                    if key in ("step", "epoch") or value in (None, ""):
                        continue
                    series[key][step] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def plot_training_curves(csv_paths: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Write loss.png, exprate.png and lr.png (those with data) from Lightning CSV logs; returns the paths."""
    plt = _pyplot()
    series = read_metrics(csv_paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = {
        "loss.png": ("loss", ["train/loss_step", "train/loss_epoch", "val/loss"]),
        "exprate.png": ("fraction of val set", ["val/exprate", "val/le1", "val/le2"]),
        "lr.png": ("learning rate", sorted(k for k in series if k.startswith("lr-"))[:1]),  # groups share it
    }
    written = []
    for filename, (ylabel, keys) in panels.items():
        keys = [k for k in keys if series.get(k)]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            steps, values = zip(*series[key])
            marker = "o" if len(steps) < 50 else None
            ax.plot(steps, values, label=key, marker=marker, markersize=3)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_accuracy_per_hour(
    curves: dict[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str,
    target: float | None = None,
) -> Path:
    """ExpRate (fraction) against training hours, one line per run (name -> (hours, exp_rate) points), and
    `target` as a dashed line: how fast a preset learns on the machine it trained on."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        hours, rates = zip(*sorted(points)) if points else ((), ())
        ax.plot(hours, [100 * r for r in rates], marker="o", markersize=4, label=name)
    if target is not None:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"{100 * target:g} %")
    ax.set_xlabel("training time (hours)")
    ax.set_ylabel("ExpRate (%)")
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- evaluation
def plot_accuracy_by_length(
    groups: dict[str, dict[str, float]], path: Path, columns: Sequence[tuple[str, str]]
) -> None:
    """Bars per reference-length bucket (`breakdown.by_length` metrics), one bar per (metric key, title)."""
    plt = _pyplot()
    order = [name for name, _, _ in LENGTH_BUCKETS if name in groups] + [n for n in groups if n == "empty"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    width = 0.27
    for k, (key, title) in enumerate(columns):
        xs = [i + (k - 1) * width for i in range(len(order))]
        ax.bar(xs, [100 * groups[g][key] for g in order], width, label=title)
    ax.set_xticks(range(len(order)), [f"{g}\n(n={int(groups[g]['n'])})" for g in order])
    ax.set_xlabel("reference length (tokens)")
    ax.set_ylabel("% of samples")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy by formula length")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- digits study
def plot_digit_curves(histories: dict[str, dict], names: list[str], path: Path, title: str) -> None:
    """Loss and accuracy against epochs, one colour per run (`DigitTrainResult.summary()` dicts): training
    (thin line, a point every `digits.train.TRACE_EVERY` steps, on augmented batches where the recipe
    augments) and validation (markers, per epoch)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(13, 5))
    for i, name in enumerate(names):
        run = histories[name]
        colour = f"C{i % 10}"
        trace = run["trace"]
        if trace:
            at, loss, acc = zip(*trace)
            ax_loss.plot(at, loss, "-", color=colour, lw=1, alpha=0.6)
            ax_acc.plot(at, [100 * a for a in acc], "-", color=colour, lw=1, alpha=0.6)
        at = [h["epochs_done"] for h in run["history"]]
        ax_loss.plot(at, [h["val_loss"] for h in run["history"]], "o--", color=colour, ms=5, label=name)
        ax_acc.plot(at, [100 * h["val_acc"] for h in run["history"]], "o--", color=colour, ms=5, label=name)
    ax_loss.set(
        xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss (line: train, dots: validation)"
    )
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (line: train, dots: validation)")
    if any(histories[n]["settings"]["label_smoothing"] for n in names):
        note = "runs trained with label smoothing have a higher train-loss floor"
        ax_loss.text(0.01, 0.01, note, fontsize=7, transform=ax_loss.transAxes)
    ax_acc.set_ylim(max(0.0, ax_acc.get_ylim()[0]), 100.5)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
