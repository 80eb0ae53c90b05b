"""k-means size buckets in training (`data.size_buckets`): the model-input size computed from a manifest
agrees with `fit_height`, every training batch is padded into one of the learned shapes within the pixel
budget with an exact padding mask, and real bf16-mixed CPU training runs (with and without mean teacher)
on bucketed batches export a model that loads and predicts."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from test_architectures import synthetic_prepared
from test_batching import make_prepared, random_sizes

from texscribe.config import load_config
from texscribe.data.batching import (
    PAD_MULTIPLE,
    SizeBucketBatchSampler,
    kmeans_buckets,
    pad_batch,
    padded_area,
    padded_shape,
)
from texscribe.images import fit_height, fitted_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fitted_size_agrees_with_fit_height() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = int(rng.integers(1, 400)), int(rng.integers(1, 2500))
        min_h = int(rng.integers(1, 64))
        kwargs = dict(
            min_height=min_h,
            max_height=int(rng.integers(min_h, 300)),
            max_width=int(rng.integers(1, 1500)),
            scale=float(rng.choice([0.25, 0.5, 1.0, 1.7, rng.uniform(0.1, 3.0)])),
        )
        out = fit_height(np.zeros((h, w), np.float32), **kwargs)
        assert fitted_size(h, w, **kwargs) == out.shape, (h, w, kwargs)
    with pytest.raises(ValueError, match="at least 1x1"):
        fitted_size(0, 10, min_height=1, max_height=10, max_width=10)


def test_pad_batch_into_buckets_and_fallback() -> None:
    buckets = [(32, 64), (32, 128), (64, 96)]  # (h, w)
    imgs = [np.ones((20, 50), np.float32), np.ones((30, 70), np.float32)]
    batch, mask = pad_batch(imgs, buckets=buckets)
    assert tuple(batch.shape) == (2, 1, 32, 128)  # 70 wide: (32, 128) is smaller than (64, 96)
    for i, im in enumerate(imgs):
        h, w = im.shape
        assert not mask[i, :h, :w].any() and int(mask[i].sum()) == 32 * 128 - h * w
        assert float(batch[i, 0][mask[i]].abs().sum()) == 0.0
    assert padded_shape(40, 90, PAD_MULTIPLE, buckets) == (64, 96)
    # larger than every bucket (e.g. a validation image): plain pad_batch padding
    assert tuple(pad_batch([np.ones((70, 20), np.float32)], buckets=buckets)[0].shape) == (1, 1, 80, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        padded_shape(10, 10, 16, [(16, 24)])


def test_a_few_tall_images_do_not_make_every_bucket_tall() -> None:
    """CROHME-like sizes: heights 20-60 with 3 % at the 96 px cap, widths 10-512. Clustering raw pixels let
    the wide-ranging width decide every cluster, so each cluster caught a tall image and every bucket was
    96 high; per-side scaling and restarts keep short buckets for the short majority."""
    rng = np.random.default_rng(0)
    n = 3000
    heights = np.where(rng.random(n) < 0.03, 96, rng.integers(20, 60, n))
    sizes = [(int(h), int(w)) for h, w in zip(heights, rng.integers(10, 512, n))]
    buckets = kmeans_buckets(sizes, 8, seed=7, multiple=PAD_MULTIPLE)
    assert all(any(h <= bh and w <= bw for bh, bw in buckets) for h, w in sizes)
    assert sum(bh < 96 for bh, _ in buckets) >= 4
    padded = sum(padded_area([sz], buckets) for sz in sizes) / sum(h * w for h, w in sizes)
    assert padded < 1.8


def test_sampler_budget_counts_the_bucket() -> None:
    sizes = random_sizes(600, seed=4)
    buckets = kmeans_buckets(sizes, 5, multiple=PAD_MULTIPLE)
    sampler = SizeBucketBatchSampler(sizes, 120_000, 32, seed=1, buckets=buckets)
    plain = SizeBucketBatchSampler(sizes, 120_000, 32, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
        for b in batches:
            h, w = padded_shape(*np.max([sizes[i] for i in b], axis=0), PAD_MULTIPLE, buckets)
            assert (h, w) in buckets
            assert len(b) * h * w == padded_area([sizes[i] for i in b], buckets)
            assert len(b) * h * w <= 120_000 or len(b) == 1
    # the bucket rounds batches up, so the same budget holds fewer images per batch
    assert len(sampler) >= len(plain)


def test_training_batches_are_bucketed_masked_and_within_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from texscribe.data.datamodule import LatexDataModule

    prepared = make_prepared(tmp_path / "prep", n=40)
    cfg = load_config(
        "tiny",
        [
            f"data.train=[{prepared}]", f"data.val={prepared}", "data.size_buckets=3",
            "data.batch_max_size=6", "data.batch_max_pixels=150000", "data.max_label_len=50",
            "data.augment={scale: {p: 1.0, range: [0.7, 1.3]}, rotate: {p: 0.5, degrees: 3}}",
        ],
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="texscribe.data.datamodule"):
        dm = LatexDataModule(cfg)
        loader = dm.train_dataloader()
    buckets = dm.size_buckets
    assert 1 <= len(buckets) <= 3 and all(h % 16 == 0 and w % 16 == 0 for h, w in buckets)
    assert f"size buckets (k=3): {' '.join(f'{w}x{h}' for h, w in buckets)}" in caplog.text
    assert dm.val_dataloader().collate_fn.buckets == buckets
    data, sampler = dm.train_data, loader.batch_sampler
    assert all(any(h <= bh and w <= bw for bh, bw in buckets) for h, w in data.sizes)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for indices in sampler.batches():
            items = [data[i] for i in indices]
            batch = loader.collate_fn(items)
            b, _, h, w = batch.images.shape
            assert (h, w) in buckets and b == len(indices)
            assert b * h * w <= cfg.data.batch_max_pixels
            for i, item in enumerate(items):
                ih, iw = item.image.shape
                real = torch.zeros(h, w, dtype=torch.bool)
                real[:ih, :iw] = True
                assert torch.equal(~batch.pixel_mask[i], real)
                assert torch.equal(batch.images[i, 0, :ih, :iw], torch.from_numpy(item.image))
                assert float(batch.images[i, 0][batch.pixel_mask[i]].abs().sum()) == 0.0
    shapes = {tuple(batch.images.shape[2:]) for batch in loader}  # the real DataLoader path
    assert shapes <= set(buckets)


class RecordShapes(L.Callback):
    """The learned buckets, the precision, every supervised batch's (H, W) and the dtypes of the
    decoder's training logits (bf16 under bf16-mixed autocast)."""

    def __init__(self) -> None:
        self.shapes: set[tuple[int, int]] = set()
        self.buckets: list[tuple[int, int]] = []
        self.precision = ""
        self.logit_dtypes: set[torch.dtype] = set()

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.buckets, self.precision = trainer.datamodule.size_buckets, str(trainer.precision)
        pl_module.model.decoder.register_forward_hook(self._logits)

    def _logits(self, module, args, output) -> None:  # noqa: ANN001
        if module.training and isinstance(output, torch.Tensor):
            self.logit_dtypes.add(output.dtype)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.shapes.add(tuple(batch.images.shape[2:]))


@pytest.mark.parametrize("mean_teacher", [False, True], ids=["plain", "mean_teacher"])
def test_bf16_mixed_training_on_buckets_exports_a_working_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mean_teacher: bool
) -> None:
    import texscribe
    from texscribe.training import mean_teacher as mt_module
    from texscribe.training import train

    consistency_shapes: set[tuple[int, int]] = set()
    original = mt_module.consistency_loss

    def spy(student, teacher, view_s, view_t, max_len):  # noqa: ANN001, ANN202
        consistency_shapes.update({tuple(view_s.images.shape[2:]), tuple(view_t.images.shape[2:])})
        return original(student, teacher, view_s, view_t, max_len)

    monkeypatch.setattr(mt_module, "consistency_loss", spy)
    data = synthetic_prepared(tmp_path / "data", n=12)
    overrides = [
        f"data.train=[{data}]", f"data.val={data}", f"train.out_dir={tmp_path / 'runs'}",
        "data.size_buckets=2", "train.precision=bf16-mixed", "train.max_steps=2", "train.max_epochs=5",
        "data.img_max_height=48", "data.img_max_width=160", "data.batch_max_size=4",
        "data.batch_max_pixels=40000", "optim.warmup_steps=1", "train.val_limit=4",
        "train.progress_bar=false", "train.log_every_n_steps=1", "train.checkpoint_every_minutes=null",
        f"train.mean_teacher.enabled={str(mean_teacher).lower()}", "train.mean_teacher.batch_size=3",
        "train.mean_teacher.max_len=5", "train.mean_teacher.rampup_steps=1",
        "train.mean_teacher.ema_decay=0.5",
    ]  # fmt: skip
    record = RecordShapes()
    result = train(load_config("tiny", overrides), resume="never", callbacks=[record])
    assert result.global_step == 2 and result.model_file is not None
    assert record.precision == "bf16-mixed" and 1 <= len(record.buckets) <= 2
    assert record.logit_dtypes == {torch.bfloat16}  # really trained under bf16 autocast
    allowed = set(record.buckets)
    assert record.shapes and record.shapes <= allowed
    if mean_teacher:
        assert consistency_shapes and consistency_shapes <= allowed
    rec = texscribe.load_model(str(result.model_file), num_threads=1)
    img = np.zeros((40, 120), np.float32)
    img[10:30:4, 10:110] = 1.0
    pred = rec.predict(img, max_len=6)
    assert isinstance(pred.latex, str) and len(pred.tokens) <= 6
