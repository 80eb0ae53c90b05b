"""Batching, in one place: size order, packing under a budget, padding, size buckets, and the batches.

Training (`SizeBucketBatchSampler` + `collate`) and inference (`Recognizer.predict_images`) both pack
images with `size_batches`/`pack_in_order` and pad them with `pad_batch`. The contract:

- A size is `(h, w)` in pixels -- `img.shape` of a canonical image (H, W) -- and so is a bucket, everywhere.
- `pad_batch` stacks images into (B, 1, H, W) float32 and a pixel mask (B, H, W) bool (True = padding),
  padded bottom/right with zeros. (H, W) = `padded_shape`: the smallest of the size buckets holding the
  batch's largest sides when buckets are given (a batch exceeding every bucket, e.g. an unusually large
  validation image, falls back to the next rule), else both sides rounded up to `PAD_MULTIPLE` (16, which
  every encoder stride divides).
- Size buckets are k shapes learned by `kmeans_buckets` from the training images' size bounds (the
  datamodule does so at setup with `data.size_buckets = k`; they are not stored anywhere), so the model
  sees k input shapes only (what cudnn.benchmark, torch.compile and static ONNX shapes need).
- Packing sorts by size (`size_order`), then cuts consecutive batches at an image count and a padded-pixel
  budget (`len(batch) * H * W`, `pack_in_order`). Inference counts the images' own sides
  (`multiple=1`, no buckets): the batches its predictions have always been made in.

`SizeBucketBatchSampler` adds what training needs on top: a per-epoch random order that is a pure function
of `(seed, epoch)` (a resumed run sees the same batches as an uninterrupted one; `skip` starts a resumed
epoch after the batches it already trained on), size jitter so batch membership varies between epochs,
and DDP sharding. `collate` (via `Collate`) turns `Item`s into a `Batch`: padded images + mask and
teacher-forcing targets.

Right-to-left targets (`bidirectional=True`, BTTR/CoMER-style training of one shared decoder in both
directions): the token list is simply reversed (a brace group is not kept together: `{ x }` reversed is
`} x {`), and the direction is told to the decoder by its start token:

    L2R  tgt_in = <sos> t1 .. tn     tgt_out = t1 .. tn <eos>
    R2L  tgt_in = <eos> tn .. t1     tgt_out = tn .. t1 <sos>

so R2L decoding is `greedy_decode(..., sos_id=EOS, eos_id=SOS)`. Both directions share the images: the
encoder runs once per image and the decoder sees the memory twice (see `lit_module`).

One module although it runs past ~400 lines: padding, buckets, packing and the sampler are one contract,
which drifted apart while it lived in three files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from texscribe.latex import Vocab

PAD_MULTIPLE = 16  # pad_batch rounds H and W up to this; every encoder stride divides it

Size = tuple[int, int]  # (h, w) in pixels: an image's shape, a padded batch's (H, W), or a size bucket


# ----------------------------------------------------------------------------------------------- padding
def padded_side(value: int, multiple: int = PAD_MULTIPLE) -> int:
    """`value` rounded up to a multiple of `multiple`."""
    return -(-int(value) // multiple) * multiple


def padded_shape(
    height: int, width: int, multiple: int = PAD_MULTIPLE, buckets: Sequence[Size] | None = None
) -> Size:
    """(H, W) that `pad_batch` gives a batch whose largest image sides are `height` and `width`.

    The smallest (h, w) bucket that holds them (see `smallest_bucket`) when `buckets` are given and one
    does, else both sides rounded up to `multiple`. Batch packing counts pixel budgets with it.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    bucket = smallest_bucket(height, width, buckets) if buckets else None
    if bucket is None:
        return padded_side(height, multiple), padded_side(width, multiple)
    if bucket[0] % multiple or bucket[1] % multiple:
        raise ValueError(f"bucket (h, w) = {bucket} is not a multiple of {multiple} on both sides")
    return bucket


def padded_area(batch_sizes: Sequence[Size], buckets: Sequence[Size] | None = None) -> int:
    """Padded pixel count of a batch of (h, w) images, as `pad_batch` lays it out (with the same `buckets`)."""
    height, width = max(h for h, _ in batch_sizes), max(w for _, w in batch_sizes)
    return len(batch_sizes) * _area(padded_shape(height, width, PAD_MULTIPLE, buckets))


def _area(shape: Size) -> int:
    return shape[0] * shape[1]


def pad_batch(
    images: Sequence[np.ndarray], multiple: int = PAD_MULTIPLE, buckets: Sequence[Size] | None = None
) -> tuple[Tensor, Tensor]:
    """Stack canonical images (H, W) into a batch padded bottom/right with zeros.

    Returns images (B, 1, H, W) float32 and pixel_mask (B, H, W) bool (True = padding), with (H, W) the
    `padded_shape` of the largest height and width (given (h, w) `buckets`: the smallest holding them).
    """
    if not images:
        raise ValueError("pad_batch needs at least one image")
    height, width = padded_shape(
        max(im.shape[0] for im in images), max(im.shape[1] for im in images), multiple, buckets
    )
    batch = np.zeros((len(images), 1, height, width), dtype=np.float32)
    mask = np.ones((len(images), height, width), dtype=bool)
    for i, im in enumerate(images):
        h, w = im.shape
        batch[i, 0, :h, :w] = im
        mask[i, :h, :w] = False
    return torch.from_numpy(batch), torch.from_numpy(mask)


# ----------------------------------------------------------------------------------------------- buckets
def bucket_rank(bucket: Size) -> tuple[int, int]:
    """Sort key of (h, w) buckets, smallest first: by area, ties the narrower first."""
    return bucket[0] * bucket[1], bucket[1]


def smallest_bucket(height: int, width: int, buckets: Sequence[Size]) -> Size | None:
    """The smallest (h, w) bucket (see `bucket_rank`) holding a `height` x `width` image, or None."""
    fitting = [(bh, bw) for bh, bw in buckets if height <= bh and width <= bw]
    return min(fitting, key=bucket_rank) if fitting else None


def smallest_bucket_indices(heights: np.ndarray, widths: np.ndarray, buckets: Sequence[Size]) -> np.ndarray:
    """Vectorised `smallest_bucket`: for each (height, width) pair the index in `buckets` -- which must be
    sorted by `bucket_rank` -- of the first, i.e. smallest, bucket holding it; `len(buckets)` where none
    does."""
    bh, bw = np.asarray(buckets, dtype=np.float64).reshape(-1, 2).T
    fits = (np.asarray(heights)[:, None] <= bh[None]) & (np.asarray(widths)[:, None] <= bw[None])
    return np.where(fits.any(axis=1), fits.argmax(axis=1), len(bh))


def kmeans_buckets(
    sizes: Sequence[Size],
    k: int,
    seed: int = 0,
    iters: int = 50,
    multiple: int = PAD_MULTIPLE,
    restarts: int = 8,
) -> list[Size]:
    """Learn up to `k` (h, w) buckets, sides multiples of `multiple`, holding every (h, w) in `sizes`.

    K-means (k-means++ init, seeded) on (h, w), each side in units of its own spread (standard deviation)
    so that the wider-ranging width does not decide every cluster alone: on CROHME that let a few tall
    images give every bucket the maximum height. Each bucket is its cluster's max height and max width,
    rounded up to a multiple of `multiple`, so every input size fits the bucket of its cluster. Of
    `restarts` seeded runs the one padding the sizes to the fewest pixels wins (each size in the smallest
    bucket holding it). Returned sorted by `bucket_rank`, duplicates removed; usable directly with
    `pad_batch` and `SizeBucketBatchSampler`.
    """
    if k < 1 or multiple < 1 or restarts < 1:
        raise ValueError(f"k, multiple and restarts must be >= 1, got {k}, {multiple}, {restarts}")
    sides = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if len(sides) == 0:
        raise ValueError("kmeans_buckets needs at least one size")
    points = sides / np.maximum(sides.std(axis=0), 1.0)
    k = min(k, len(np.unique(points, axis=0)))
    rng = np.random.default_rng(seed)
    best: tuple[float, list[Size]] | None = None
    for _ in range(restarts):
        labels = _kmeans_labels(points, k, rng, iters)
        buckets = set()
        for c in np.unique(labels):
            max_h, max_w = sides[labels == c].max(axis=0)
            buckets.add((padded_side(math.ceil(max_h), multiple), padded_side(math.ceil(max_w), multiple)))
        cost = _bucket_padding(sides, buckets)
        if best is None or cost < best[0]:
            best = (cost, sorted(buckets, key=bucket_rank))
    return best[1]


def _kmeans_labels(points: np.ndarray, k: int, rng: np.random.Generator, iters: int) -> np.ndarray:
    """Cluster index of each point after Lloyd iterations from a k-means++ start."""
    centers = _kmeans_pp_init(points, k, rng)
    labels = np.zeros(len(points), dtype=np.int64)
    for it in range(iters):
        dist = (points[:, None, 0] - centers[None, :, 0]) ** 2 + (
            points[:, None, 1] - centers[None, :, 1]
        ) ** 2
        new_labels = dist.argmin(axis=1)
        if it > 0 and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for c in range(len(centers)):
            members = points[labels == c]
            if len(members):
                centers[c] = members.mean(axis=0)
    return labels


def _bucket_padding(sides: np.ndarray, buckets: set[Size]) -> float:
    """Total area of the smallest bucket holding each (h, w) row of `sides` (all fit one)."""
    ranked = sorted(buckets, key=bucket_rank)
    areas = np.array([_area(b) for b in ranked], dtype=np.float64)
    return float(areas[smallest_bucket_indices(sides[:, 0], sides[:, 1], ranked)].sum())


def _kmeans_pp_init(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: spread initial centres proportionally to squared distance."""
    centers = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.asarray(centers)[None]) ** 2).sum(axis=2), axis=1)
        total = d2.sum()
        if total == 0:
            break
        centers.append(points[rng.choice(len(points), p=d2 / total)])
    return np.asarray(centers, dtype=np.float64)


# ----------------------------------------------------------------------------------------------- packing
def size_order(
    heights: np.ndarray,
    widths: np.ndarray,
    order: np.ndarray | None = None,
    *,
    multiple: int = PAD_MULTIPLE,
    buckets: Sequence[Size] | None = None,
) -> np.ndarray:
    """`order` (sample indices, default 0..n-1; `heights`, `widths` their sizes, aligned) sorted for
    packing: grouped by the smallest bucket holding each (with buckets), then by height rounded up to
    `multiple` (rows of equal padded height together), then by width. Stable: ties keep their order."""
    order = np.arange(len(heights)) if order is None else np.asarray(order)
    keys = [np.asarray(widths), np.ceil(np.asarray(heights) / multiple)]
    if buckets:
        keys.append(smallest_bucket_indices(heights, widths, sorted(buckets, key=bucket_rank)))
    return order[np.lexsort(keys)]


def pack_in_order(
    sizes: np.ndarray,
    order: np.ndarray,
    max_size: int,
    max_pixels: int,
    *,
    multiple: int = PAD_MULTIPLE,
    buckets: Sequence[Size] | None = None,
) -> list[list[int]]:
    """Cut `order` (indices into `sizes`, (N, 2) of (h, w)) into consecutive batches, greedily: a batch
    closes before the sample that would give it more than `max_size` samples or a padded area
    (`len * H * W`, `padded_shape` with `multiple` and `buckets`) over `max_pixels`. A sample over the
    budget on its own gets a batch of its own."""
    out: list[list[int]] = []
    current: list[int] = []
    max_h = max_w = 0
    for idx in np.asarray(order).tolist():
        sh, sw = (int(v) for v in sizes[idx])
        new_h, new_w = max(max_h, sh), max(max_w, sw)
        if current and (
            len(current) >= max_size
            or (len(current) + 1) * _area(padded_shape(new_h, new_w, multiple, buckets)) > max_pixels
        ):
            out.append(current)
            current, new_h, new_w = [], sh, sw
        current.append(idx)
        max_h, max_w = new_h, new_w
    if current:
        out.append(current)
    return out


def size_batches(
    sizes: Sequence[Size],
    max_size: int,
    max_pixels: int,
    *,
    multiple: int = PAD_MULTIPLE,
    buckets: Sequence[Size] | None = None,
) -> list[list[int]]:
    """Index batches of similar-size samples: `size_order`, then `pack_in_order` (same `multiple`/`buckets`).

    Inference passes `multiple=1`: sorted by exact (h, w), the budget counting the images' own sides.
    """
    array = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    order = size_order(array[:, 0], array[:, 1], multiple=multiple, buckets=buckets)
    return pack_in_order(array, order, max_size, max_pixels, multiple=multiple, buckets=buckets)


# ----------------------------------------------------------------------------------------------- batches
@dataclass
class Item:
    """One dataset sample: its id, canonical image (H, W) float32 ink-bright, token ids without specials."""

    id: str
    image: np.ndarray
    token_ids: list[int]


@dataclass
class Batch:
    """A padded batch. images (B,1,H,W) float32; pixel_mask (B,H,W) bool True=pad;
    tgt_in/tgt_out (B,T) int64 padded with <pad>=0; lengths (B,) = label length + 1 (the <eos>);
    sample_ids (B,) the items' ids; tgt_in_r2l/tgt_out_r2l the reversed-direction targets when training
    bidirectionally, else None."""

    images: Tensor
    pixel_mask: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    lengths: Tensor
    sample_ids: list[str]
    tgt_in_r2l: Tensor | None = None
    tgt_out_r2l: Tensor | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

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
    items: Sequence[Item], bidirectional: bool = False, buckets: Sequence[Size] | None = None
) -> Batch:
    """Pad images (`pad_batch`, into the smallest of the (h, w) `buckets` that holds them when given)
    and build L2R (and optionally R2L) targets."""
    images, pixel_mask = pad_batch([it.image for it in items], multiple=PAD_MULTIPLE, buckets=buckets)
    seqs = [it.token_ids for it in items]
    tgt_in, tgt_out = targets(seqs, Vocab.sos_id, Vocab.eos_id)
    batch = Batch(
        images=images,
        pixel_mask=pixel_mask,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        lengths=torch.tensor([len(s) + 1 for s in seqs], dtype=torch.long),
        sample_ids=[it.id for it in items],
    )
    if bidirectional:
        batch.tgt_in_r2l, batch.tgt_out_r2l = targets([s[::-1] for s in seqs], Vocab.eos_id, Vocab.sos_id)
    return batch


class Collate:
    """Picklable collate_fn (DataLoader workers) carrying the `bidirectional` flag and the size buckets."""

    def __init__(self, bidirectional: bool = False, buckets: Sequence[Size] | None = None):
        self.bidirectional = bidirectional
        self.buckets = list(buckets) if buckets else None

    def __call__(self, items: Sequence[Item]) -> Batch:
        return collate(items, self.bidirectional, self.buckets)


# ----------------------------------------------------------------------------------------------- sampler
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

    sizes: per-sample (h, w) in pixels *as the model will see them* (upper bounds).
    buckets: (h, w) shapes, sides multiples of `PAD_MULTIPLE`, that `collate` pads batches into
    (`kmeans_buckets` learns them): the budget then counts the bucket a batch lands in, and samples
    are grouped by the smallest bucket holding them before the size order below.
    Samples are sorted by `size_order` (padded height, then width) -- each size scaled by a random factor
    in [1 - jitter, 1 + jitter] per epoch so batch membership varies between epochs, ties in random
    order -- then packed by `pack_in_order`; the batch order is shuffled per epoch. A sample alone over the
    budget gets a batch of its own (counted in `oversized`). With `num_replicas > 1` (DDP) each rank takes
    every `num_replicas`-th batch; with `pad_replicas` the list is first padded by repeating batches so
    every rank gets the same count.
    """

    def __init__(
        self,
        sizes: Sequence[Size],
        max_pixels: int,
        max_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad_replicas: bool = True,
        jitter: float = 0.1,
        buckets: Sequence[Size] | None = None,
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
        self.buckets = sorted(buckets, key=bucket_rank) if buckets else None
        self.skip = 0  # batches of the current epoch already consumed (set when resuming mid-epoch)
        self._cache: tuple[int, list[list[int]]] | None = None
        self.oversized = int(
            sum(padded_area([(h, w)], self.buckets) > self.max_pixels for h, w in self.sizes.tolist())
        )
        # Lightning fixes the epoch length once and validates when batch_idx + 1 == that length, so
        # every epoch must yield the same number of batches: the count of the unjittered packing.
        self.num_batches = len(self._pack_sorted(np.arange(len(self.sizes)), *self.sizes.T))

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
        out = self._pack_sorted(order, h, w)
        if len(out) > self.num_batches:  # jitter packed worse: this epoch keeps only the random tie order
            out = self._pack_sorted(order, *self.sizes[order].T)
        out = self._split_to(out, self.num_batches)
        if self.sampler.shuffle:
            perm = self.sampler.rng(salt=1).permutation(len(out))
            out = [out[i] for i in perm]
        return out

    def _pack_sorted(self, order: np.ndarray, h: np.ndarray, w: np.ndarray) -> list[list[int]]:
        """Pack `order` sorted by the sizes `h`, `w` (aligned with it; jittered or not), budgets counted on
        the true sizes."""
        ordered = size_order(h, w, order, buckets=self.buckets)
        return pack_in_order(self.sizes, ordered, self.max_size, self.max_pixels, buckets=self.buckets)

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
