"""Architecture study: train each preset for the same time budget on the same data, then measure it.

    python benchmarks/study.py --presets small effnet_nl satrn rnn_bilstm --budget-minutes 60 \\
        --train /work/prepared/crohme_train --val /work/prepared/crohme_2014 \\
        --unlabelled /work/prepared/crohme_inkml_train --out runs/study --doc docs/STUDY.md

For every preset: `texscribe.training.train` (one run directory `<out>/<preset>`, `train.max_time` =
the budget, re-running resumes), then on the exported model (the EMA teacher for mean-teacher presets)
`texscribe.evaluation.evaluate` on `--val` (CROHME 2014: ExpRate, <=1, BLEU-4) and greedy batch-1 CPU
latency on CROHME 2014 bitmaps (`benchmarks/predict_latency.py`'s images). Params come from the model,
training images/s from the run's logged `train/images_per_s` (median; validation time excluded).

Writes `--doc` (one markdown table + the commands) and `<doc stem>/` curves beside it: validation
ExpRate against training time and training loss against step, one line per preset. `--limit N`
trains and validates on the first N records only (a smoke test; such numbers mean nothing: write them
to a temporary --doc). Extra `key=value` arguments override every preset's config (e.g.
`data.num_workers=0`); `--unlabelled` sets `train.mean_teacher.unlabelled` (used only by presets that
enable mean teacher).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def subset(src: Path, dst: Path, limit: int) -> Path:
    """A prepared folder listing the first `limit` records of `src` (images referenced, not copied)."""
    from texscribe.data.prepared import PreparedDataset, write_subset

    ds = PreparedDataset.open(src)
    return write_subset(dst, ds.records[:limit], ds.vocab)


def train_preset(preset: str, args: argparse.Namespace, train: list[str], val: str, unlabelled: list[str]):
    from texscribe.config import load_config
    from texscribe.training import train as run_training

    minutes = args.budget_minutes
    overrides = [
        f"data.train=[{', '.join(train)}]",
        f"data.val={val}",
        f"train.out_dir={args.out}",
        f"train.run_name={preset}",
        f"train.max_time=00:{int(minutes // 60):02d}:{int(minutes % 60):02d}:{int(round(minutes * 60)) % 60:02d}",
    ]
    if unlabelled:
        overrides.append(f"train.mean_teacher.unlabelled=[{', '.join(unlabelled)}]")
    if args.limit:
        overrides.append(f"train.val_limit={args.limit}")
    config = load_config(preset, overrides + list(args.overrides))
    return config, run_training(config, resume="auto")


def images_per_second(run_dir: Path) -> float | None:
    from texscribe.evaluation.plots import read_metrics

    series = read_metrics(sorted((run_dir / "logs" / "csv").glob("segment-*/metrics.csv")))
    values = [v for _, v in series.get("train/images_per_s", [])]
    return statistics.median(values) if values else None


def latency_ms(recognizer, n: int, max_len: int) -> float | None:
    """Median greedy batch-1 end-to-end latency on the first `n` CROHME 2014 bitmaps (None without data)."""
    from predict_latency import SHARED, crohme_images, time_per_image

    if not (SHARED / "crohme" / "crohme_offline.zip").is_file() or n <= 0:
        return None
    payloads = [data for _, data in crohme_images(n)]
    recognizer.predict(payloads[:2], max_len=max_len)  # warm-up
    times, _ = time_per_image(recognizer, payloads, beam=1, max_len=max_len)
    return 1000 * statistics.median(times)


def measure(preset: str, config, result, args: argparse.Namespace, val: str) -> dict:
    from texscribe.evaluation import evaluate
    from texscribe.inference import load_model
    from texscribe.models import count_parameters

    row = {
        "preset": preset,
        "encoder": config.model.encoder["name"],
        "decoder": config.model.decoder["name"]
        + (" +BiLSTM rows" if config.model.decoder.get("row_encoder") else ""),
        "mean_teacher": config.train.mean_teacher.enabled,
        "steps": result.global_step,
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        "train_images_per_s": images_per_second(result.run_dir),
        "run_dir": str(result.run_dir),
    }
    if result.model_file is None:
        return {**row, "error": "no model file exported (run interrupted?)"}
    rec = load_model(result.model_file, num_threads=args.threads)
    row["params"] = count_parameters(rec.models[0].model)
    ev = evaluate(rec, val, result.run_dir / "eval", limit=args.limit, workers=1, progress=False)
    row.update({k: ev.metrics[k] for k in ("n", "exp_rate", "le1", "le2", "bleu4")})
    row["latency_ms"] = latency_ms(rec, args.latency_n, args.max_len)
    return row


def plot(rows: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from texscribe.evaluation.plots import read_metrics

    out_dir.mkdir(parents=True, exist_ok=True)
    fig_val, ax_val = plt.subplots(figsize=(7, 4))
    fig_loss, ax_loss = plt.subplots(figsize=(7, 4))
    for row in rows:
        series = read_metrics(sorted((Path(row["run_dir"]) / "logs" / "csv").glob("segment-*/metrics.csv")))
        steps = max(1, row["steps"])
        if series.get("val/exprate"):  # steps -> minutes of training, assuming an even pace
            x, y = zip(*series["val/exprate"])
            ax_val.plot(
                [s / steps * row["train_seconds"] / 60 for s in x], y, marker="o", label=row["preset"]
            )
        if series.get("train/loss_step"):
            x, y = zip(*series["train/loss_step"])
            ax_loss.plot(x, y, label=row["preset"], alpha=0.8)
    paths = []
    for fig, ax, name, xlabel, ylabel in (
        (fig_val, ax_val, "val_exprate.png", "training minutes", "validation ExpRate"),
        (fig_loss, ax_loss, "train_loss.png", "optimizer step", "training loss (label-smoothed CE)"),
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_doc(doc: Path, rows: list[dict], curves: list[Path], args: argparse.Namespace, data: dict) -> None:
    lines = [
        "# Architecture study",
        "",
        f"Same data, same time budget ({args.budget_minutes:g} min of training each), same machine "
        f"({data['machine']}). Generated by `benchmarks/study.py`; nothing hand-edited.",
        "",
        "```bash",
        "python " + " ".join(sys.argv),
        "```",
        "",
        f"Training data: {', '.join(data['train'])}; validation and evaluation: {data['val']}"
        + (f" (first {args.limit} records only: SMOKE TEST)" if args.limit else "")
        + f". Unlabelled (mean teacher): {', '.join(data['unlabelled']) or 'the training images'}.",
        "",
        "| preset | encoder | decoder | mean teacher | params | train img/s | steps | epochs | ExpRate | ≤1 | ≤2 "
        "| BLEU-4 | CPU latency ms (greedy, batch 1) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['preset']} | {r['encoder']} | {r['decoder']} | | | | {r['steps']} | | {r['error']} |||||"
            )
            continue
        lines.append(
            f"| {r['preset']} | {r['encoder']} | {r['decoder']} | {'yes' if r['mean_teacher'] else 'no'} "
            f"| {r['params'] / 1e6:.2f} M | {fmt(r['train_images_per_s'], '.1f')} | {r['steps']} | {r['epochs']:.2f} "
            f"| {100 * r['exp_rate']:.2f} % | {100 * r['le1']:.2f} % | {100 * r['le2']:.2f} % "
            f"| {100 * r['bleu4']:.2f} % | {fmt(r['latency_ms'], '.0f')} |"
        )
    lines += ["", "Curves:", ""]
    lines += [f"![{p.stem}]({p.relative_to(doc.parent).as_posix()})" for p in curves]
    lines += ["", "Raw numbers: " + f"`{doc.with_suffix('.json').name}`.", ""]
    doc.write_text("\n".join(lines), encoding="utf-8")
    doc.with_suffix(".json").write_text(
        json.dumps({"rows": rows, **data}, indent=2, default=str), encoding="utf-8"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["small", "effnet_nl", "satrn", "rnn_bilstm"])
    parser.add_argument("--budget-minutes", type=float, required=True, help="training time per preset")
    parser.add_argument(
        "--train", action="append", default=None, help="prepared training folder (repeatable)"
    )
    parser.add_argument("--val", default="/work/prepared/crohme_2014", help="prepared CROHME 2014 folder")
    parser.add_argument("--unlabelled", action="append", default=[], help="prepared folder for mean teacher")
    parser.add_argument("--out", type=Path, default=Path("runs/study"), help="parent of the run directories")
    parser.add_argument(
        "--doc", type=Path, default=REPO / "docs" / "STUDY.md", help="markdown table to write"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N records (smoke test)")
    parser.add_argument("--latency-n", type=int, default=30, help="CROHME 2014 images timed per model")
    parser.add_argument("--max-len", type=int, default=150, help="longest output while measuring latency")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for evaluation/latency")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every preset")
    args = parser.parse_args()

    import platform

    train = [str(Path(p).resolve()) for p in (args.train or ["/work/prepared/crohme_train"])]
    val, unlabelled = str(Path(args.val).resolve()), [str(Path(p).resolve()) for p in args.unlabelled]
    if args.limit:
        base = args.out / "_subsets"
        train = [str(subset(Path(p), base / f"train{i}", args.limit)) for i, p in enumerate(train)]
        unlabelled = [str(subset(Path(p), base / f"unl{i}", args.limit)) for i, p in enumerate(unlabelled)]
        val = str(subset(Path(val), base / "val", args.limit))
    rows = []
    for preset in args.presets:
        print(f"\n=== {preset}: training for {args.budget_minutes:g} min ===", flush=True)
        config, result = train_preset(preset, args, train, val, unlabelled)
        rows.append(measure(preset, config, result, args, val))
        print(json.dumps(rows[-1], default=str), flush=True)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    curves = plot(rows, args.doc.parent / args.doc.stem.lower())
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} CPUs"
    write_doc(
        args.doc,
        rows,
        curves,
        args,
        {"train": train, "val": val, "unlabelled": unlabelled, "machine": machine},
    )
    print(f"\nwrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
