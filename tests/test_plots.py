"""texscribe.evaluation.plots: every PNG plot has one home; each writes its file from plain inputs."""

from __future__ import annotations

from pathlib import Path

from texscribe.evaluation.plots import (
    plot_accuracy_by_length,
    plot_accuracy_per_hour,
    plot_digit_curves,
    plot_training_curves,
    read_metrics,
)


def _lightning_csv(path: Path) -> Path:
    """A Lightning CSVLogger file: a step column, sparse metric columns (empty where not logged)."""
    rows = ["epoch,step,train/loss_step,val/loss,val/exprate,lr-Adam", "0,0,3.0,,,0.001", "0,1,2.5,,,0.001",
            "0,1,,2.7,0.1,"]  # fmt: skip
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_training_curves_from_csv_logs(tmp_path: Path) -> None:
    csv = _lightning_csv(tmp_path / "metrics.csv")
    series = read_metrics([csv])
    assert series["train/loss_step"] == [(0, 3.0), (1, 2.5)] and series["val/exprate"] == [(1, 0.1)]
    written = plot_training_curves([csv], tmp_path / "curves")
    assert {p.name for p in written} == {"loss.png", "exprate.png", "lr.png"}
    assert all(p.stat().st_size > 1000 for p in written)


def test_accuracy_by_length_and_digit_curves(tmp_path: Path) -> None:
    groups = {"1-5": {"n": 3, "exp_rate": 0.5, "le1": 0.6, "le2": 0.7}}
    plot_accuracy_by_length(
        groups, tmp_path / "plots" / "by_length.png", [("exp_rate", "ExpRate"), ("le1", "≤1")]
    )
    assert (tmp_path / "plots" / "by_length.png").stat().st_size > 1000
    run = {
        "trace": [(0.5, 1.0, 0.6)],
        "history": [{"epochs_done": 1.0, "val_loss": 0.5, "val_acc": 0.9}],
        "settings": {"label_smoothing": 0.1},
    }
    plot_digit_curves({"mlp": run}, ["mlp"], tmp_path / "digits.png", "title")
    assert (tmp_path / "digits.png").stat().st_size > 1000


def test_accuracy_per_hour_curves(tmp_path: Path) -> None:
    curves = {"base bf16": [(0.25, 0.05), (0.5, 0.2)], "small fp32": [(0.5, 0.1)]}
    path = plot_accuracy_per_hour(curves, tmp_path / "curve.png", "crohme_2014, greedy", target=0.3)
    assert path.stat().st_size > 1000
