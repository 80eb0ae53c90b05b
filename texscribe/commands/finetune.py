"""`texscribe finetune`: adapt a trained model to your own data, with a before/after report."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  texscribe finetune --from default --data my_labels/ --epochs 3
  texscribe finetune --from default --data prepared/chem --val prepared/chem/held_out \\
      --replay /work/prepared/crohme_train --eval /work/prepared/crohme_2014 --limit 300 --out runs/ft-chem

--data/--val take a prepared dataset folder or any source `texscribe data prepare` reads (a label folder
of images + same-named .txt, a CoMER zip, a manifest .tsv/.csv, InkML). Without --val, a seeded
share of the new formulas (--held-out-fraction) is held out for the report. Tokens the model has
never seen get new ids appended to its vocabulary. Results: OUT/finetune_report.md (+ .json),
OUT/train/model.pt. Running the same command again resumes training and reuses the "before" scores.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a trained model on new data (grows the vocabulary; before/after report)",
        description="Fine-tune a model on a new domain: lower learning rate, short warmup, optional encoder "
        "freezing and replay of the original data, then score the base and fine-tuned models on the new "
        "domain's held-out split and on each --eval set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="base", default="default", metavar="default|MODEL.pt",
                   help="model to start from (default: the shipped model)")  # fmt: skip
    p.add_argument("--data", action="append", required=True, metavar="SRC",
                   help="new-domain data: prepared folder or raw source (repeatable)")  # fmt: skip
    p.add_argument("--val", metavar="SRC", help="held-out new-domain data for the report (default: a split)")
    p.add_argument("--held-out-fraction", type=float, default=0.1, metavar="F",
                   help="share of the new formulas held out when no --val (default 0.1)")  # fmt: skip
    p.add_argument("--out", default="runs/finetune", metavar="DIR", help="run folder (default runs/finetune)")
    p.add_argument("--epochs", type=int, default=None, help="epochs over the new data (default 3)")
    p.add_argument("--max-time", metavar="DD:HH:MM:SS",
                   help="training time budget; alone it trains at a constant LR until the budget ends")  # fmt: skip
    p.add_argument("--lr", type=float, help="peak learning rate: sets optim.lr (recipe default 3e-4)")
    p.add_argument(
        "--warmup-steps", type=int, help="linear warmup steps: sets optim.warmup_steps (recipe default 30)"
    )
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder side only")
    p.add_argument("--replay", action="append", default=[], metavar="DIR",
                   help="prepared original training data to mix in (limits forgetting; repeatable, pooled)")  # fmt: skip
    p.add_argument("--replay-fraction", type=float, default=0.3, metavar="F",
                   help="share of each epoch drawn from --replay (default 0.3)")  # fmt: skip
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="train on a seeded sample of N new records (for large rendered corpora)")  # fmt: skip
    p.add_argument("--eval", action="append", default=[], metavar="DIR",
                   help="prepared dataset scored before and after (repeatable), e.g. crohme_2014")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="score only the first N records of each set"
    )
    p.add_argument("--beam", type=int, default=1, help="beam width for the scores (default 1: greedy)")
    p.add_argument("--max-len", type=int, default=200, help="longest prediction in tokens (default 200)")
    p.add_argument(
        "--seed", type=int, help="split, replay and training seed: sets train.seed (recipe default 7)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides of the fine-tuning config, e.g. data.batch_max_size=16")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texscribe.training.finetune import FinetuneSettings, finetune, report_table

    epochs = args.epochs if args.epochs is not None else (None if args.max_time else 3)
    settings = FinetuneSettings(
        base=args.base,
        data=list(args.data),
        out=args.out,
        val=args.val,
        held_out_fraction=args.held_out_fraction,
        epochs=epochs,
        max_time=args.max_time,
        freeze_encoder=args.freeze_encoder,
        replay=list(args.replay),
        sample=args.sample,
        replay_fraction=args.replay_fraction,
        eval_sets=list(args.eval),
        eval_limit=args.limit,
        beam=args.beam,
        max_len=args.max_len,
        overrides=[*_flag_overrides(args), *args.overrides],  # the explicit key=value ones win
        progress=not args.no_progress,
    )
    result = finetune(settings)
    header = ["set", "n", "metric", "before %", "after %", "delta"]
    rows = [header, *report_table(result.scores)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(f"\nadded tokens ({len(result.added_tokens)}): {' '.join(result.added_tokens) or 'none'}")
    print(f"fine-tuned model: {result.model_file}")
    print(f"report: {result.out / 'finetune_report.md'}")
    return 0


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """--lr, --warmup-steps, --seed as the config keys they set (left out: `RECIPE`'s values stay)."""
    flags = {"optim.lr": args.lr, "optim.warmup_steps": args.warmup_steps, "train.seed": args.seed}
    return [f"{key}={value!r}" for key, value in flags.items() if value is not None]
