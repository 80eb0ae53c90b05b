"""Fine-tuning: a tiny model meets chemistry tokens it never saw; the vocabulary grows by exactly those
tokens (old ids and rows kept), a few real training steps run, the result loads and predicts, and the
before/after report is written (one shared real run, marked slow). Also
vocabulary growth on the untied RNN decoder and bad input (fast)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texscribe.config import load_config
from texscribe.errors import InputError, ModelLoadError
from texscribe.latex import Vocab, parse_label

# The tiny model's whole vocabulary: plain algebra, no capital letters, no chemistry arrows.
BASE_TOKENS = list("0123456789+-=()xyabn^_{}") + ["\\rightarrow", "\\frac"]
# Every new token (O, K, C, H, N, S, Z, \rightleftharpoons, \uparrow, ...) appears in several formulas.
CHEM = [
    r"H_{2}O", r"2H_{2}+O_{2}\rightarrow2H_{2}O", r"K^{+}+OH^{-}\rightarrow KOH", r"KOH",
    r"N_{2}+3H_{2}\rightleftharpoons2NH_{3}", r"NH_{3}+H_{2}O\rightleftharpoons NH_{4}^{+}+OH^{-}",
    r"CO_{2}", r"CaCO_{3}\rightarrow CaO+CO_{2}\uparrow", r"H_{2}SO_{4}", r"SO_{4}^{2-}",
    r"Zn+2HCl\rightarrow ZnCl_{2}+H_{2}\uparrow", r"ZnO", r"KCl", r"NaCl", r"Na^{+}+Cl^{-}\rightarrow NaCl",
    r"CH_{4}+2O_{2}\rightarrow CO_{2}+2H_{2}O", r"HCl", r"H_{2}CO_{3}\rightleftharpoons H^{+}+HCO_{3}^{-}",
    r"N_{2}O_{4}\rightleftharpoons2NO_{2}", r"Ca^{2+}+CO_{3}^{2-}\rightarrow CaCO_{3}",
]  # fmt: skip
MATH = [r"x+1=2", r"y^{2}", r"a_{n}=n+1", r"\frac{x}{2}", r"(x+y)^{2}", r"2x-3=y", r"b_{1}+b_{2}", r"x^{3}-1"]
MORE_MATH = [r"x-y", r"n^{2}+1", r"a+b=3", r"\frac{1}{x}"]  # a second --replay folder, pooled with MATH
SAMPLE = 30  # --sample: new training records kept of the ~34 the split leaves
SMALL = [
    "data.img_max_height=32",
    "data.img_max_width=160",
    "data.batch_max_size=8",
    "data.batch_max_pixels=40000",
    "data.augment={}",
    "train.log_every_n_steps=1",
]


def write_label_folder(root: Path, formulas: list[str], variants: int = 1) -> Path:
    """Images rendered with the project's mathtext renderer + same-named .txt labels (raw LaTeX)."""
    from texscribe.render.mathtext import render_mathtext
    from texscribe.render.style import RenderStyle

    root.mkdir(parents=True)
    for i, latex in enumerate(formulas):
        for v in range(variants):
            img = render_mathtext(latex, RenderStyle(font=("cm", "times")[v % 2], size=10, dpi=100 + 20 * v))
            assert isinstance(img, np.ndarray), img
            Image.fromarray(img).save(root / f"f{i:02d}_{v}.png")
            (root / f"f{i:02d}_{v}.txt").write_text(latex + "\n", encoding="utf-8")
    return root


def tiny_model_file(path: Path, decoder: str = "transformer") -> Path:
    from texscribe.checkpoint import save_model_file
    from texscribe.models.registry import build_model

    overrides = [*SMALL]
    if decoder != "transformer":
        overrides.append("model.decoder={name: rnn_attention, hidden_dim: 32, embed_dim: 16, attn_dim: 16}")
    config = load_config("tiny", overrides)
    vocab = Vocab(BASE_TOKENS)
    torch.manual_seed(0)
    model = build_model(config.model, len(vocab))
    return save_model_file(path, config, vocab, model.state_dict(), {"note": "test fixture"})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real fine-tuning run through the CLI: label folder in, replay + extra eval set, frozen encoder."""
    from texscribe.cli import main
    from texscribe.data.prepare import prepare

    root = tmp_path_factory.mktemp("ft")
    chem = write_label_folder(root / "chem_labels", CHEM, variants=2)
    math_prepared = root / "math_prepared"
    prepare([str(write_label_folder(root / "math_labels", MATH))], math_prepared, workers=1, progress=False)
    more_math = root / "more_math_prepared"
    prepare([str(write_label_folder(root / "more_labels", MORE_MATH))], more_math, workers=1, progress=False)
    base = tiny_model_file(root / "base.pt")
    out = root / "run"
    argv = ["finetune", "--from", str(base), "--data", str(chem), "--out", str(out), "--epochs", "1",
            "--replay", str(math_prepared), "--replay", str(more_math), "--replay-fraction", "0.25",
            "--sample", str(SAMPLE), "--eval", str(math_prepared),
            "--freeze-encoder", "--lr", "1e-3", "--warmup-steps", "2", "--held-out-fraction", "0.15",
            "--max-len", "24", "--no-progress", "train.max_steps=4"]  # fmt: skip
    assert main(argv) == 0
    return {"root": root, "base": base, "out": out, "chem": chem, "replay_dirs": (math_prepared, more_math)}


@pytest.mark.slow
def test_vocabulary_grows_by_exactly_the_new_tokens(tuned: dict) -> None:
    from texscribe.checkpoint import read_model_file

    base = read_model_file(tuned["base"])
    start = read_model_file(tuned["out"] / "start.pt")
    tuned_model = read_model_file(tuned["out"] / "train" / "model.pt")
    new_tokens = {t for f in CHEM for t in parse_label(f)} - set(BASE_TOKENS)
    assert {"O", "K", "\\rightleftharpoons", "\\uparrow"} <= new_tokens
    added = start.vocab.itos[len(base.vocab) :]
    assert set(added) == new_tokens and len(added) == len(new_tokens)
    assert start.vocab.itos[: len(base.vocab)] == base.vocab.itos  # old tokens keep their ids
    assert tuned_model.vocab.itos == start.vocab.itos
    report = json.loads((tuned["out"] / "finetune_report.json").read_text(encoding="utf-8"))
    assert report["added_tokens"] == added
    assert report["vocab"] == {"before": len(base.vocab), "after": len(start.vocab)}
    # Old rows copied exactly before training; new rows exist (tied model: embedding + output bias).
    n_old = len(base.vocab)
    for key in ("decoder.embedding.weight", "decoder.out_bias"):
        assert start.state_dict[key].shape[0] == len(start.vocab)
        assert torch.equal(start.state_dict[key][:n_old], base.state_dict[key])
    assert "decoder.out_proj.weight" not in start.state_dict  # still tied


@pytest.mark.slow
def test_training_ran_with_frozen_encoder_and_result_predicts(tuned: dict) -> None:
    from texscribe import load_model
    from texscribe.checkpoint import read_model_file

    start = read_model_file(tuned["out"] / "start.pt").state_dict
    final = read_model_file(tuned["out"] / "train" / "model.pt")
    assert final.meta["global_step"] == 4
    assert not torch.equal(final.state_dict["decoder.embedding.weight"], start["decoder.embedding.weight"])
    encoder = [k for k in start if k.startswith("encoder.")]
    assert encoder and all(torch.equal(final.state_dict[k], start[k]) for k in encoder)  # frozen, BN too
    rec = load_model(tuned["out"] / "train" / "model.pt")
    pred = rec.predict(next(tuned["chem"].glob("*.png")), max_len=24)
    assert isinstance(pred.latex, str) and 0.0 <= pred.score <= 1.0
    assert all(t in rec.vocab for t in pred.tokens)


@pytest.mark.slow
def test_split_replay_and_report(tuned: dict) -> None:
    from texscribe.data.prepared import PreparedDataset

    data = tuned["out"] / "data"
    train, held = PreparedDataset.open(data / "train"), PreparedDataset.open(data / "held_out")
    train_f = {tuple(r.tokens) for r in train.records}
    held_f = {tuple(r.tokens) for r in held.records}
    assert held_f and not train_f & held_f  # split by formula: both renderings on one side
    report = json.loads((tuned["out"] / "finetune_report.json").read_text(encoding="utf-8"))
    assert len(train) == SAMPLE < report["data"]["sampled_from"]  # --sample draws from the split's train side
    assert report["data"]["sampled_from"] + len(held) == 2 * len(CHEM)
    assert all(r.image_path.is_file() for r in train.records + held.records)
    replay = PreparedDataset.open(data / "replay")
    assert len(replay) == round(SAMPLE * 0.25 / 0.75) > len(MATH)  # more than one folder holds: pooled
    folders = {r.image_path.parent.parent.resolve() for r in replay.records}
    assert folders == {d.resolve() for d in tuned["replay_dirs"]}
    assert set(report["scores"]) == {"held_out", "math_prepared"}
    for name, pair in report["scores"].items():
        assert pair["before"]["n"] == pair["after"]["n"] > 0, name
        assert 0.0 <= pair["after"]["edit_score"] <= 1.0
        assert (tuned["out"] / "eval" / "before" / name / "predictions.tsv").is_file()
    assert report["data"]["train"] == len(train) and report["data"]["replay"] == len(replay)
    assert report["training"]["steps"] == 4 and report["training"]["cpu_seconds"] > 0
    assert 0 < report["training"]["images_seen"] <= len(train) + len(replay)  # 4 steps < 1 epoch
    md = (tuned["out"] / "finetune_report.md").read_text(encoding="utf-8")
    assert "| held_out |" in md and "ExpRate" in md and "\\rightleftharpoons" in md
    assert f"a seeded sample of {report['data']['sampled_from']}" in md
    assert all(f"`{d}`" in md for d in tuned["replay_dirs"])  # every pooled folder named, not a list repr


def test_grow_vocab_untied_rnn_decoder(tmp_path: Path) -> None:
    from texscribe.checkpoint import read_model_file
    from texscribe.models.registry import build_model
    from texscribe.models.vocab_growth import grow_vocab

    mf = read_model_file(tiny_model_file(tmp_path / "rnn.pt", decoder="rnn_attention"))
    model = build_model(mf.config.model, len(mf.vocab))
    model.load_state_dict({k: v.float() for k, v in mf.state_dict.items()})
    old = {k: v.clone() for k, v in model.state_dict().items()}
    grown = grow_vocab(model, len(mf.vocab) + 3)
    assert set(grown) == {"decoder.embedding.weight", "decoder.out.weight", "decoder.out.bias"}
    fresh = build_model(mf.config.model, len(mf.vocab) + 3)
    fresh.load_state_dict(model.state_dict(), strict=True)  # exactly the shapes a bigger vocab builds
    for key in grown:
        assert torch.equal(model.state_dict()[key][: len(mf.vocab)], old[key])
    model.eval()
    memory = model.encode(torch.rand(1, 1, 32, 64), torch.zeros(1, 32, 64, dtype=torch.bool))
    logits, _ = model.decoder.step(memory, torch.tensor([1]), model.decoder.init_cache(memory))
    assert logits.shape == (1, len(mf.vocab) + 3)


def test_bad_inputs(tmp_path: Path) -> None:
    from texscribe.training.finetune import FinetuneSettings, finetune

    chem = write_label_folder(tmp_path / "chem", CHEM[:3])
    with pytest.raises(ModelLoadError, match="no model named"):
        finetune(
            FinetuneSettings(base=str(tmp_path / "missing.pt"), data=[str(chem)], out=str(tmp_path / "o"))
        )
    base = tiny_model_file(tmp_path / "base.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        finetune(FinetuneSettings(base=str(base), data=[str(tmp_path / "empty")], out=str(tmp_path / "o2")))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "a.txt").write_text("H_{2}O", encoding="utf-8")
    (lonely / "b.png").write_bytes((chem / "f00_0.png").read_bytes())
    with pytest.raises(InputError, match="no usable image"):
        finetune(FinetuneSettings(base=str(base), data=[str(lonely)], out=str(tmp_path / "o3")))


def test_finetune_config_is_the_base_config_with_the_recipe_then_overrides(tmp_path: Path) -> None:
    """lr, warmup and seed have one home: the config keys `RECIPE` sets and overrides change (the CLI flags
    are overrides of them); the rest of the base model's optimizer settings stay."""
    from texscribe.commands.finetune import _flag_overrides
    from texscribe.errors import ConfigError
    from texscribe.training.finetune import FinetuneSettings, finetune_config

    base = load_config(
        "tiny", ["optim.lr=1e-3", "optim.warmup_steps=500", "optim.weight_decay=0.05", "train.seed=1"]
    )
    config = finetune_config(base, FinetuneSettings(base="b.pt", data=["d"], replay=["r"]), tmp_path)
    assert (config.optim.lr, config.optim.warmup_steps, config.train.seed) == (3e-4, 30, 7)
    assert config.optim.weight_decay == 0.05 and config.model == base.model
    assert config.data.train == [str(tmp_path / "data" / "train"), str(tmp_path / "data" / "replay")]
    flags = _flag_overrides(argparse.Namespace(lr=1e-5, warmup_steps=None, seed=3))
    assert flags == ["optim.lr=1e-05", "train.seed=3"]
    tuned = FinetuneSettings(base="b.pt", data=["d"], overrides=[*flags, "optim.lr=2e-4"])
    config = finetune_config(base, tuned, tmp_path)
    assert (config.optim.lr, config.optim.warmup_steps, config.train.seed) == (2e-4, 30, 3)
    assert config.data.train == [str(tmp_path / "data" / "train")]
    with pytest.raises(ConfigError, match="optim.lr"):
        finetune_config(base, FinetuneSettings(base="b.pt", data=["d"], overrides=["optim.lr=-1"]), tmp_path)
