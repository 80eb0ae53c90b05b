"""`prepare`: sources -> cleaned, cropped, tokenised prepared dataset (see `texscribe.data.prepared`).

The main process walks the readers (cheap: listing, label tokenising and cleaning, reading bytes);
a pool of workers decodes, crops and writes the PNGs (the costly part), in bounded chunks so memory
stays flat. Re-running with the same inputs and settings re-uses every PNG already written (a
state file records a hash of each source image + settings), so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from texscribe.data.cleaning import Drop, LabelCleaner, label_rules
from texscribe.data.prepared import VOCAB, PreparedRecord, PreparedWriter, write_png_atomic
from texscribe.data.readers import SourceSpec, open_source
from texscribe.data.report import DatasetCounts, write_report
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import ImageError, InputError, TexscribeError
from texscribe.images import DEFAULT_MAX_PIXELS
from texscribe.latex import Vocab

STATE = ".prepare_state.tsv"
DEFAULT_MAX_LABEL_LEN = 512  # a sanity bound; training applies its own (DataConfig.max_label_len)


@dataclass(frozen=True)
class _Job:
    """One image to decode, crop and write to `dest`; `key` hashes its bytes and the settings."""

    id: str
    origin: str
    payload: bytes | np.ndarray
    dest: Path
    key: str


_NO_BOUND = 10**9  # px: "no limit" for a size bound


@dataclass(frozen=True)
class _Settings:
    margin: int
    max_height: int | None
    max_pixels: int
    ink_height: float | None = None

    def tag(self) -> str:
        # absent without --ink-height: the keys of older preparations; "u": enlargement not bounded by a box
        ink = f"-i{self.ink_height:g}u" if self.ink_height else ""
        return f"m{self.margin}-h{self.max_height}-p{self.max_pixels}{ink}-v1"


def _decode_and_crop(job: _Job, settings: _Settings) -> tuple[str, int, int] | Drop:
    """Worker: decode, check ink, crop, optionally shrink, write PNG. Returns (key, h, w) or a Drop."""
    from texscribe.config import DataConfig
    from texscribe.images import crop_to_ink, fit_height, has_ink, load_image, normalise_ink_size

    try:
        img = load_image(job.payload, origin=job.origin, max_pixels=settings.max_pixels)
    except ImageError as exc:
        return Drop("bad_image", str(exc))
    if not has_ink(img):
        return Drop("no_ink", f"{job.origin}: blank image (no ink pixels)")
    img = crop_to_ink(img, margin=settings.margin)
    if settings.ink_height:  # stored at the model's writing size, so training sizes batches from the manifest
        # no input box here: DataConfig's default box (256 x 1024 at scale 1) is not the model's, and
        # training's `fit_height` fits every image into the model's own box anyway
        unbounded = DataConfig(
            ink_height=settings.ink_height, img_max_height=_NO_BOUND, img_max_width=_NO_BOUND
        )
        img = normalise_ink_size(img, unbounded)
    if settings.max_height and img.shape[0] > settings.max_height:
        img = fit_height(img, min_height=1, max_height=settings.max_height, max_width=_NO_BOUND)
    try:
        write_png_atomic(img, job.dest)
    except (ImageError, OSError) as exc:
        return Drop("bad_image", f"{job.origin}: cannot write {job.dest}: {exc}")
    return job.key, int(img.shape[0]), int(img.shape[1])


def _decode_and_crop_star(args: tuple[_Job, _Settings]) -> tuple[str, int, int] | Drop:
    return _decode_and_crop(*args)


def _payload_key(payload: bytes | np.ndarray, settings: _Settings) -> str:
    h = hashlib.sha1(settings.tag().encode())
    if isinstance(payload, np.ndarray):
        h.update(f"{payload.shape}{payload.dtype}".encode())
        h.update(np.ascontiguousarray(payload).tobytes())
    else:
        h.update(payload)
    return h.hexdigest()


def _load_state(path: Path) -> dict[str, tuple[str, int, int]]:
    """file name -> (key, height, width) of PNGs written by earlier runs."""
    state: dict[str, tuple[str, int, int]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = line.split("\t")
            if len(cells) == 4 and cells[2].isdigit() and cells[3].isdigit():
                state[cells[0]] = (cells[1], int(cells[2]), int(cells[3]))
    return state


def _state_line(name: str, key: str, height: int, width: int) -> str:
    return f"{name}\t{key}\t{height}\t{width}\n"


def _load_vocab(path: Path) -> Vocab:
    file = path / VOCAB if path.is_dir() else path
    if not file.is_file():
        raise InputError(
            f"--vocab-from: no {VOCAB} found; point it at a prepared dataset folder", source=str(path)
        )
    return Vocab.load(file)


def _chunks(items: Iterable[_Job], size: int) -> Iterator[list[_Job]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class _Preparation:
    """One `prepare` run's bookkeeping: items read, kept, dropped, and the images still being made.

    `jobs` turns a source's items into image jobs (dropping what cannot be used, reusing images of earlier
    runs); `finish` records each job's outcome; `kept` lists the records in reading order.
    """

    def __init__(
        self, writer: PreparedWriter, settings: _Settings, cleaner: LabelCleaner, counts: DatasetCounts
    ):
        self.writer, self.settings, self.cleaner, self.counts = writer, settings, cleaner, counts
        self.state = _load_state(writer.state_path)  # file name -> (key, h, w) of images already written
        self.skipped: list[Skipped] = []
        self.records: dict[str, PreparedRecord] = {}
        self.pending: dict[str, tuple[str, list[str], str]] = {}  # id -> (source, tokens, file name)
        self.seen: dict[str, str] = {}  # id -> where it was read first

    def drop(self, item_id: str, source: str, reason: str, detail: str) -> None:
        self.skipped.append(Skipped(item_id, source, reason, detail))
        self.counts.count_dropped(source, reason)

    def jobs(self, items: Iterable[Sample | Skipped], bar: Any) -> Iterator[_Job]:
        """An image job per usable item; dropped items are recorded, reusable images finished at once."""
        for item in items:
            self.counts.count_read(item.source)
            bar.update(1)
            if isinstance(item, Skipped):
                self.drop(item.id, item.source, item.reason, item.detail)
                continue
            tokens = self._label(item)
            payload = self._payload(item) if tokens is not None else None
            if tokens is None or payload is None:
                continue
            dest = self.writer.image_path(item.id)
            name = dest.name
            key = _payload_key(payload, self.settings)
            self.pending[item.id] = (item.source, tokens, name)
            previous = self.state.get(name)
            if previous and previous[0] == key and dest.is_file():
                self.finish(item.id, previous)
                self.counts.reused += 1
                continue
            yield _Job(item.id, item.origin, payload, dest, key)

    def _label(self, item: Sample) -> list[str] | None:
        """The cleaned tokens of a new, well-named item; None (and the item dropped) otherwise."""
        if item.id in self.seen:
            self.drop(
                item.id,
                item.source,
                "duplicate_id",
                f"{item.origin}: id already read from {self.seen[item.id]}",
            )
            return None
        self.seen[item.id] = item.origin
        if any(ch in item.id for ch in "\t\r\n"):
            self.drop(item.id, item.source, "bad_id", f"{item.origin}: id contains a tab or line break")
            return None
        tokens = self.cleaner(item)
        if isinstance(tokens, Drop):
            self.drop(item.id, item.source, tokens.reason, tokens.detail)
            return None
        return tokens

    def _payload(self, item: Sample) -> bytes | np.ndarray | None:
        """The item's image bytes or pixels; None (and the item dropped) when there are none."""
        if item.load is None:
            self.drop(item.id, item.source, "missing_image", f"{item.origin}: no image for this label")
            return None
        try:
            return item.load()
        except FileNotFoundError as exc:
            self.drop(item.id, item.source, "missing_image", f"{item.origin}: {exc}")
        except (TexscribeError, OSError) as exc:
            self.drop(item.id, item.source, "bad_image", f"{item.origin}: {exc}")
        return None

    def finish(self, item_id: str, outcome: tuple[str, int, int] | Drop) -> None:
        """Record the outcome of an item's image: a kept record, or a drop."""
        source, tokens, name = self.pending.pop(item_id)
        if isinstance(outcome, Drop):
            self.drop(item_id, source, outcome.reason, outcome.detail)
            return
        key, height, width = outcome
        self.state[name] = outcome
        self.records[item_id] = PreparedRecord(
            item_id, self.writer.images / name, tokens, source, height, width
        )
        self.counts.count_kept(source)

    def kept(self) -> list[PreparedRecord]:
        """The kept records in the order their items were read."""
        return [self.records[i] for i in self.seen if i in self.records]

    def state_lines(self, kept: list[PreparedRecord]) -> list[str]:
        """The state file's lines for the images of `kept` (sorted by file name)."""
        names = sorted({r.image_path.name for r in kept})
        return [_state_line(name, *self.state[name]) for name in names if name in self.state]


def prepare(
    sources: list[str],
    out: str | Path,
    *,
    format: str = "auto",
    vocab_from: str | Path | None = None,
    max_label_len: int | None = DEFAULT_MAX_LABEL_LEN,
    max_height: int | None = None,
    margin: int = 4,
    ink_height: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 2,
    chunksize: int = 32,
    limit: int | None = None,
    cleaner: LabelCleaner | None = None,
    multiline: str = "drop",
    stroke_height: float | None = None,
    progress: bool = True,
) -> DatasetCounts:
    """Read `sources` (`PATH[:SPLIT]` specs), clean them and write a prepared dataset to `out`.

    `vocab_from`: a prepared folder (or vocab.json) whose vocabulary is reused (for test splits);
    tokens outside it are kept and counted in `unknown_tokens`. `limit`: read at most that many
    items per source. `workers <= 1` runs in-process. `ink_height`: store every image with its writing
    size normalised to that symbol height (`images.normalise_ink_size`, default tolerance and pen), for
    training a model whose `data.ink_height` is the same: the manifest's sizes are then the sizes
    training sees, so batches are sized right (print rendered at 7 px symbols would otherwise be
    enlarged only after its batch was planned). `multiline`: `drop` (default: handwriting sources and the
    headline evaluation splits hold one line of symbols), `keep` or `only` the matrices, arrays, cases and
    `\\\\` rows (`cleaning.MULTILINE_POLICIES`); ignored when a `cleaner` is given. `stroke_height`: InkML
    sources are drawn with strokes this tall (px, default 28) and the usual pen: small writing, whose
    strokes are thick for its size, as a student's pen leaves it (combine with `ink_height` to store it
    as the model's preprocessing will see it).
    """
    if ink_height is not None and not ink_height > 0:
        raise InputError(f"--ink-height must be a positive symbol height in px, got {ink_height}")
    if stroke_height is not None and not 2 <= stroke_height <= 1000:
        raise InputError(f"--stroke-height must be a stroke height in px in [2, 1000], got {stroke_height}")
    started = time.perf_counter()
    writer = PreparedWriter(Path(out), STATE)
    writer.check_target()
    writer.make_dirs()
    settings = _Settings(margin, max_height, max_pixels, ink_height)
    base_vocab = _load_vocab(Path(vocab_from)) if vocab_from else None
    specs = [SourceSpec.parse(s) for s in sources]
    counts = DatasetCounts(out=writer.root, sources=[str(s) for s in specs])
    run = _Preparation(
        writer,
        settings,
        cleaner or LabelCleaner(max_label_len=max_label_len, rules=label_rules(multiline)),
        counts,
    )
    # every source checked before any work
    streams = [open_source(spec, format, stroke_height=stroke_height) for spec in specs]
    if limit is not None:
        streams = [itertools.islice(items, limit) for items in streams]
    _make_images(run, specs, streams, workers, chunksize, progress)

    kept = run.kept()
    counts.kept = len(kept)
    vocab = base_vocab or Vocab.build(r.tokens for r in kept)
    if base_vocab is not None:
        counts.unknown_tokens = Counter(t for r in kept for t in r.tokens if t not in base_vocab)
    counts.vocab_size = len(vocab)
    writer.write(kept, vocab, run.skipped)
    writer.compact_state(run.state_lines(kept))
    counts.wall_s = time.perf_counter() - started
    write_report(writer.root, counts, kept, run.skipped, vocab_from=str(vocab_from) if vocab_from else None)
    return counts


def _make_images(
    run: _Preparation,
    specs: list[SourceSpec],
    streams: list[Iterable[Sample | Skipped]],
    workers: int,
    chunksize: int,
    progress: bool,
) -> None:
    """Read every source and decode, crop and write its images, `workers` processes at a time (in-process
    for <= 1), in bounded chunks so memory stays flat; each written image is logged to the state file."""
    from tqdm import tqdm

    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        with run.writer.open_state_log() as state_log:
            for spec, items in zip(specs, streams):
                with tqdm(desc=f"prepare {spec}", unit="item", disable=not progress) as bar:
                    for chunk in _chunks(run.jobs(items, bar), max(1, workers) * chunksize * 4):
                        args = [(job, run.settings) for job in chunk]
                        outcomes = (
                            pool.imap(_decode_and_crop_star, args, chunksize=chunksize)
                            if pool
                            else map(_decode_and_crop_star, args)
                        )
                        for job, outcome in zip(chunk, outcomes):
                            run.finish(job.id, outcome)
                            if not isinstance(outcome, Drop):
                                run.counts.written += 1
                                state_log.write(_state_line(job.dest.name, job.key, outcome[1], outcome[2]))
                        state_log.flush()
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or an error: do not wait for queued images
        raise
    if pool is not None:
        pool.close()
        pool.join()
