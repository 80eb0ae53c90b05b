"""`texscribe evaluate` on a small prepared fixture with a tiny untrained model: outputs and recompute agreement."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from texscribe.checkpoint import save_model_file
from texscribe.cli import main
from texscribe.config import load_config
from texscribe.data.prepared import PreparedRecord, write_prepared_manifest
from texscribe.evaluation import read_predictions, recompute
from texscribe.evaluation.breakdown import by_length, by_structure, length_bucket
from texscribe.evaluation.evaluate import Row, write_predictions
from texscribe.images import save_png
from texscribe.latex import Vocab
from texscribe.metrics import compute_all

LABELS = {
    "a/1": "x ^ { 2 } + 1",
    "b 2": "\\frac { 1 } { 2 }",
    "c3": "\\sqrt { x } = y",
    "d4": "\\sum _ { i } x _ { i }",
    "e5": "1 + 2 + x + y + 1 + 2 + x + y + 1 + 2 + x + y",
    "f6": "x | y",
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared-dataset folder (manifest.tsv, images/, vocab.json) with synthetic ink-bright images."""
    root = tmp_path_factory.mktemp("prepared")
    records = []
    for i, (sample_id, label) in enumerate(LABELS.items()):
        img = np.zeros((40, 80 + 20 * i), np.uint8)
        cv2.putText(img, label[:6].replace(" ", ""), (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
        path = root / "images" / f"img{i}.png"
        save_png(img.astype(np.float32) / 255, path)
        records.append(PreparedRecord(sample_id, path, label.split(), "fixture", *img.shape))
    records.append(PreparedRecord("gone", root / "images" / "gone.png", ["x"], "fixture", 10, 10))
    write_prepared_manifest(root, records)
    Vocab.build(r.tokens for r in records).save(root / "vocab.json")
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    cfg = load_config("tiny")
    vocab = Vocab(sorted({t for label in LABELS.values() for t in label.split()}))
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_model_file(path, cfg, vocab, build_model_state(cfg, len(vocab)))


def build_model_state(cfg, vocab_size):
    from texscribe.models.registry import build_model

    return build_model(cfg.model, vocab_size).state_dict()


def test_evaluate_writes_report_and_recompute_agrees(prepared, model_path, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(model_path), "--data", str(prepared), "--out", str(out),
               "--max-len", "12", "--batch-size", "4", "--no-progress"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ExpRate" in printed and "BLEU-4" in printed and "skipped (unreadable)" in printed

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["n"] == len(LABELS)
    assert summary["skipped"][0]["id"] == "gone"
    recomputed = recompute(out / "predictions.tsv")
    assert recomputed.keys() == summary["metrics"].keys()
    for key, value in summary["metrics"].items():
        assert recomputed[key] == pytest.approx(value, abs=1e-12), key

    rows = read_predictions(out / "predictions.tsv")
    assert [r.id for r in rows] == list(LABELS)  # ids with '/' and spaces survive, order kept
    assert [" ".join(r.ref) for r in rows] == list(LABELS.values())

    report = (out / "report.md").read_text()
    for heading in (
        "## Overall",
        "## By reference length",
        "## By structure",
        "## Worst errors",
        "## Skipped",
    ):
        assert heading in report
    assert "`x\\|y`" in report  # pipes escaped inside the markdown table
    assert (out / "plots" / "accuracy_by_length.png").stat().st_size > 1000
    copied = list((out / "errors").glob("*.png"))
    assert copied and all(p.stat().st_size > 0 for p in copied)
    assert set(summary["by_structure"]) >= {"fraction", "sub/superscript", "root", "sum/integral", "plain"}


def test_evaluate_limit_and_beam(prepared, model_path, tmp_path):
    from texscribe.evaluation import evaluate
    from texscribe.inference import load_model

    result = evaluate(
        load_model(model_path), prepared, tmp_path / "e", beam=2, limit=3, max_len=6, progress=False
    )
    assert len(result.rows) == 3 and not result.skipped
    run = json.loads((tmp_path / "e" / "metrics.json").read_text())["run"]
    assert run["beam"] == 2 and run["reading"]["read_ink_heights"] == []


def test_recompute_on_hand_written_predictions(tmp_path):
    rows = [
        Row("1", ["x", "+", "1"], ["x", "+", "1"], 0.9, 0.8),
        Row(
            "2", ["\\frac", "{", "a", "}", "{", "b", "}"], ["\\frac", "a", "b"], 0.7, 0.2
        ),  # same after normalise
        Row("3", ["y"], ["x"], 0.5, 0.5),
    ]
    path = tmp_path / "predictions.tsv"
    write_predictions(path, rows)
    got = recompute(path)
    assert got["exp_rate"] == pytest.approx(2 / 3) and got["le1"] == 1.0
    assert got == compute_all([r.pred for r in rows], [r.ref for r in rows])
    assert [r.errors for r in read_predictions(path)] == [0, 0, 1]


def test_breakdowns_group_by_length_and_structure():
    refs = [["x"], list("abcdefghijkl"), ["\\frac", "{", "1", "}", "{", "2", "}"], ["x", "^", "{", "2", "}"]]
    preds = [["x"], list("abcdefghijkl"), ["1"], ["x", "^", "{", "2", "}"]]
    lengths = {g.name: g for g in by_length(preds, refs)}
    assert {k: g.n for k, g in lengths.items()} == {"1-5": 2, "6-10": 1, "11-20": 1}
    assert lengths["6-10"].metrics["exp_rate"] == 0.0 and lengths["1-5"].metrics["exp_rate"] == 1.0
    structures = {g.name: g.n for g in by_structure(preds, refs)}
    assert structures == {"fraction": 1, "sub/superscript": 1, "plain": 2}
    assert length_bucket(0) == "empty" and length_bucket(51) == "51+"


def test_bad_data_folder_is_a_clean_error(model_path, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(model_path), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "not a prepared dataset" in capsys.readouterr().err
