"""Accuracy per CPU-hour: the ExpRate of a training run's checkpoints against the training time each took.

How fast a preset learns on the machine it runs on is what decides which preset and precision to train
(issue 15). For each run folder this takes the checkpoints copied along the run (`snapshots/step-N.ckpt`, kept
by `train.snapshot_every_minutes`) and its `checkpoints/last.ckpt`, reads the training
time Lightning's `Timer` stored in each (seconds of the fit loop's wall clock, resumes included, validation
excluded), exports the weights (`texscribe.checkpoint.export_checkpoint`, what `texscribe export` runs), and
scores them with the library's `evaluate` (what `texscribe evaluate` runs) on `--data`, greedy by default.

    python benchmarks/accuracy_per_hour.py --run "base bf16=../runs/base-scratch-2h" \\
        [--run "small fp32=../runs/small-scratch-2h"] --data prepared/crohme_2014 --out /tmp/curves \\
        [--plot docs/model_card/scratch_exprate.png] [--target 0.30] [--json curves.json]

Prints one row per checkpoint (training hours, step, ExpRate, <=1, <=2 errors) and, per checkpoint, the
CLI commands that give the same figure. An evaluation already in `--out` of the same split with the same beam
is reused (delete it to redo).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texscribe.checkpoint import export_checkpoint, read_checkpoint  # noqa: E402
from texscribe.errors import ModelLoadError  # noqa: E402
from texscribe.evaluation.evaluate import METRICS, evaluate  # noqa: E402
from texscribe.evaluation.plots import plot_accuracy_per_hour  # noqa: E402
from texscribe.inference import load_model  # noqa: E402


def training_seconds(ckpt: dict[str, Any], path: Path) -> float:
    """Seconds of training (the fit loop's wall clock, validation excluded) stored by Lightning's `Timer`;
    `ModelLoadError` naming `path` when the checkpoint has none."""
    for key, state in (ckpt.get("callbacks") or {}).items():
        if (
            str(key).startswith("Timer")
            and isinstance(state, dict)
            and "train" in state.get("time_elapsed", {})
        ):
            return float(state["time_elapsed"]["train"])
    raise ModelLoadError(
        f"{path}: holds no Timer state with the training time (not written by texscribe train)"
    )


def run_checkpoints(run_dir: Path) -> list[tuple[int, float, Path]]:
    """(step, training seconds, path) of a run's snapshots and last.ckpt, by step; one per step."""
    paths = sorted(run_dir.glob("snapshots/step-*.ckpt"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    last = run_dir / "checkpoints" / "last.ckpt"
    found: dict[int, tuple[float, Path]] = {}
    for path in [*paths, *([last] if last.exists() else [])]:
        ckpt = read_checkpoint(path)
        found.setdefault(int(ckpt["global_step"]), (training_seconds(ckpt, path), path))
    return [(step, secs, path) for step, (secs, path) in sorted(found.items())]


def score(path: Path, out: Path, data: Path, beam: int, threads: int | None) -> dict[str, float]:
    """Metrics of `path`'s weights on `data` (reused from `out/eval/metrics.json` when that scored the same
    split with the same beam)."""
    metrics_file = out / "eval" / METRICS
    if metrics_file.exists():
        done = json.loads(metrics_file.read_text(encoding="utf-8"))
        if done["run"]["data"] == str(data.resolve()) and done["run"]["beam"] == beam:
            return done["metrics"]
    model = export_checkpoint(path, out / "model.pt")
    recognizer = load_model(model, num_threads=threads)
    return evaluate(recognizer, data, out / "eval", beam=beam, workers=1, progress=False).metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                        help="a run folder (with snapshots/ and checkpoints/) and its name in the table and plot")  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="prepared split to score on")
    parser.add_argument("--out", type=Path, required=True, help="folder for model files and evaluations")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG: ExpRate against training hours")
    parser.add_argument("--target", type=float, default=None, help="ExpRate bar drawn on the plot (fraction)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    curves: dict[str, list[dict[str, Any]]] = {}
    for spec in args.run:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--run {spec!r}: expected NAME=DIR")
        checkpoints = run_checkpoints(Path(folder))
        if not checkpoints:
            parser.error(f"--run {spec!r}: no snapshots/step-*.ckpt or checkpoints/last.ckpt in {folder}")
        points = curves.setdefault(name, [])
        for step, seconds, path in checkpoints:
            out = args.out / re.sub(r"[^\w.-]+", "_", name) / f"step-{step}"
            m = score(path, out, args.data, args.beam, args.threads)
            points.append({"step": step, "hours": seconds / 3600, "checkpoint": str(path),
                           "exp_rate": m["exp_rate"], "le1": m["le1"], "le2": m["le2"], "n": m["n"]})  # fmt: skip
            print(
                f"{name}: step {step} ({seconds / 3600:.2f} h) ExpRate {100 * m['exp_rate']:.2f} %",
                flush=True,
            )

    print(f"\n{args.data}, beam {args.beam}: ExpRate against training time")
    print(f"{'run':<16} {'hours':>6} {'step':>7} {'n':>5} {'ExpRate':>8} {'<=1':>7} {'<=2':>7}")
    for name, points in curves.items():
        for p in points:
            print(f"{name:<16} {p['hours']:>6.2f} {p['step']:>7} {p['n']:>5} {100 * p['exp_rate']:>7.2f}% "
                  f"{100 * p['le1']:>6.2f}% {100 * p['le2']:>6.2f}%")  # fmt: skip
    print("\nthe same figure by the CLI, for a checkpoint C:\n"
          "  texscribe export --format pt --model C --out M.pt\n"
          f"  texscribe evaluate --model M.pt --data {args.data}" + (f" --beam {args.beam}" if args.beam > 1 else ""))  # fmt: skip
    if args.plot:
        title = f"{args.data.name}, {'greedy' if args.beam == 1 else f'beam {args.beam}'}"
        series = {n: [(p["hours"], p["exp_rate"]) for p in pts] for n, pts in curves.items()}
        print(f"plot: {plot_accuracy_per_hour(series, args.plot, title, args.target)}")
    if args.json:
        args.json.write_text(json.dumps(curves, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
