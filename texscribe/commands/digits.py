"""`texscribe digits train|evaluate|predict|study`: MNIST classifiers, their study, the shipped model.

Heavy imports (torch) happen inside the handlers so that `texscribe --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from texscribe.threads import set_torch_threads

MODEL_NAMES = ("cnn", "lenet", "alexnet", "mlp", "best")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "digits", help="handwritten digits (MNIST): train, evaluate, predict, study"
    )
    sub = parser.add_subparsers(dest="digits_command", metavar="ACTION", required=True)

    p = sub.add_parser("train", help="train a digit classifier on MNIST (60k = train + early-stopping split)")
    p.add_argument("--model", choices=MODEL_NAMES, default="best")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the model's recipe)")
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--lr", type=float, help="(peak) learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--schedule", choices=("constant", "onecycle", "cosine"))
    p.add_argument("--patience", type=int, help="early stopping: epochs without validation improvement")
    p.add_argument(
        "--max-minutes", type=float, help="wall-clock budget, the schedule is fitted to it (0: none)"
    )
    p.add_argument("--val-size", type=int, default=5000, help="images carved from the 60k for validation")
    p.add_argument("--train-limit", type=int, help="use only this many training images (quick runs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, help="model file to write (default runs/digits/<model>.pt)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="test-set accuracy and confusion matrix of a digit model")
    p.add_argument("--model-file", type=Path, help="default: the shipped texscribe/weights/digits.pt")
    p.add_argument("--json", type=Path, help="also write accuracy, confusion matrix and errors here")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify digit images (photos, scans, either polarity)")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model-file", type=Path, help="default: the shipped texscribe/weights/digits.pt")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.set_defaults(func=_predict)

    p = sub.add_parser("study", help="compare architectures and optimizer × learning rate; table + plots")
    p.add_argument("--quick", action="store_true", help="small subset, few epochs (CI-sized, ~1 min)")
    p.add_argument(
        "--out", type=Path, default=Path("docs/digits"), help="folder for results.md/.csv and plots"
    )
    p.add_argument("--epochs", type=int, help="per-run epoch budget")
    p.add_argument("--patience", type=int)
    p.add_argument("--max-minutes", type=float, help="per-run wall-clock training budget")
    p.add_argument("--train-limit", type=int, help="training images per run (default: all)")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="architectures to include (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_study)


def _train(args: argparse.Namespace) -> int:
    from texscribe.digits.data import load_mnist
    from texscribe.digits.inference import save_digit_model
    from texscribe.digits.train import confusion_matrix, evaluate_digit_model, recipe, train_digit_model

    set_torch_threads(args.threads, "--threads")
    settings = recipe(
        args.model,
        epochs=args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        schedule=args.schedule,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
    )
    if args.max_minutes == 0:
        settings = dataclasses.replace(settings, max_minutes=None)
    data = load_mnist(val_size=args.val_size, train_limit=args.train_limit)
    print(f"data: {data.describe()}")
    result = train_digit_model(data, settings)
    test_loss, test_acc, pred = evaluate_digit_model(result.model, data.test_x, data.test_y)
    errors = int((pred != data.test_y).sum())
    out = args.out or Path("runs/digits") / f"{args.model}.pt"
    meta = {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "test_errors": errors,
        "confusion": confusion_matrix(pred, data.test_y).tolist(),
        "command": _train_command(args, out),
        "data": data.describe(),
        "threads": args.threads,
        **result.summary(),
    }
    save_digit_model(out, args.model, result.model, meta)
    print(
        f"{args.model}: test accuracy {100 * test_acc:.2f}% ({errors} errors / {len(pred)}), best val "
        f"{100 * result.best_val_acc:.2f}% at epoch {result.best_epoch}, trained {result.seconds / 60:.1f} min"
    )
    print(f"wrote {out}")
    return 0


def _train_command(args: argparse.Namespace, out: Path) -> str:
    """The equivalent command line of this training run (recorded in the model file)."""
    parts = ["texscribe", "digits", "train", "--model", args.model]
    for name in (
        "epochs",
        "optimizer",
        "lr",
        "batch_size",
        "schedule",
        "patience",
        "max_minutes",
        "train_limit",
        "seed",
    ):
        value = getattr(args, name)
        if value is not None:
            parts += ["--" + name.replace("_", "-"), str(value)]
    if args.val_size != 5000:
        parts += ["--val-size", str(args.val_size)]
    if args.threads != 2:
        parts += ["--threads", str(args.threads)]
    return shlex.join([*parts, "--out", str(out)])


def _evaluate(args: argparse.Namespace) -> int:
    from texscribe.digits.data import load_test_set
    from texscribe.digits.inference import read_digit_model, shipped_model_path
    from texscribe.digits.train import confusion_matrix, evaluate_digit_model

    set_torch_threads(args.threads, "--threads")
    path = args.model_file or shipped_model_path()
    model, meta = read_digit_model(path)
    images, labels = load_test_set()
    loss, acc, pred = evaluate_digit_model(model, images, labels)
    cm = confusion_matrix(pred, labels)
    print(
        f"{path} ({meta['arch']}): test accuracy {100 * acc:.2f}% ({int((pred != labels).sum())} errors / {len(labels)}), loss {loss:.4f}"
    )
    print(format_confusion(cm.tolist()))
    if args.json:
        wrong = (pred != labels).nonzero().flatten().tolist()
        report = {
            "model_file": str(path),
            "arch": meta["arch"],
            "test_acc": acc,
            "test_loss": loss,
            "confusion": cm.tolist(),
            "errors": [{"index": i, "label": int(labels[i]), "pred": int(pred[i])} for i in wrong],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def format_confusion(cm: list[list[int]]) -> str:
    """Confusion matrix as text: rows = true digit, columns = predicted digit."""
    lines = ["true\\pred " + " ".join(f"{d:>5}" for d in range(len(cm)))]
    lines += [f"{t:>9} " + " ".join(f"{v:>5}" for v in row) for t, row in enumerate(cm)]
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from texscribe.digits.inference import load_digit_model
    from texscribe.errors import TexscribeError

    classifier = load_digit_model(args.model_file)
    failed = 0
    for path in args.images:
        try:
            pred = classifier.predict(path)
        except TexscribeError as exc:  # one bad file does not stop the others
            failed += 1
            print(f"{path}: skipped: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(pred.to_dict()))
        else:
            print(f"{path}: {pred.digit} (p={pred.probability:.3f})")
    return 1 if failed else 0


def _study(args: argparse.Namespace) -> int:
    from texscribe.digits.study import StudyBudget, run_study

    set_torch_threads(args.threads, "--threads")
    budget = StudyBudget.quick() if args.quick else StudyBudget()
    for field in ("epochs", "patience", "max_minutes", "train_limit"):
        if getattr(args, field) is not None:
            setattr(budget, field, getattr(args, field))
    rows = run_study(args.out, budget, models=args.models)
    best = max(rows, key=lambda r: r["test_acc"])
    print(f"{len(rows)} runs; best {best['run']}: test accuracy {100 * best['test_acc']:.2f}%")
    print(f"wrote {args.out}/results.md, results.csv, history.json, curves_*.png")
    return 0
