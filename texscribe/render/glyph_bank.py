"""A bank of handwritten glyphs cut from CROHME InkML files: every symbol trace group with its token.

Each glyph keeps its pen strokes, normalised per file: translated so its ink box starts at (0, 0) and
divided by the file's reference height (the median ink height of its letters and digits), so a dot
stays small next to the same writer's digits and the writer's aspect and stroke style are kept.
Units are therefore "writer letter heights", y downwards. Labels are mapped to the project's token
scheme (`\\lt` -> `<`, `'` -> `\\prime`); a symbol whose label is not one token is left out and counted.

`GlyphBank.build(inkml_zip)` reads the `train` split (never a test split); `load_or_build` caches the
arrays as one `.npz` keyed by the source file's size and mtime, so workers load it in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from texscribe.data.readers.inkml import InkmlDocument
from texscribe.errors import InputError, LabelError
from texscribe.latex import normalize, tokenize

BANK_VERSION = 1
BANK_SPLIT = "train"  # the 2014 split is the test set: its strokes never enter the bank
# Tokens drawn with another token's glyphs (the InkML files label no symbol with them).
ALIASES = {"\\cdot": ".", "\\cdots": "\\ldots"}
_SIMPLIFY = 0.01  # drop pen points closer than this (letter heights) to the last kept one


def symbol_token(label: str) -> str | None:
    """An InkML symbol label as one project token (`\\lt` -> `<`, `\\sqrt` -> `\\sqrt`), or None."""
    try:
        tokens = normalize(tokenize(label.strip()))
    except LabelError:
        return None
    if not tokens:
        return None
    head, rest = tokens[0], tokens[1:]
    return head if all(t in "{}" for t in rest) and head not in "{}^_" else None


def writer_of(annotations: dict[str, str], file_id: str) -> str:
    """The writer named in the file, or the file itself (one expression, one hand) when none is named."""
    writer = annotations.get("writer", "").strip()
    return writer if writer and writer.lower() != "unknown" else f"file:{file_id}"


@dataclass
class BankBuild:
    """What building a bank read and left out."""

    files: int = 0
    symbols: int = 0
    unmapped: Counter = field(default_factory=Counter)  # InkML label -> count (not one token)
    empty: int = 0  # symbol trace groups without points


@dataclass
class GlyphBank:
    """Handwritten glyphs as flat arrays (the `.npz` layout).

    tokens (T,), writers (W,), files (F,): names. glyph_token / glyph_writer / glyph_file (G,): indices.
    glyph_strokes (G + 1,): glyph g owns strokes glyph_strokes[g]:glyph_strokes[g + 1].
    stroke_points (S + 1,): stroke s owns points[stroke_points[s]:stroke_points[s + 1]].
    points (P, 2) float32: x, y in the writer's letter heights, y down, each glyph's box at (0, 0).
    glyph_size (G, 2) float32: the glyph's ink width and height in the same units.
    """

    tokens: list[str]
    writers: list[str]
    files: list[str]
    glyph_token: np.ndarray
    glyph_writer: np.ndarray
    glyph_file: np.ndarray
    glyph_strokes: np.ndarray
    stroke_points: np.ndarray
    points: np.ndarray
    glyph_size: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)  # how it was built (files, symbols, unmapped labels)

    def __post_init__(self) -> None:
        self._by_token: dict[str, np.ndarray] = {}
        order = np.argsort(self.glyph_token, kind="stable")
        bounds = np.searchsorted(self.glyph_token[order], np.arange(len(self.tokens) + 1))
        for t, name in enumerate(self.tokens):
            self._by_token[name] = order[bounds[t] : bounds[t + 1]]
        self._by_writer_token: dict[tuple[int, str], np.ndarray] = {}
        pairs = self.glyph_writer.astype(np.int64) * len(self.tokens) + self.glyph_token
        order = np.argsort(pairs, kind="stable")
        keys, starts = np.unique(pairs[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for key, a, b in zip(keys, starts, ends):
            self._by_writer_token[
                (int(key) // len(self.tokens), self.tokens[int(key) % len(self.tokens)])
            ] = order[a:b]

    def __len__(self) -> int:
        return len(self.glyph_token)

    def has(self, token: str) -> bool:
        """Whether `token` can be drawn (directly or through `ALIASES`)."""
        return len(self.glyphs_of(token)) > 0

    def glyphs_of(self, token: str, writer: int | None = None) -> np.ndarray:
        """Glyph indices of `token` (of one writer when given; empty when that writer never wrote it)."""
        token = token if token in self._by_token else ALIASES.get(token, token)
        if writer is None:
            return self._by_token.get(token, np.empty(0, dtype=np.int64))
        return self._by_writer_token.get((writer, token), np.empty(0, dtype=np.int64))

    def strokes(self, glyph: int) -> list[np.ndarray]:
        """The glyph's strokes, each an (N, 2) float64 view-copy in letter heights, y down."""
        s0, s1 = self.glyph_strokes[glyph], self.glyph_strokes[glyph + 1]
        bounds = self.stroke_points[s0 : s1 + 1]
        return [self.points[a:b].astype(np.float64) for a, b in zip(bounds[:-1], bounds[1:])]

    def counts(self) -> Counter:
        """Glyphs per token."""
        return Counter({t: len(ix) for t, ix in self._by_token.items() if len(ix)})

    def writers_of(self, token: str) -> np.ndarray:
        """Writer indices of every glyph of `token`."""
        return self.glyph_writer[self.glyphs_of(token)]

    # ------------------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, inkml_zip: str | Path, split: str = BANK_SPLIT) -> tuple[GlyphBank, BankBuild]:
        """Cut every symbol trace group of `split` out of a CROHME InkML zip or folder."""
        from texscribe.data.readers.archive import Archive
        from texscribe.data.readers.inkml import choose_inkml_split, parse_inkml

        if split != BANK_SPLIT:
            raise InputError(f"the glyph bank is built from the {BANK_SPLIT!r} split only, not {split!r}")
        archive = Archive.open(Path(inkml_zip))
        names = [n for n in archive.names if n.lower().endswith(".inkml")]
        chosen, _ = choose_inkml_split(names, split, str(inkml_zip))
        documents = (
            (PurePosixPath(name).stem, parse_inkml(archive.read(name), archive.origin(name)))
            for name in chosen
        )
        return cls.from_documents(documents, source=str(inkml_zip))

    @classmethod
    def from_documents(
        cls, documents: Iterable[tuple[str, InkmlDocument]], source: str = ""
    ) -> tuple[GlyphBank, BankBuild]:
        """A bank from parsed InkML documents, each with its file id (the writer when none is named)."""
        rows: list[tuple[str, str, str, list[np.ndarray]]] = []  # token, writer, file, strokes
        stats = BankBuild()
        for file_id, doc in documents:
            stats.files += 1
            writer = writer_of(doc.annotations, file_id)
            rows.extend((token, writer, file_id, strokes) for token, strokes in _file_glyphs(doc, stats))
        return cls.from_rows(rows, source=source), stats

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, str, list[np.ndarray]]], source: str = "") -> GlyphBank:
        """A bank from (token, writer, file, normalised strokes) rows."""
        tokens = sorted({r[0] for r in rows})
        writers = sorted({r[1] for r in rows})
        files = sorted({r[2] for r in rows})
        t_ix = {t: i for i, t in enumerate(tokens)}
        w_ix = {w: i for i, w in enumerate(writers)}
        f_ix = {f: i for i, f in enumerate(files)}
        strokes = [s for r in rows for s in r[3]]
        points = np.concatenate(strokes).astype(np.float32) if strokes else np.zeros((0, 2), np.float32)
        sizes = [np.ptp(np.concatenate(r[3]), axis=0) for r in rows]
        return cls(
            tokens=tokens,
            writers=writers,
            files=files,
            glyph_token=np.array([t_ix[r[0]] for r in rows], dtype=np.int32),
            glyph_writer=np.array([w_ix[r[1]] for r in rows], dtype=np.int32),
            glyph_file=np.array([f_ix[r[2]] for r in rows], dtype=np.int32),
            glyph_strokes=np.cumsum([0] + [len(r[3]) for r in rows]).astype(np.int64),
            stroke_points=np.cumsum([0] + [len(s) for s in strokes]).astype(np.int64),
            points=points,
            glyph_size=np.array(sizes, dtype=np.float32).reshape(-1, 2),
            source=source,
        )

    # ------------------------------------------------------------------------------------------- files
    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write the bank as one `.npz` (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        info = {**self.meta, **(meta or {}), "version": BANK_VERSION, "source": self.source}
        np.savez(
            tmp,
            tokens=np.array(self.tokens),
            writers=np.array(self.writers),
            files=np.array(self.files),
            glyph_token=self.glyph_token,
            glyph_writer=self.glyph_writer,
            glyph_file=self.glyph_file,
            glyph_strokes=self.glyph_strokes,
            stroke_points=self.stroke_points,
            points=self.points,
            glyph_size=self.glyph_size,
            meta=np.array(json.dumps(info)),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> GlyphBank:
        """Read a bank written by `save`; `InputError` for another version or a damaged file."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != BANK_VERSION:
                    raise InputError(
                        f"glyph bank version {meta.get('version')}, expected {BANK_VERSION}; delete it to rebuild",
                        source=str(path),
                    )
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"unreadable glyph bank ({exc}); delete it to rebuild", source=str(path)
            ) from exc
        names = {k: [str(v) for v in arrays.pop(k)] for k in ("tokens", "writers", "files")}
        return cls(**names, **arrays, source=meta.get("source", ""), meta=meta)


def _file_glyphs(doc: InkmlDocument, stats: BankBuild) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(token, strokes) of each symbol of one InkML document, normalised by the file's letter height."""
    found = []
    for symbol in doc.symbols:
        stats.symbols += 1
        token = symbol_token(symbol.label)
        if token is None:
            stats.unmapped[symbol.label] += 1
            continue
        strokes = [doc.traces[i][np.isfinite(doc.traces[i]).all(axis=1)] for i in symbol.traces]
        strokes = [s for s in strokes if len(s)]
        if not strokes:
            stats.empty += 1
            continue
        found.append((token, strokes))
    if not found:
        return
    reference = reference_height([t for t, _ in found], [np.concatenate(s) for _, s in found])
    for token, strokes in found:
        low = np.concatenate(strokes).min(axis=0)
        yield token, [_simplify((s - low) / reference) for s in strokes]


def reference_height(tokens: list[str], points: list[np.ndarray]) -> float:
    """A file's unit: the median ink height of its letters and digits (of its other upright glyphs
    when it has none, of all its glyphs as a last resort)."""
    sizes = np.array([np.ptp(p, axis=0) for p in points])  # (G, 2) w, h
    heights = sizes[:, 1]
    body = np.array([len(t) == 1 and t.isalnum() for t in tokens])
    upright = heights > 0.5 * sizes[:, 0]
    for mask in (body & (heights > 0), upright & (heights > 0)):
        if mask.any():
            return float(np.median(heights[mask]))
    extent = sizes.max(axis=1)
    return float(np.median(extent[extent > 0])) if (extent > 0).any() else 1.0


def _simplify(stroke: np.ndarray) -> np.ndarray:
    """Drop points closer than `_SIMPLIFY` to the last kept point (the pen's last point is always kept)."""
    if len(stroke) <= 2:
        return stroke
    keep = [0]
    last = stroke[0]
    for i in range(1, len(stroke) - 1):
        if np.abs(stroke[i] - last).max() >= _SIMPLIFY:
            keep.append(i)
            last = stroke[i]
    keep.append(len(stroke) - 1)
    return stroke[keep]


def cache_path(inkml_zip: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the bank of `inkml_zip` is cached: a name keyed by its absolute path, size and mtime."""
    src = Path(inkml_zip).resolve()
    stat = src.stat()
    key = hashlib.sha1(f"{src}|{stat.st_size}|{int(stat.st_mtime)}|v{BANK_VERSION}".encode()).hexdigest()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / f"glyph_bank-{key[:12]}.npz"


def default_cache_dir() -> Path:
    """$TEXSCRIBE_CACHE, else $XDG_CACHE_HOME/texscribe, else ~/.cache/texscribe."""
    if os.environ.get("TEXSCRIBE_CACHE"):
        return Path(os.environ["TEXSCRIBE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "texscribe"


def load_or_build(inkml_zip: str | Path, cache: str | Path | None = None) -> tuple[GlyphBank, Path]:
    """The bank of `inkml_zip`, from `cache` (a `.npz` path) or the default cache, built once if missing."""
    path = Path(cache) if cache else cache_path(inkml_zip)
    if path.is_file():
        return GlyphBank.load(path), path
    bank, stats = GlyphBank.build(inkml_zip)
    meta = {
        "files": stats.files,
        "symbols": stats.symbols,
        "unmapped": dict(stats.unmapped.most_common()),
        "empty": stats.empty,
    }
    bank.save(path, meta)
    return bank, path
