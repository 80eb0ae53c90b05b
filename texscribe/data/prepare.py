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
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from texscribe.data.cleaning import Drop, LabelCleaner
from texscribe.data.prepared import (
    IMAGES_DIR,
    MANIFEST,
    SKIPPED,
    SKIPPED_COLUMNS,
    VOCAB,
    PreparedRecord,
    image_filename,
    write_manifest,
    write_tsv,
)
from texscribe.data.readers import SourceSpec, open_source
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import ImageError, InputError, TexscribeError
from texscribe.images import DEFAULT_MAX_PIXELS
from texscribe.latex import Vocab

STATE = ".prepare_state.tsv"
DEFAULT_MAX_LABEL_LEN = 512  # a sanity bound; training applies its own (DataConfig.max_label_len)


@dataclass
class PrepareResult:
    """What a `prepare` run produced; `dropped` maps reason code -> count."""

    out: Path
    sources: list[str]
    n_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    per_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unknown_tokens: Counter = field(default_factory=Counter)
    vocab_size: int = 0
    written: int = 0
    reused: int = 0
    wall_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    id: str
    origin: str
    payload: bytes | np.ndarray
    dest: Path
    key: str


@dataclass(frozen=True)
class _Settings:
    margin: int
    max_height: int | None
    max_pixels: int

    def tag(self) -> str:
        return f"m{self.margin}-h{self.max_height}-p{self.max_pixels}-v1"


def _render(job: _Job, settings: _Settings) -> tuple[str, int, int] | Drop:
    """Worker: decode, check ink, crop, optionally shrink, write PNG. Returns (key, h, w) or a Drop."""
    from texscribe.images import crop_to_ink, fit_height, has_ink, load_image, save_png

    try:
        img = load_image(job.payload, origin=job.origin, max_pixels=settings.max_pixels)
    except ImageError as exc:
        return Drop("bad_image", str(exc))
    if not has_ink(img):
        return Drop("no_ink", f"{job.origin}: blank image (no ink pixels)")
    img = crop_to_ink(img, margin=settings.margin)
    if settings.max_height and img.shape[0] > settings.max_height:
        img = fit_height(img, min_height=1, max_height=settings.max_height, max_width=10**9)
    tmp = job.dest.with_name(job.dest.name + ".tmp.png")
    try:
        save_png(img, tmp)
        tmp.replace(job.dest)
    except (ImageError, OSError) as exc:
        return Drop("bad_image", f"{job.origin}: cannot write {job.dest}: {exc}")
    return job.key, int(img.shape[0]), int(img.shape[1])


def _render_star(args: tuple[_Job, _Settings]) -> tuple[str, int, int] | Drop:
    return _render(*args)


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


def _check_out_dir(out: Path) -> None:
    """Refuse to fill a folder that holds something other than a prepared dataset."""
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", source=str(out))
    if out.is_dir() and any(out.iterdir()) and not ((out / MANIFEST).exists() or (out / STATE).exists()):
        raise InputError(
            "output folder is not empty and is not a prepared dataset; choose a new or empty --out folder",
            source=str(out),
        )


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


def prepare(
    sources: list[str],
    out: str | Path,
    *,
    format: str = "auto",
    vocab_from: str | Path | None = None,
    max_label_len: int | None = DEFAULT_MAX_LABEL_LEN,
    max_height: int | None = None,
    margin: int = 4,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 2,
    chunksize: int = 32,
    limit: int | None = None,
    cleaner: LabelCleaner | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Read `sources` (`PATH[:SPLIT]` specs), clean them and write a prepared dataset to `out`.

    `vocab_from`: a prepared folder (or vocab.json) whose vocabulary is reused (for test splits);
    tokens outside it are kept and counted in `unknown_tokens`. `limit`: read at most that many
    items per source. `workers <= 1` runs in-process.
    """
    from tqdm import tqdm

    from texscribe.data.report import write_report

    started = time.perf_counter()
    out = Path(out)
    _check_out_dir(out)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    settings = _Settings(margin, max_height, max_pixels)
    cleaner = cleaner or LabelCleaner(max_label_len=max_label_len)
    base_vocab = _load_vocab(Path(vocab_from)) if vocab_from else None
    specs = [SourceSpec.parse(s) for s in sources]
    result = PrepareResult(out=out, sources=[str(s) for s in specs])
    state = _load_state(out / STATE)
    skipped: list[Skipped] = []
    records: dict[str, PreparedRecord] = {}
    pending: dict[str, tuple[str, list[str], str]] = {}  # id -> (source, tokens, file name)
    seen: dict[str, str] = {}

    def drop(item_id: str, source: str, reason: str, detail: str) -> None:
        skipped.append(Skipped(item_id, source, reason, detail))
        result.dropped[reason] += 1
        result.per_source[source][reason] += 1

    def jobs(items: Iterable[Sample | Skipped], bar: tqdm) -> Iterator[_Job]:
        for item in items:
            result.n_in += 1
            result.per_source[item.source]["in"] += 1
            bar.update(1)
            if isinstance(item, Skipped):
                drop(item.id, item.source, item.reason, item.detail)
                continue
            if item.id in seen:
                drop(
                    item.id,
                    item.source,
                    "duplicate_id",
                    f"{item.origin}: id already read from {seen[item.id]}",
                )
                continue
            seen[item.id] = item.origin
            if any(ch in item.id for ch in "\t\r\n"):
                drop(item.id, item.source, "bad_id", f"{item.origin}: id contains a tab or line break")
                continue
            tokens = cleaner(item)
            if isinstance(tokens, Drop):
                drop(item.id, item.source, tokens.reason, tokens.detail)
                continue
            if item.load is None:
                drop(item.id, item.source, "missing_image", f"{item.origin}: no image for this label")
                continue
            try:
                payload = item.load()
            except FileNotFoundError as exc:
                drop(item.id, item.source, "missing_image", f"{item.origin}: {exc}")
                continue
            except (TexscribeError, OSError) as exc:
                drop(item.id, item.source, "bad_image", f"{item.origin}: {exc}")
                continue
            name = image_filename(item.id)
            dest = out / IMAGES_DIR / name
            key = _payload_key(payload, settings)
            pending[item.id] = (item.source, tokens, name)
            previous = state.get(name)
            if previous and previous[0] == key and dest.is_file():
                finish(item.id, previous)
                result.reused += 1
                continue
            yield _Job(item.id, item.origin, payload, dest, key)

    def finish(item_id: str, outcome: tuple[str, int, int] | Drop) -> None:
        source, tokens, name = pending.pop(item_id)
        if isinstance(outcome, Drop):
            drop(item_id, source, outcome.reason, outcome.detail)
            return
        key, height, width = outcome
        state[name] = outcome
        records[item_id] = PreparedRecord(item_id, out / IMAGES_DIR / name, tokens, source, height, width)
        result.per_source[source]["kept"] += 1

    streams = [open_source(spec, format) for spec in specs]  # every source checked before any work
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        with (out / STATE).open("a", encoding="utf-8") as state_log:
            for spec, items in zip(specs, streams):
                if limit is not None:
                    items = itertools.islice(items, limit)
                with tqdm(desc=f"prepare {spec}", unit="item", disable=not progress) as bar:
                    for chunk in _chunks(jobs(items, bar), max(1, workers) * chunksize * 4):
                        args = [(job, settings) for job in chunk]
                        outcomes = (
                            pool.imap(_render_star, args, chunksize=chunksize)
                            if pool
                            else map(_render_star, args)
                        )
                        for job, outcome in zip(chunk, outcomes):
                            finish(job.id, outcome)
                            if not isinstance(outcome, Drop):
                                result.written += 1
                                state_log.write(f"{job.dest.name}\t{job.key}\t{outcome[1]}\t{outcome[2]}\n")
                        state_log.flush()
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or an error: do not wait for queued images
        raise
    if pool is not None:
        pool.close()
        pool.join()

    kept = [records[i] for i in seen if i in records]
    result.kept = len(kept)
    vocab = base_vocab or Vocab.build(r.tokens for r in kept)
    if base_vocab is not None:
        result.unknown_tokens = Counter(t for r in kept for t in r.tokens if t not in base_vocab)
    result.vocab_size = len(vocab)
    vocab.save(out / (VOCAB + ".tmp"))
    (out / (VOCAB + ".tmp")).replace(out / VOCAB)  # atomic: a training run may be reading it
    write_manifest(out, kept)
    write_tsv(out / SKIPPED, SKIPPED_COLUMNS, [(s.id, s.source, s.reason, s.detail) for s in skipped])
    _remove_orphans(out, {r.image_path.name for r in kept}, state)
    result.wall_s = time.perf_counter() - started
    write_report(out, result, kept, skipped, vocab_from=str(vocab_from) if vocab_from else None)
    return result


def _remove_orphans(out: Path, keep: set[str], state: dict[str, tuple[str, int, int]]) -> None:
    """Delete PNGs from earlier runs that the new manifest no longer lists; rewrite the state file."""
    for png in (out / IMAGES_DIR).iterdir():
        if png.name not in keep and png.suffix == ".png":
            png.unlink()
    lines = [
        f"{name}\t{key}\t{h}\t{w}\n" for name in sorted(keep) if name in state for key, h, w in [state[name]]
    ]
    tmp = out / (STATE + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(out / STATE)
