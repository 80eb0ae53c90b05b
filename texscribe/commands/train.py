"""`texscribe train`: train a preset or YAML config on prepared datasets; re-running resumes."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  texscribe train --config tiny --train /work/prepared/crohme_train --val /work/prepared/crohme_2014 \\
      --max-time 00:00:10:00
  texscribe train --config default --train DIR_A --train DIR_B --val DIR_V optim.lr=1e-4 data.num_workers=2
  texscribe train --config model2 --train DIR --init-weights runs/model2/model.pt train.run_name=ft

Run directory: <out>/<train.run_name or config name>/ holds checkpoints/ (last.ckpt, best-*.ckpt),
logs/ (TensorBoard + CSV), curves/*.png and model.pt (the exported best model).
Running the same command again resumes from checkpoints/last.ckpt (--resume auto). Limits
(--max-time, train.max_steps, train.max_epochs) count the whole run, resumes included: raise them
to train longer.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on prepared datasets",
        description="Train a recogniser on prepared datasets (see `texscribe data prepare`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        required=True,
        metavar="PRESET_OR_YAML",
        help="preset name (tiny, model1, model2, default) or a YAML file",
    )
    p.add_argument(
        "--train",
        action="append",
        metavar="DIR",
        help="prepared training dataset (repeatable); DIR@K reads it K times per epoch (mixture weight); sets data.train",
    )
    p.add_argument("--val", metavar="DIR", help="prepared validation dataset; sets data.val")
    p.add_argument("--out", metavar="DIR", help="parent folder of run directories; sets train.out_dir")
    p.add_argument(
        "--max-time", metavar="DD:HH:MM:SS", help="stop after this much training time; sets train.max_time"
    )
    p.add_argument("--resume", default="auto", metavar="auto|never|PATH",
                   help="auto: continue from the run's last.ckpt if present (default); never: fresh run in a new directory; or a .ckpt path")  # fmt: skip
    p.add_argument(
        "--init-weights",
        metavar="FILE",
        help="start a fresh run from these weights (model.pt or .ckpt) and their vocabulary, with a new optimizer (not used when resuming)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. optim.lr=1e-4 train.max_steps=2000",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texscribe.config import load_config
    from texscribe.training.run import train

    overrides = list(args.overrides)
    if args.train:
        overrides.append(f"data.train=[{', '.join(_quote(p) for p in args.train)}]")
    if args.val:
        overrides.append(f"data.val={_quote(args.val)}")
    if args.out:
        overrides.append(f"train.out_dir={_quote(args.out)}")
    if args.max_time:
        overrides.append(f"train.max_time={_quote(args.max_time)}")
    config = load_config(args.config, overrides)
    result = train(config, resume=args.resume, weights_only_from=args.init_weights)
    print(f"\nrun directory: {result.run_dir}")
    print(f"  steps {result.global_step}, epochs {result.epochs}, training time {result.train_seconds:.0f} s")
    for key, value in result.best_metrics.items():
        if key.startswith("val/"):
            print(f"  best {key}: {value:.4f}")
    if result.model_file:
        print(f"  model file: {result.model_file}")
    if result.last_checkpoint:
        print(f"  last checkpoint: {result.last_checkpoint}")
    for curve in result.curves:
        print(f"  curve: {curve}")
    return 0


def _quote(value: str) -> str:
    """A YAML double-quoted scalar, so paths with ':' or spaces survive `apply_overrides`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
