"""Prepared datasets -> batches for Lightning: the dataset, its size bounds, and the DataModule.

Training reads one or more prepared folders (`data.train`, see `texscribe.data.prepared`) and
validates on one (`data.val`). Every image goes through `images.preprocess` (the same transform
inference uses); training images are augmented around it (`data.augment`, see `augment.py`).
Batches come from `SizeBucketBatchSampler` under `data.batch_max_pixels` / `data.batch_max_size`.
With `data.size_buckets = k`, k (h, w) shapes are learned at setup by `batching.kmeans_buckets` over the
training images' size bounds (so no training item, augmented or not, exceeds every bucket) and every
batch is padded into the smallest one that holds it (see `texscribe.data.batching`).
The train loader is resumable: its (epoch, batches done) position is stored in Lightning
checkpoints, so a resumed run continues the interrupted epoch with the same batch order.
"""

from __future__ import annotations

import logging
import math
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from texscribe.config import Config, DataConfig
from texscribe.data.augment import Augmenter, build_augmenter
from texscribe.data.batching import Batch, Collate, Item, SizeBucketBatchSampler, kmeans_buckets
from texscribe.data.prepared import DecodedImageCache, PreparedDataset, PreparedRecord, parse_train_entry
from texscribe.errors import ConfigError, ImageError
from texscribe.images import fit_height, fitted_size, preprocess
from texscribe.latex import Vocab

log = logging.getLogger(__name__)


def merged_vocab(datasets: Sequence[PreparedDataset]) -> Vocab:
    """Union of the datasets' vocabularies, first dataset's order first (ids stay stable for one dataset)."""
    return Vocab(t for ds in datasets for t in ds.vocab.itos)


class LatexDataset(Dataset):
    """Records of several prepared datasets as `Item(id, image (H, W) float32, token_ids)`.

    `sizes[i]` is an upper bound (height, width) of item i as returned, used for batch budgets: the
    preprocessed size grown by what augmentation may add, clipped to the configured maximum; a rare
    augmented image beyond its bound is shrunk into it. Labels longer than `max_label_len` are skipped
    (counted in `skipped`); tokens outside `vocab` become <unk> (counted in `unknown_tokens`). Decoded
    images stay in memory up to `data_config.image_cache_mb` (`prepared.DecodedImageCache`).
    """

    def __init__(
        self,
        datasets: Sequence[PreparedDataset],
        vocab: Vocab,
        data_config: DataConfig,
        *,
        augment: Augmenter | None = None,
        limit: int | None = None,
        seed: int = 0,
        name: str = "train",
        repeats: Sequence[int] | None = None,
    ):
        self.data_config, self.augment, self.vocab = data_config, augment, vocab
        self.records: list[tuple[PreparedDataset, PreparedRecord]] = []
        self.skipped: Counter[str] = Counter()
        self.unknown_tokens: Counter[str] = Counter()
        for ds, times in zip(datasets, repeats or [1] * len(datasets), strict=True):
            kept = []
            for rec in ds.records:
                if len(rec.tokens) > data_config.max_label_len:
                    self.skipped[
                        f"{ds.root}: label longer than max_label_len={data_config.max_label_len}"
                    ] += 1
                    continue
                kept.append((ds, rec))
            self.records.extend(kept * times)
        if limit is not None and limit < len(self.records):
            keep = np.sort(np.random.default_rng(seed).choice(len(self.records), size=limit, replace=False))
            self.records = [self.records[i] for i in keep]
        self.token_ids: list[list[int]] = []
        for _, rec in self.records:
            self.unknown_tokens.update(t for t in rec.tokens if t not in vocab)
            self.token_ids.append(vocab.encode(rec.tokens))
        self.sizes = self._size_bounds()
        cache_bytes = data_config.image_cache_mb * 2**20
        self.image_cache = DecodedImageCache(cache_bytes) if cache_bytes > 0 else None
        for reason, count in self.skipped.items():
            log.info("%s: skipped %d records (%s)", name, count, reason)
        if self.unknown_tokens:
            log.warning(
                "%s: %d token occurrences outside the vocabulary map to <unk> (most common: %s)",
                name,
                sum(self.unknown_tokens.values()),
                ", ".join(t for t, _ in self.unknown_tokens.most_common(5)),
            )

    def _size_bounds(self) -> list[tuple[int, int]]:
        cfg = self.data_config
        gh, gw = self.augment.growth() if self.augment else (1.0, 1.0)
        out = []
        for _, rec in self.records:
            nh, nw = self._fitted((rec.height, rec.width))
            out.append(
                (min(cfg.img_max_height, math.ceil(nh * gh)), min(cfg.img_max_width, math.ceil(nw * gw)))
            )
        return out

    def _fitted(self, size: tuple[int, int]) -> tuple[int, int]:
        """Size `images.fit_height` gives a stored image of `size` (the stored images are cropped already)."""
        cfg = self.data_config
        return fitted_size(
            *size,
            min_height=cfg.img_min_height,
            max_height=cfg.img_max_height,
            max_width=cfg.img_max_width,
            scale=cfg.scale,
        )

    def _preprocess(self, img: np.ndarray) -> np.ndarray:
        return preprocess(img, self.data_config)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Item | None:
        ds, rec = self.records[index]
        try:
            cached = self.image_cache  # keyed by file: a repeated dataset's copies share one decoded image
            img = cached.load(rec.image_path, ds, rec) if cached else ds.load_image(rec)
            out = self.augment(img, self._preprocess) if self.augment else self._preprocess(img)
        except ImageError as exc:  # a damaged file must not kill a long run: drop it from its batch
            log.warning("skipping %s (%s): %s", rec.id, rec.image_path, exc)
            return None
        bound_h, bound_w = self.sizes[index]
        if out.shape[0] > bound_h or out.shape[1] > bound_w:
            out = fit_height(out, min_height=1, max_height=min(out.shape[0], bound_h), max_width=bound_w)
        return Item(rec.id, out, self.token_ids[index])


class _SkipMissing(Collate):
    """Collate that drops items whose image failed to load (logged by the dataset)."""

    def __call__(self, items: Sequence[Item | None]) -> Batch:
        kept = [it for it in items if it is not None]
        if not kept:
            raise ImageError(
                "every image of a batch failed to load; check the prepared dataset's images/ folder"
            )
        return super().__call__(kept)


def _worker_init(worker_id: int) -> None:
    """Each DataLoader worker gets its own augmentation stream (torch seeds workers differently), and
    ignores SIGTERM: stopping a job as a whole (`kill -- -PGID`, a scheduler) signals the workers too, and a
    worker dying of it made the main process fail with "DataLoader worker is killed" before Lightning's
    SIGTERM exit could save `last.ckpt`. The main process alone handles it; workers end with it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    if info is not None and getattr(info.dataset, "augment", None) is not None:
        info.dataset.augment.reseed(info.seed % 2**31)


class ResumableLoader(DataLoader):
    """DataLoader over a `SizeBucketBatchSampler` whose position Lightning saves in checkpoints.

    `batches_done()` reports how many batches of the current epoch were trained (the trainer's count,
    not the loader's: Lightning prefetches one batch ahead). On load, the sampler is set to that
    epoch and skips those batches; a finished epoch moves on to the next.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        done = self.batches_done() if self.batches_done else 0
        return {"epoch": self.batch_sampler.epoch, "batches_done": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: SizeBucketBatchSampler = self.batch_sampler
        sampler.set_epoch(state["epoch"])
        if state["batches_done"] >= len(sampler):
            sampler.set_epoch(state["epoch"] + 1)
        else:
            sampler.skip = state["batches_done"]


class LatexDataModule(L.LightningDataModule):
    """Train/val loaders for a `Config`. Datasets are opened at construction so `vocab` is known
    before the model is built; `vocab` may be given (e.g. the vocabulary of weights being fine-tuned)."""

    def __init__(self, config: Config, vocab: Vocab | None = None):
        super().__init__()
        self.config = config
        data = config.data
        if not data.train:
            raise ConfigError("data.train is empty: pass prepared dataset folders with --train DIR")
        entries = [parse_train_entry(e) for e in data.train]  # `DIR@K`: K copies per epoch
        self.train_sets = [PreparedDataset.open(folder) for folder, _ in entries]
        self.train_repeats = [times for _, times in entries]
        self.val_set = PreparedDataset.open(data.val) if data.val else None
        self.vocab = vocab or merged_vocab(self.train_sets)
        self.train_data: LatexDataset | None = None
        self.val_data: LatexDataset | None = None
        self.size_buckets: list[tuple[int, int]] | None = None  # (h, w), with data.size_buckets

    def setup(self, stage: str | None = None) -> None:
        cfg = self.config
        if self.train_data is None:
            augment = build_augmenter(cfg.data.augment, seed=cfg.train.seed)
            self.train_data = LatexDataset(
                self.train_sets,
                self.vocab,
                cfg.data,
                augment=augment,
                seed=cfg.train.seed,
                name="train",
                repeats=self.train_repeats,
            )
            if len(self.train_data) == 0:
                raise ConfigError(f"no usable training records in {', '.join(cfg.data.train)}")
            if cfg.data.size_buckets is not None:
                k = cfg.data.size_buckets
                self.size_buckets = kmeans_buckets(self.train_data.sizes, k, seed=cfg.train.seed)
                shapes = " ".join(
                    f"{w}x{h}" for h, w in self.size_buckets
                )  # width x height, as images are named
                log.info("size buckets (k=%d): %s", k, shapes)
        if self.val_data is None and self.val_set is not None:
            self.val_data = LatexDataset(
                [self.val_set],
                self.vocab,
                cfg.data,
                limit=cfg.train.val_limit,
                seed=cfg.train.seed,
                name="val",
            )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _batches_done(self) -> int:
        trainer = self.trainer
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0

    def _loader(self, dataset: LatexDataset, train: bool) -> DataLoader:
        cfg = self.config
        replicas, rank = self._world()
        sampler = SizeBucketBatchSampler(
            dataset.sizes,
            cfg.data.batch_max_pixels,
            cfg.data.batch_max_size,
            shuffle=train,
            seed=cfg.train.seed,
            num_replicas=replicas,
            rank=rank,
            pad_replicas=train,  # validation shards need not be equal: nothing syncs per step
            buckets=self.size_buckets,
        )
        if train and sampler.oversized:
            log.warning(
                "%d training images exceed data.batch_max_pixels=%d on their own; each gets its own batch",
                sampler.oversized,
                cfg.data.batch_max_pixels,
            )
        workers = cfg.data.num_workers
        kwargs: dict[str, Any] = dict(
            batch_sampler=sampler,
            collate_fn=_SkipMissing(cfg.train.bidirectional and train, self.size_buckets),
            num_workers=workers,
            worker_init_fn=_worker_init if workers else None,
            persistent_workers=workers > 0,
        )
        if train:
            return ResumableLoader(dataset, batches_done=self._batches_done, **kwargs)
        return DataLoader(dataset, **kwargs)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_data, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("fit")
        return self._loader(self.val_data, train=False) if self.val_data is not None else []
