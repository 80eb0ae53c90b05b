"""Size-bucketed batches: group images of similar size so padding stays small, under a pixel budget.

- `SizeBucketBatchSampler` yields lists of dataset indices. Each batch's *padded* area
  (`len(batch) * H_pad * W_pad`, laid out as `images.pad_batch` pads them: sides rounded up to
  `PAD_MULTIPLE`, or the smallest of the learned size buckets that holds the batch, see
  `data.size_buckets`) stays within `max_pixels`, and it holds at most `max_size` samples. The order
  is a pure function of `(seed, epoch)`, so a resumed run sees the same batches as an uninterrupted
  one; `skip` lets a resumed epoch start after the batches it already trained on.
- `collate` (via `Collate`) turns `Item`s into a `Batch`: padded images + mask and teacher-forcing targets.
  Given the same `buckets` as the sampler, every batch the sampler packed is one of those shapes (a batch
  exceeding every bucket, e.g. an unusually large validation image, falls back to plain `pad_batch`).

Right-to-left targets (`bidirectional=True`, BTTR/CoMER-style training of one shared decoder in both
directions): the token list is simply reversed (a brace group is not kept together: `{ x }` reversed is
`} x {`), and the direction is told to the decoder by its start token:

    L2R  tgt_in = <sos> t1 .. tn     tgt_out = t1 .. tn <eos>
    R2L  tgt_in = <eos> tn .. t1     tgt_out = tn .. t1 <sos>

so R2L decoding is `greedy_decode(..., sos_id=EOS, eos_id=SOS)`. Both directions share the images: the
encoder runs once per image and the decoder sees the memory twice (see `lit_module`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from texscribe.images import pad_batch, padded_shape, smallest_bucket_indices
from texscribe.latex import Vocab

PAD_MULTIPLE = 16  # images.pad_batch rounds H and W up to this; every encoder stride divides it


def padded_side(value: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-int(value) // multiple) * multiple


@dataclass
class Item:
    """One dataset sample: canonical image (H, W) float32 ink-bright, token ids without specials."""

    id: str
    image: np.ndarray
    ids: list[int]


@dataclass
class Batch:
    """A padded batch. images (B,1,H,W) float32; pixel_mask (B,H,W) bool True=pad;
    tgt_in/tgt_out (B,T) int64 padded with <pad>=0; lengths (B,) = label length + 1 (the <eos>);
    tgt_in_r2l/tgt_out_r2l the reversed-direction targets when training bidirectionally, else None."""

    images: Tensor
    pixel_mask: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    lengths: Tensor
    ids: list[str]
    tgt_in_r2l: Tensor | None = None
    tgt_out_r2l: Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = (
                value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value
            )
        return Batch(**moved)


def targets(seqs: Sequence[Sequence[int]], start: int, end: int) -> tuple[Tensor, Tensor]:
    """Teacher-forcing pair for id lists: tgt_in = start + ids, tgt_out = ids + end, both (B, T) padded with 0."""
    width = max(len(s) for s in seqs) + 1
    tgt_in = torch.full((len(seqs), width), Vocab.pad_id, dtype=torch.long)
    tgt_out = torch.full((len(seqs), width), Vocab.pad_id, dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids = torch.as_tensor(list(seq), dtype=torch.long)
        tgt_in[i, 0] = start
        tgt_in[i, 1 : len(seq) + 1] = ids
        tgt_out[i, : len(seq)] = ids
        tgt_out[i, len(seq)] = end
    return tgt_in, tgt_out


def collate(
    items: Sequence[Item], bidirectional: bool = False, buckets: Sequence[tuple[int, int]] | None = None
) -> Batch:
    """Pad images (via `images.pad_batch`, into the smallest of `buckets` that holds them when given)
    and build L2R (and optionally R2L) targets."""
    images, pixel_mask = pad_batch([it.image for it in items], multiple=PAD_MULTIPLE, buckets=buckets)
    seqs = [it.ids for it in items]
    tgt_in, tgt_out = targets(seqs, Vocab.sos_id, Vocab.eos_id)
    batch = Batch(
        images=images,
        pixel_mask=pixel_mask,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        lengths=torch.tensor([len(s) + 1 for s in seqs], dtype=torch.long),
        ids=[it.id for it in items],
    )
    if bidirectional:
        batch.tgt_in_r2l, batch.tgt_out_r2l = targets([s[::-1] for s in seqs], Vocab.eos_id, Vocab.sos_id)
    return batch


class Collate:
    """Picklable collate_fn (DataLoader workers) carrying the `bidirectional` flag and the size buckets."""

    def __init__(self, bidirectional: bool = False, buckets: Sequence[tuple[int, int]] | None = None):
        self.bidirectional = bidirectional
        self.buckets = list(buckets) if buckets else None

    def __call__(self, items: Sequence[Item]) -> Batch:
        return collate(items, self.bidirectional, self.buckets)


class EpochOrder(Sampler[int]):
    """The per-epoch random order of all indices (seeded by `seed + epoch`); `set_epoch` is what Lightning
    calls on `batch_sampler.sampler` at each epoch start."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, salt])

    def __iter__(self) -> Iterator[int]:
        order = self.rng().permutation(self.n) if self.shuffle else np.arange(self.n)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


class SizeBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-size samples within a padded-pixel budget.

    sizes: per-sample (height, width) in pixels *as the model will see them* (upper bounds).
    buckets: (width, height) shapes, sides multiples of `PAD_MULTIPLE`, that `collate` pads batches into
    (`images.kmeans_buckets` learns them): the budget then counts the bucket a batch lands in, and samples
    are grouped by the smallest bucket holding them before the size order below.
    Samples are sorted by padded height, then width — each size scaled by a random factor in
    [1 - jitter, 1 + jitter] per epoch so batch membership varies between epochs, ties in random order —
    then packed greedily; the batch order is shuffled per epoch. A sample alone over the budget gets a
    batch of its own (counted in `oversized`). With `num_replicas > 1` (DDP) each rank takes every `num_replicas`-th batch;
    with `pad_replicas` the list is first padded by repeating batches so every rank gets the same count.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        max_pixels: int,
        max_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad_replicas: bool = True,
        jitter: float = 0.1,
        buckets: Sequence[tuple[int, int]] | None = None,
    ):
        if max_pixels < 1 or max_size < 1:
            raise ValueError(f"max_pixels and max_size must be >= 1, got {max_pixels}, {max_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self.max_pixels, self.max_size = int(max_pixels), int(max_size)
        self.sampler = EpochOrder(len(self.sizes), seed=seed, shuffle=shuffle)
        self.num_replicas, self.rank, self.pad_replicas = num_replicas, rank, pad_replicas
        self.jitter = jitter
        self.buckets = sorted(buckets, key=lambda b: (b[0] * b[1], b[0])) if buckets else None
        self.skip = 0  # batches of the current epoch already consumed (set when resuming mid-epoch)
        self._cache: tuple[int, list[list[int]]] | None = None
        self.oversized = int(
            sum(padded_area([(h, w)], self.buckets) > self.max_pixels for h, w in self.sizes.tolist())
        )
        # Lightning fixes the epoch length once and validates when batch_idx + 1 == that length, so
        # every epoch must yield the same number of batches: the count of the unjittered packing.
        self.num_batches = len(self._greedy(self._by_size(np.arange(len(self.sizes)), *self.sizes.T)))

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.sampler.epoch:
            self.skip = 0
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch for this rank, in order (cached per epoch)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._shard(self._pack()))
        return self._cache[1]

    def _pack(self) -> list[list[int]]:
        order = np.fromiter(self.sampler, dtype=np.int64, count=len(self.sampler))
        if len(order) == 0:
            return []
        h, w = self.sizes[order, 0].astype(float), self.sizes[order, 1].astype(float)
        if self.sampler.shuffle and self.jitter > 0:  # vary which samples share a batch from epoch to epoch
            rng = self.sampler.rng(salt=2)
            h = h * rng.uniform(1 - self.jitter, 1 + self.jitter, len(h))
            w = w * rng.uniform(1 - self.jitter, 1 + self.jitter, len(w))
        out = self._greedy(self._by_size(order, h, w))
        if len(out) > self.num_batches:  # jitter packed worse: this epoch keeps only the random tie order
            out = self._greedy(self._by_size(order, *self.sizes[order].T))
        out = self._split_to(out, self.num_batches)
        if self.sampler.shuffle:
            perm = self.sampler.rng(salt=1).permutation(len(out))
            out = [out[i] for i in perm]
        return out

    def _greedy(self, order: np.ndarray) -> list[list[int]]:
        """Pack samples in `order` into consecutive batches within the pixel and size budgets."""
        out: list[list[int]] = []
        current: list[int] = []
        max_h = max_w = 0
        for idx in order.tolist():
            sh, sw = self.sizes[idx].tolist()
            new_h, new_w = max(max_h, sh), max(max_w, sw)
            if current and (
                len(current) >= self.max_size
                or (len(current) + 1) * _area(padded_shape(new_h, new_w, PAD_MULTIPLE, self.buckets))
                > self.max_pixels
            ):
                out.append(current)
                current, new_h, new_w = [], sh, sw
            current.append(idx)
            max_h, max_w = new_h, new_w
        if current:
            out.append(current)
        return out

    @staticmethod
    def _split_to(out: list[list[int]], target: int) -> list[list[int]]:
        """Halve the fullest batches (in place) until there are `target` (halves stay within every budget)."""
        while len(out) < target:
            i = max(range(len(out)), key=lambda k: len(out[k]))
            if len(out[i]) < 2:
                break
            half = len(out[i]) // 2
            out[i], extra = out[i][:half], out[i][half:]
            out.append(extra)
        return out

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        if self.num_replicas == 1:
            return batches
        if self.pad_replicas and batches:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches = batches + batches[: total - len(batches)]
        return batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        skip, self.skip = self.skip, 0
        yield from batches[skip:]

    def __len__(self) -> int:
        return len(self.batches())

    def _by_size(self, order: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
        """`order` (sample indices; `h`, `w` their sizes, aligned) grouped by the smallest bucket that
        holds each (with buckets), then rows of equal padded height together, then by width; stable, so
        ties keep their (random) order."""
        keys = [w, np.ceil(h / PAD_MULTIPLE)]
        if self.buckets:  # sorted as `images.smallest_bucket` ranks them
            keys.append(smallest_bucket_indices(h, w, self.buckets))
        return order[np.lexsort(keys)]


def _area(shape: tuple[int, int]) -> int:
    return shape[0] * shape[1]


def padded_area(
    batch_sizes: Sequence[tuple[int, int]], buckets: Sequence[tuple[int, int]] | None = None
) -> int:
    """Padded pixel count of a batch of (h, w) images, as `images.pad_batch` will lay it out (with the
    same `buckets`)."""
    height, width = max(h for h, _ in batch_sizes), max(w for _, w in batch_sizes)
    return len(batch_sizes) * _area(padded_shape(height, width, PAD_MULTIPLE, buckets))
