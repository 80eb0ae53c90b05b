"""Batching (padding, size order and packing, the size-bucket sampler, collate targets), augmentation and the
resumable train loader (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from texscribe.config import Config, DataConfig, load_config
from texscribe.data.augment import Augmenter, build_augmenter, shrink_keeping_pen
from texscribe.data.batching import (
    PAD_MULTIPLE,
    Item,
    SizeBucketBatchSampler,
    collate,
    kmeans_buckets,
    pad_batch,
    padded_area,
    padded_side,
    size_batches,
    size_order,
    targets,
)
from texscribe.data.prepared import PreparedDataset, PreparedRecord, write_prepared_manifest
from texscribe.errors import ConfigError
from texscribe.images import measure_ink, read_png, save_png
from texscribe.latex import Vocab

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def random_sizes(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(16, 200)), int(rng.integers(16, 900))) for _ in range(n)]


@pytest.mark.parametrize("max_pixels,max_size", [(400_000, 16), (60_000, 8), (20_000, 64)])
def test_no_batch_exceeds_budget_and_every_sample_once(max_pixels: int, max_size: int) -> None:
    sizes = random_sizes(500)
    sampler = SizeBucketBatchSampler(sizes, max_pixels, max_size, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(sizes)))  # every sample exactly once per epoch
        for b in batches:
            assert 1 <= len(b) <= max_size
            if len(b) > 1:
                assert padded_area([sizes[i] for i in b]) <= max_pixels
            else:  # a lone sample may only exceed the budget if it exceeds it by itself
                assert padded_area([sizes[b[0]]]) <= max_pixels or sampler.oversized > 0


def test_batches_group_similar_sizes() -> None:
    sizes = random_sizes(800, seed=1)
    sampler = SizeBucketBatchSampler(sizes, 200_000, 32, seed=0)
    batches = list(sampler)
    waste = sum(
        padded_area([sizes[i] for i in b]) - sum(h * w for h, w in (sizes[i] for i in b)) for b in batches
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(sizes))
    random_batches = [order[i : i + 8] for i in range(0, len(order), 8)]  # same mean batch size, no bucketing
    random_waste = sum(
        padded_area([sizes[i] for i in b]) - sum(h * w for h, w in (sizes[i] for i in b))
        for b in random_batches
    )
    assert waste < 0.5 * random_waste


def test_order_is_deterministic_per_seed_and_epoch() -> None:
    sizes = random_sizes(300)
    a = SizeBucketBatchSampler(sizes, 100_000, 16, seed=5)
    b = SizeBucketBatchSampler(sizes, 100_000, 16, seed=5)
    c = SizeBucketBatchSampler(sizes, 100_000, 16, seed=6)
    assert list(a) == list(b)
    assert list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # reshuffled each epoch
    a.set_epoch(0)
    assert list(a) == first  # ... and reproducible


def test_skip_resumes_mid_epoch_then_resets() -> None:
    sampler = SizeBucketBatchSampler(random_sizes(200), 80_000, 16, seed=2)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.skip = 3
    assert list(sampler) == full[3:]
    assert list(sampler) == full  # skip applies once


def test_no_shuffle_is_stable_and_sorted_by_size() -> None:
    sizes = random_sizes(100)
    sampler = SizeBucketBatchSampler(sizes, 50_000, 8, shuffle=False)
    sampler.set_epoch(7)
    batches = list(sampler)
    assert batches == list(SizeBucketBatchSampler(sizes, 50_000, 8, shuffle=False))
    heights = [max(padded_side(sizes[i][0]) for i in b) for b in batches]
    assert heights == sorted(heights)  # rows of equal padded height are packed together, in order


@pytest.mark.parametrize("pad", [True, False])
def test_distributed_shards_cover_everything(pad: bool) -> None:
    sizes = random_sizes(301)
    shards = [
        list(SizeBucketBatchSampler(sizes, 60_000, 8, seed=1, num_replicas=2, rank=r, pad_replicas=pad))
        for r in range(2)
    ]
    covered = {i for shard in shards for b in shard for i in b}
    assert covered == set(range(len(sizes)))
    if pad:
        assert len(shards[0]) == len(shards[1])
    else:
        assert sum(len(b) for shard in shards for b in shard) == len(sizes)


def test_targets_and_r2l_convention() -> None:
    tgt_in, tgt_out = targets([[10, 11, 12], [20]], start=Vocab.sos_id, end=Vocab.eos_id)
    assert tgt_in.tolist() == [[1, 10, 11, 12], [1, 20, 0, 0]]
    assert tgt_out.tolist() == [[10, 11, 12, 2], [20, 2, 0, 0]]
    items = [
        Item("a", np.ones((20, 50), np.float32), [10, 11, 12]),
        Item("b", np.ones((33, 17), np.float32), [20]),
    ]
    batch = collate(items, bidirectional=True)
    assert batch.images.shape == (2, 1, 48, 64) and batch.images.dtype == torch.float32
    assert batch.images.shape[2] % PAD_MULTIPLE == 0 and batch.images.shape[3] % PAD_MULTIPLE == 0
    assert batch.pixel_mask[0, :20, :50].logical_not().all() and batch.pixel_mask[0, 20:].all()
    assert batch.pixel_mask[1, :33, :17].logical_not().all() and batch.pixel_mask[1, :, 17:].all()
    assert batch.lengths.tolist() == [4, 2]
    assert batch.sample_ids == ["a", "b"]
    # R2L: reversed ids, started by <eos> and ended by <sos> so the decoder knows the direction
    assert batch.tgt_in_r2l.tolist() == [[2, 12, 11, 10], [2, 20, 0, 0]]
    assert batch.tgt_out_r2l.tolist() == [[12, 11, 10, 1], [20, 1, 0, 0]]
    assert collate(items).tgt_in_r2l is None
    moved = batch.to("cpu")
    assert torch.equal(moved.tgt_out, batch.tgt_out) and moved.sample_ids == batch.sample_ids


# ------------------------------------------------------------------------------- padding, order, packing
def test_pad_batch_shapes_and_mask() -> None:
    imgs = [np.full((20, 50), 0.5, np.float32), np.ones((37, 16), np.float32)]
    batch, mask = pad_batch(imgs, multiple=16)
    assert tuple(batch.shape) == (2, 1, 48, 64) and tuple(mask.shape) == (2, 48, 64)
    assert str(batch.dtype) == "torch.float32" and str(mask.dtype) == "torch.bool"
    for i, im in enumerate(imgs):
        h, w = im.shape
        assert not mask[i, :h, :w].any() and mask[i].sum() == 48 * 64 - h * w
        np.testing.assert_array_equal(batch[i, 0, :h, :w].numpy(), im)
        assert batch[i, 0][mask[i]].abs().sum() == 0
    batch1, _ = pad_batch(imgs, multiple=1)
    assert tuple(batch1.shape) == (2, 1, 37, 50)
    with pytest.raises(ValueError):
        pad_batch([])


def test_kmeans_buckets_every_item_fits() -> None:
    rng = np.random.default_rng(3)
    sizes = [(int(h), int(w)) for h, w in zip(rng.integers(20, 200, 500), rng.integers(40, 900, 500))]
    buckets = kmeans_buckets(sizes, k=6, seed=0, multiple=8)
    assert 1 <= len(buckets) <= 6 and buckets == kmeans_buckets(sizes, k=6, seed=0, multiple=8)
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in buckets)
    for h, w in sizes:
        assert any(h <= bh and w <= bw for bh, bw in buckets)
    assert kmeans_buckets([(30, 100)] * 5, k=4, multiple=8) == [(32, 104)]  # (h, w), like the sizes
    # the default multiple is pad_batch's, so learned buckets pad without further arguments
    assert kmeans_buckets([(30, 100)] * 5, k=4) == [(32, 112)]
    assert tuple(pad_batch([np.ones((30, 100), np.float32)], buckets=[(32, 112)])[0].shape) == (1, 1, 32, 112)


def _inference_batches_before_issue_16(sizes: list[tuple[int, int]], batch_size: int, max_pixels: int):
    """The packer inference had of its own (`inference._size_batches`), kept here as the reference its
    batches -- and so its bit-exact predictions -- must not drift from."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    batches: list[list[int]] = []
    current: list[int] = []
    max_h = max_w = 0
    for i in order:
        h, w = sizes[i]
        new_h, new_w = max(max_h, h), max(max_w, w)
        if current and (len(current) >= batch_size or new_h * new_w * (len(current) + 1) > max_pixels):
            batches.append(current)
            current, new_h, new_w = [], h, w
        current.append(i)
        max_h, max_w = new_h, new_w
    if current:
        batches.append(current)
    return batches


@pytest.mark.parametrize("batch_size,max_pixels", [(5, 60_000), (1, 10**6), (16, 4_000), (64, 400_000)])
def test_inference_packing_keeps_its_batches(batch_size: int, max_pixels: int) -> None:
    rng = np.random.default_rng(batch_size)
    sizes = [(int(h), int(w)) for h, w in rng.integers(20, 200, size=(60, 2))]
    sizes += sizes[:15]  # equal sizes keep their input order
    batches = size_batches(sizes, batch_size, max_pixels, multiple=1)
    assert batches == _inference_batches_before_issue_16(sizes, batch_size, max_pixels)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= batch_size
        h, w = max(sizes[i][0] for i in b), max(sizes[i][1] for i in b)
        assert len(b) == 1 or h * w * len(b) <= max_pixels
    assert size_batches([], batch_size, max_pixels, multiple=1) == []


def test_unshuffled_sampler_packs_like_size_batches() -> None:
    """Training and inference share one packer: without shuffling or jitter the sampler's batches are
    `size_batches` of the same sizes (same padded-height-then-width order, same budget)."""
    sizes = random_sizes(300, seed=9)
    buckets = kmeans_buckets(sizes, 6)
    for bk in (None, buckets):
        sampler = SizeBucketBatchSampler(sizes, 90_000, 12, shuffle=False, buckets=bk)
        assert list(sampler) == size_batches(sizes, 12, 90_000, buckets=bk)
    heights, widths = np.array([37, 40, 33, 40]), np.array([50, 20, 90, 10])
    assert size_order(heights, widths).tolist() == [3, 1, 0, 2]  # 33/37/40 all pad to 48: by width
    assert size_order(heights, widths, multiple=1).tolist() == [2, 0, 3, 1]  # exact height, then width


# ------------------------------------------------------------------------------------ augmentation
def formula_image(h: int = 60, w: int = 200) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    cv2.putText(img, "x+1=y", (8, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 1.3, 255, 3)
    return img.astype(np.float32) / 255.0


def test_augmenter_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="data.augment.wobble"):
        Augmenter({"wobble": {}})
    with pytest.raises(ConfigError, match="data.augment.scale.rnage"):
        Augmenter({"scale": {"rnage": [0.5, 1]}})
    with pytest.raises(ConfigError, match="data.augment.noise.p"):
        Augmenter({"noise": {"p": 2}})
    with pytest.raises(ConfigError, match="data.augment.small.range"):
        Augmenter({"small": {"range": [0.5, 1.5]}})
    assert build_augmenter({}) is None
    assert build_augmenter({"blur": None}) is None


def test_shrink_keeping_pen_makes_small_writing_with_the_same_pen() -> None:
    """Half-size writing keeps its stroke width (what a student writing small with the same pen gives);
    a plain resize would halve it."""
    img = read_png(EXAMPLES / "x_squared_plus_1.png")
    from texscribe.images import to_ink_on_dark

    img = to_ink_on_dark(img) if img.mean() > 0.5 else img
    before = measure_ink(img)
    small = shrink_keeping_pen(img, 0.5)
    after = measure_ink(small)
    assert before is not None and after is not None
    assert 0.35 <= after.symbol_height / before.symbol_height <= 0.65
    assert abs(after.pen - before.pen) <= 0.3 * before.pen
    plain = measure_ink(cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    assert plain is not None and plain.pen < after.pen
    assert shrink_keeping_pen(img, 1.0) is img  # not a shrink: unchanged


def test_augmenter_changes_images_within_bounds() -> None:
    cfg = DataConfig(img_min_height=16, img_max_height=96, img_max_width=400)
    everything = {
        name: {"p": 1.0}
        for name in ("scale", "aspect", "rotate", "shear", "stroke", "small", "noise", "blur")
    }
    aug = Augmenter(everything, seed=0)
    img = formula_image()
    from texscribe.images import preprocess

    base = preprocess(img, cfg)
    shapes = set()
    for _ in range(20):
        out = aug(img, lambda x: preprocess(x, cfg))
        assert out.dtype == np.float32 and out.ndim == 2
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out.shape[0] <= cfg.img_max_height and out.shape[1] <= cfg.img_max_width
        assert (out > 0.5).sum() > 50  # ink survives
        shapes.add(out.shape)
    assert len(shapes) > 5 and any(s != base.shape for s in shapes)
    gh, gw = aug.growth()
    assert gh >= 1.3 and gw >= gh


def test_augmenter_reseed_is_reproducible() -> None:
    aug = Augmenter({"rotate": {"p": 1.0}, "noise": {"p": 1.0}}, seed=0)
    img = formula_image()
    from texscribe.images import preprocess

    cfg = DataConfig()
    aug.reseed(11)
    a = aug(img, lambda x: preprocess(x, cfg))
    aug.reseed(11)
    b = aug(img, lambda x: preprocess(x, cfg))
    aug.reseed(12)
    c = aug(img, lambda x: preprocess(x, cfg))
    assert np.array_equal(a, b) and not (a.shape == c.shape and np.array_equal(a, c))


# ------------------------------------------------------------------------- dataset and data module
def make_prepared(root: Path, n: int = 24, seed: int = 0) -> Path:
    """A small prepared dataset of synthetic formula images (same layout `texscribe data prepare` writes)."""
    rng = np.random.default_rng(seed)
    words = ["x", "+", "1", "=", "y", "2", "a", "-"]
    records, seqs = [], []
    for i in range(n):
        tokens = [str(t) for t in rng.choice(words, size=int(rng.integers(1, 7)))]
        h, w = int(rng.integers(30, 120)), int(rng.integers(60, 500))
        img = np.zeros((h, w), np.uint8)
        cv2.putText(img, "".join(tokens), (4, h - 8), cv2.FONT_HERSHEY_SIMPLEX, h / 60, 255, 2)
        img[2:4, 2:-2] = 255  # guarantees ink spanning the full width
        path = root / "images" / f"s{i}.png"
        save_png(img.astype(np.float32) / 255, path)
        records.append(PreparedRecord(f"s{i}", path, tokens, "synthetic", h, w))
        seqs.append(tokens)
    records.append(PreparedRecord("long", records[0].image_path, ["x"] * 500, "synthetic", 30, 60))
    write_prepared_manifest(root, records)
    Vocab.build(seqs).save(root / "vocab.json")
    return root


@pytest.fixture()
def prepared(tmp_path: Path) -> Path:
    return make_prepared(tmp_path / "prep")


def test_dataset_items_fit_their_size_bounds(prepared: Path) -> None:
    from texscribe.data.datamodule import LatexDataset

    ds = PreparedDataset.open(prepared)
    cfg = DataConfig(img_max_height=64, img_max_width=256, max_label_len=50)
    aug = build_augmenter(
        {"scale": {"p": 1.0, "range": [0.6, 1.5]}, "rotate": {"p": 1.0}, "aspect": {"p": 1.0}}, 0
    )
    data = LatexDataset([ds], ds.vocab, cfg, augment=aug)
    assert len(data) == 24 and sum(data.skipped.values()) == 1  # the 500-token label
    for i in range(len(data)):
        item = data[i]
        assert item.image.shape[0] <= data.sizes[i][0] and item.image.shape[1] <= data.sizes[i][1]
        assert ds.vocab.decode(item.token_ids) == data.records[i][1].tokens


def test_datamodule_loader_resumes_mid_epoch(prepared: Path) -> None:
    from texscribe.data.datamodule import LatexDataModule

    cfg = load_config("tiny", [f"data.train=[{prepared}]", "data.batch_max_size=4", "data.max_label_len=50"])
    dm = LatexDataModule(cfg)
    loader = dm.train_dataloader()
    sampler = loader.batch_sampler
    sampler.set_epoch(2)
    full = [b.sample_ids for b in loader]
    # a checkpoint taken after 3 batches of epoch 2 ...
    loader.batches_done = lambda: 3
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_done": 3}
    # ... restores into a fresh loader that continues with batch 4 of the same order
    fresh = LatexDataModule(cfg).train_dataloader()
    fresh.load_state_dict(state)
    assert [b.sample_ids for b in fresh] == full[3:]
    # a checkpoint at the end of an epoch continues with the next epoch
    end = LatexDataModule(cfg).train_dataloader()
    end.load_state_dict({"epoch": 2, "batches_done": len(full)})
    assert end.batch_sampler.epoch == 3 and len([b for b in end]) == len(end.batch_sampler)


def test_datamodule_errors_are_actionable(tmp_path: Path) -> None:
    from texscribe.data.datamodule import LatexDataModule
    from texscribe.errors import InputError

    with pytest.raises(ConfigError, match="--train"):
        LatexDataModule(Config())
    with pytest.raises(InputError, match="texscribe data prepare"):
        LatexDataModule(load_config("tiny", [f"data.train=[{tmp_path}]"]))


def test_every_epoch_has_the_same_number_of_batches() -> None:
    """Lightning validates when batch_idx + 1 == the epoch length it read once: a jittered packing that
    came out a few batches short skipped that epoch's validation (seen in a real CROHME run)."""
    sizes = random_sizes(3000, seed=5)
    sampler = SizeBucketBatchSampler(sizes, 400_000, 48, seed=7, jitter=0.1)
    expected = len(sampler)
    for epoch in range(8):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == expected == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
