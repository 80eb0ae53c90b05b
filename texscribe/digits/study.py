"""The digits study: every architecture, then the optimizer × learning-rate grid, under one budget.

Each run trains with early stopping on the validation split, is scored on the test set with its
best-validation weights, and lands in a results table (Markdown + CSV, budget stated in the header)
and in loss/accuracy curve plots (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from texscribe.digits.data import MnistSplits, load_mnist
from texscribe.digits.models import MODELS, build_digit_model, count_parameters, multiply_adds
from texscribe.digits.train import (
    DigitTrainResult,
    DigitTrainSettings,
    evaluate_digit_model,
    recipe,
    train_digit_model,
)
from texscribe.evaluation.plots import plot_digit_curves

log = logging.getLogger(__name__)

GRID_MODEL = "cnn"  # the grid varies the optimizer of the course CNN
GRID_OPTIMIZERS = ("sgd", "adam")
GRID_LRS = (0.001, 0.01, 0.1)


@dataclass
class StudyBudget:
    """What every run gets: at most `epochs` epochs and `max_minutes` of wall-clock training, whichever
    ends first. `train_limit`/`val_size`/`test_limit` shrink the data (None = all)."""

    epochs: int = 3
    patience: int = 1
    max_minutes: float | None = 3.0
    train_limit: int | None = 10_000
    val_size: int = 5_000
    test_limit: int | None = None

    @classmethod
    def quick(cls) -> StudyBudget:
        """Small enough for CI (about a minute on two cores), big enough to produce every file."""
        return cls(epochs=2, patience=1, max_minutes=0.25, train_limit=1_000, val_size=500, test_limit=1_000)

    def describe(self, n_train: int, n_val: int, n_test: int) -> str:
        limit = f" or {self.max_minutes:g} min of training" if self.max_minutes is not None else ""
        return (
            f"at most {self.epochs} epochs{limit} per run (whichever ends first) on {n_train:,} training images, early stopping "
            f"(patience {self.patience}) on {n_val:,} validation images, scored on {n_test:,} MNIST test images"
        )


def plan(budget: StudyBudget, models: list[str] | None = None) -> list[tuple[str, DigitTrainSettings]]:
    """(run name, settings) for each architecture with its own recipe, then the grid on `GRID_MODEL`.

    Grid cells equal to an architecture run (same model, optimizer and lr) are not run twice.
    """

    def fit(settings: DigitTrainSettings) -> DigitTrainSettings:
        return replace(
            settings, epochs=budget.epochs, patience=budget.patience, max_minutes=budget.max_minutes
        )

    runs = [(name, fit(recipe(name))) for name in (models or list(MODELS))]
    for opt in GRID_OPTIMIZERS:
        for lr in GRID_LRS:
            settings = fit(recipe(GRID_MODEL, optimizer=opt, lr=lr))
            if not any(s == settings for _, s in runs):
                runs.append((f"{GRID_MODEL}-{opt}-{lr:g}", settings))
    return runs


def run_study(
    out_dir: str | Path, budget: StudyBudget | None = None, models: list[str] | None = None
) -> list[dict[str, object]]:
    """Run the study and write results.md, results.csv, history.json and the curve plots into `out_dir`."""
    budget = budget or StudyBudget()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist(val_size=budget.val_size, train_limit=budget.train_limit)
    if budget.test_limit is not None:
        data = replace(data, test_x=data.test_x[: budget.test_limit], test_y=data.test_y[: budget.test_limit])
    runs = plan(budget, models)
    rows, histories = [], {}
    start = time.perf_counter()
    for i, (name, settings) in enumerate(runs, 1):
        log.info("study run %d/%d: %s", i, len(runs), name)
        result = train_digit_model(data, settings)
        rows.append(_row(name, result, data))
        histories[name] = result.summary()
        # write after every run, so an interrupted study still leaves its table
        _write_tables(out, rows, budget, data, time.perf_counter() - start)
    (out / "history.json").write_text(json.dumps(histories, indent=1), encoding="utf-8")
    grid_names = {n for n, s in runs if s.model == GRID_MODEL}
    plot_digit_curves(
        histories, [n for n, _ in runs if n in MODELS], out / "curves_architectures.png", "Architectures"
    )
    plot_digit_curves(
        histories,
        [n for n, _ in runs if n in grid_names],
        out / "curves_optimizers.png",
        "Course CNN: optimizer × learning rate",
    )
    return rows


def _row(name: str, result: DigitTrainResult, data: MnistSplits) -> dict[str, object]:
    s = result.settings
    test_loss, test_acc, _ = evaluate_digit_model(result.model, data.test_x, data.test_y)
    model = build_digit_model(s.model)
    return {
        "run": name,
        "model": s.model,
        "optimizer": s.optimizer,
        "lr": s.lr,
        "schedule": s.schedule,
        "augment": s.augment is not None,
        "params": count_parameters(model),
        "mmac": round(multiply_adds(model) / 1e6, 2),
        "epochs_run": round(result.steps * s.batch_size / len(data.train_y), 2),
        "best_epoch": result.best_epoch,
        "early_stop": result.stopped_early,
        "val_acc": round(result.best_val_acc, 4),
        "test_acc": round(test_acc, 4),
        "test_loss": round(test_loss, 4),
        "train_s": round(result.seconds, 1),
        "img_per_s": round(result.steps * s.batch_size / max(result.seconds, 1e-9)),
    }


def _write_tables(
    out: Path, rows: list[dict[str, object]], budget: StudyBudget, data: MnistSplits, seconds: float
) -> None:
    columns = list(rows[0])
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    header = budget.describe(len(data.train_y), len(data.val_y), len(data.test_y))
    lines = [
        "# Digits study: architectures and optimizer × learning rate",
        "",
        f"**Budget:** {header}. Total wall time {seconds / 60:.1f} min on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, torch {torch.__version__}, {_threads()}; bf16 autocast for training where the "
        "CPU has it, fp32 for evaluation).",
        "",
        "Each architecture uses its default recipe (`texscribe.digits.train.RECIPES`); the grid trains the "
        f"course CNN (`{GRID_MODEL}`) with each optimizer and learning rate, constant learning rate. "
        "Accuracies are of the best-validation epoch's weights; `epochs_run` counts training images seen / "
        "training-set size.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _threads() -> str:
    n = torch.get_num_threads()
    return "1 thread" if n == 1 else f"1 or {n} threads, whichever trained faster at the time"


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
