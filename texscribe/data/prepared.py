"""The prepared-dataset format: the contract between `texscribe data prepare` and training/evaluation.

```
<root>/manifest.tsv   id  image  tokens  source  height  width   (header line; tokens space-separated)
<root>/images/<file>.png   uint8 grey, ink white on black, cropped to ink
<root>/vocab.json     texscribe.latex.Vocab
<root>/report.json, report.md, skipped.tsv, plots/*.png
```
`image` is relative to the root. Ids are kept verbatim in the manifest; file names are sanitised.
Reading: `PreparedDataset.open`. Writing: `PreparedWriter`, the one writer behind `texscribe data prepare`,
`data render` and `data synth-handwriting`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from texscribe.data.sample import Skipped
from texscribe.errors import ConfigError, InputError
from texscribe.latex import Vocab

MANIFEST = "manifest.tsv"
VOCAB = "vocab.json"
IMAGES_DIR = "images"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SKIPPED = "skipped.tsv"
MANIFEST_COLUMNS = ("id", "image", "tokens", "source", "height", "width")
SKIPPED_COLUMNS = ("id", "source", "reason", "detail")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PreparedRecord:
    """One row of `manifest.tsv`; `image_path` is absolute, `height`/`width` in pixels."""

    id: str
    image_path: Path
    tokens: list[str]
    source: str
    height: int
    width: int


def image_filename(sample_id: str) -> str:
    """A file name safe on every OS for `sample_id`; a hash suffix keeps sanitised names unique."""
    clean = _UNSAFE.sub("_", sample_id).strip("._") or "image"
    if clean != sample_id or len(clean) > 100:
        digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:10]
        clean = f"{clean[:100]}-{digest}"
    return f"{clean}.png"


def tsv_field(value: str) -> str:
    """TSV cells cannot hold tabs or line breaks; replace them so one record stays one line."""
    return re.sub(r"[\t\r\n]+", " ", value)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8, \\n line ends) through a temporary file: a reader, such as a training run,
    never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_png_atomic(image: np.ndarray, dest: Path) -> None:
    """Save a canonical (H, W) image as `dest` through a temporary PNG (an interrupted run leaves no half file)."""
    from texscribe.images import save_png

    tmp = dest.with_name(dest.name + ".tmp.png")
    save_png(image, tmp)
    tmp.replace(dest)


def write_tsv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a header + rows TSV atomically (a reader never sees a half-written file)."""
    lines = ["\t".join(columns) + "\n"]
    lines += ["\t".join(tsv_field(str(v)) for v in row) + "\n" for row in rows]
    write_text_atomic(path, "".join(lines))


def write_prepared_manifest(root: Path, records: Sequence[PreparedRecord]) -> None:
    """`root/manifest.tsv` for `records`; image paths are written relative to `root` (they may lie outside it)."""
    rows = [
        (
            r.id,
            Path(os.path.relpath(r.image_path, root)).as_posix(),
            " ".join(r.tokens),
            r.source,
            r.height,
            r.width,
        )
        for r in records
    ]
    write_tsv(root / MANIFEST, MANIFEST_COLUMNS, rows)


def write_subset(root: Path, records: Sequence[PreparedRecord], vocab: Vocab | None = None) -> Path:
    """A prepared dataset at `root` listing `records` of other prepared datasets, whose images stay where
    they are; its vocabulary is `vocab`, or built from the records."""
    root.mkdir(parents=True, exist_ok=True)
    write_prepared_manifest(root, records)
    (vocab if vocab is not None else Vocab.build(r.tokens for r in records)).save(root / VOCAB)
    return root


def read_prepared_manifest(root: Path) -> list[PreparedRecord]:
    """Parse `<root>/manifest.tsv`; `InputError` naming the line for any malformed row."""
    path = root / MANIFEST
    lines = path.read_text(encoding="utf-8").split("\n")
    header = tuple(lines[0].rstrip("\r").split("\t"))
    if header != MANIFEST_COLUMNS:
        raise InputError(
            f"not a texscribe manifest: header {header!r}, expected {MANIFEST_COLUMNS!r}",
            source=str(path),
            line=1,
        )
    records = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(MANIFEST_COLUMNS):
            raise InputError(f"expected {len(MANIFEST_COLUMNS)} columns, got {len(cells)}", str(path), lineno)
        sample_id, image, tokens, source, height, width = cells
        try:
            h, w = int(height), int(width)
        except ValueError as exc:
            raise InputError(
                f"height/width must be integers, got {height!r}/{width!r}", str(path), lineno
            ) from exc
        records.append(PreparedRecord(sample_id, root / image, tokens.split(), source, h, w))
    return records


class PreparedWriter:
    """Writes the prepared dataset folder `root`, the same way for every tool that makes one.

    Images go to `image_path(id)` as they are made (`write_png_atomic`); `write` then puts down the
    manifest, vocabulary and skipped list, each atomically (a training run may be reading them), and deletes
    the PNGs of earlier runs that the new manifest does not list. `state` names the tool's resume log in the
    folder (`.prepare_state.tsv`, ...; None: none): appended as images are written, compacted at the end.
    """

    def __init__(self, root: Path, state: str | None = None):
        self.root = Path(root)
        self.images = self.root / IMAGES_DIR
        self.state_path = self.root / state if state else None

    def check_target(self) -> None:
        """Refuse a `root` that is a file, or a non-empty folder that is not a prepared dataset (neither a
        manifest nor this tool's state file): `InputError`, nothing written."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise InputError("output path exists and is not a folder", source=str(root))
        markers = [root / MANIFEST] + ([self.state_path] if self.state_path else [])
        if root.is_dir() and any(root.iterdir()) and not any(m.exists() for m in markers):
            raise InputError(
                f"output folder is not empty and is not a prepared dataset (no {' or '.join(m.name for m in markers)}); "
                "choose a new or empty --out folder",
                source=str(root),
            )

    def make_dirs(self) -> None:
        self.images.mkdir(parents=True, exist_ok=True)

    def image_path(self, sample_id: str) -> Path:
        """Where the image of `sample_id` goes (`image_filename`)."""
        return self.images / image_filename(sample_id)

    def open_state_log(self) -> TextIO:
        """The state file opened for appending one line per finished image (flush after each batch)."""
        assert self.state_path is not None, "this writer has no state file"
        return self.state_path.open("a", encoding="utf-8")

    def write(self, records: Sequence[PreparedRecord], vocab: Vocab, skipped: Sequence[Skipped]) -> None:
        """vocab.json, manifest.tsv and skipped.tsv for `records` / `skipped`; then the images under images/
        that `records` do not list (left by an earlier run with other settings, or a temp file) are deleted."""
        write_text_atomic(self.root / VOCAB, vocab.to_json())
        write_prepared_manifest(self.root, records)
        write_tsv(
            self.root / SKIPPED, SKIPPED_COLUMNS, [(s.id, s.source, s.reason, s.detail) for s in skipped]
        )
        keep = {r.image_path.name for r in records}
        for png in self.images.iterdir():
            if png.suffix == ".png" and png.name not in keep:
                png.unlink()

    def compact_state(self, lines: Iterable[str]) -> None:
        """Rewrite the state file with `lines` (each ending in a newline): the entries still worth reusing."""
        assert self.state_path is not None, "this writer has no state file"
        write_text_atomic(self.state_path, "".join(lines))


def parse_train_entry(entry: str) -> tuple[str, int]:
    """`data.train` entry -> (prepared folder, times its records appear per epoch).

    `DIR@K` (K a whole number >= 1) repeats a folder K times per epoch: a mixture's weights, so that 18 k
    real handwritten formulas are not drowned by 200 k rendered ones. A path that exists as written is
    taken literally, '@' and all. Raises `ConfigError` naming the entry for `DIR@0` or `DIR@-1`.
    """
    folder, sep, count = entry.rpartition("@")
    if not sep or not re.fullmatch(r"-?\d+", count) or Path(entry).exists():
        return entry, 1
    if int(count) < 1:
        raise ConfigError(f"data.train entry {entry!r}: the repeat count after '@' must be >= 1")
    return folder, int(count)


class DecodedImageCache:
    """Stored images kept decoded in memory as uint8, so that epochs after the first skip the PNG decode.

    Fills as images are first read, until `max_bytes` of pixels are held (then later images are decoded
    each time). Lossless: prepared PNGs are 8-bit, and uint8 / 255 is exactly what `images.read_png` returns.
    Each process fills its own copy (a DataLoader worker caches the images it reads), so the budget applies
    per worker.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._images: dict[Any, np.ndarray] = {}

    def load(self, key: Any, dataset: PreparedDataset, record: PreparedRecord) -> np.ndarray:
        """`dataset.load_image(record)` (canonical float32 (H, W)), from memory when cached under `key`."""
        cached = self._images.get(key)
        if cached is not None:
            self.hits += 1
            return cached.astype(np.float32) / 255.0
        self.misses += 1
        img = dataset.load_image(record)
        if self.bytes + img.size <= self.max_bytes:
            stored = np.round(img * 255.0).astype(np.uint8)
            if np.array_equal(stored.astype(np.float32) / 255.0, img):  # 8-bit content only: stays lossless
                self._images[key] = stored
                self.bytes += stored.nbytes
        return img


class PreparedDataset:
    """A prepared folder opened for reading: `.records`, `.vocab`, `.root`, `load_image(record)`."""

    def __init__(self, root: Path, records: list[PreparedRecord], vocab: Vocab):
        self.root = root
        self.records = records
        self.vocab = vocab

    @classmethod
    def open(cls, path: str | Path) -> PreparedDataset:
        """Open `path` (the folder holding manifest.tsv); `InputError` saying what is missing otherwise."""
        root = Path(path)
        if not root.is_dir():
            raise InputError(
                "prepared dataset folder not found; run `texscribe data prepare`", source=str(root)
            )
        missing = [name for name in (MANIFEST, VOCAB) if not (root / name).is_file()]
        if missing:
            raise InputError(
                f"not a prepared dataset (missing {', '.join(missing)}); create it with "
                f"`texscribe data prepare SOURCE --out {root}`",
                source=str(root),
            )
        try:
            vocab = Vocab.load(root / VOCAB)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"unreadable vocabulary: {exc}", source=str(root / VOCAB)) from exc
        return cls(root, read_prepared_manifest(root), vocab)

    def load_image(self, record: PreparedRecord) -> np.ndarray:
        """Canonical float32 (H, W) in [0, 1], ink bright (`texscribe.images.read_png`)."""
        from texscribe.images import read_png

        return read_png(record.image_path)

    @property
    def report(self) -> dict[str, Any]:
        """The `report.json` written by prepare ({} when absent)."""
        path = self.root / REPORT_JSON
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> PreparedRecord:
        return self.records[index]

    def __iter__(self) -> Iterator[PreparedRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.root)!r}, {len(self.records)} records, vocab {len(self.vocab)})"
