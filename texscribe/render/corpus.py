"""The formula corpus to render: read sources, normalise with `texscribe.latex`, deduplicate, split.

Sources (`CorpusSpec.parse`): `k12` (raw OCR-service LaTeX, one per line), `crohme` (CoMER train
captions, pre-tokenised), `synthetic` (grammar), `NAME=PATH` for those two at another path, or any text
FILE with one formula per line. Every label goes through `LabelCleaner` (so `parse_label` / `split_label`
and the project's cleaning rules); the rendered source is `to_latex(tokens)`, so image and label agree.
A formula's id and its held-out membership are functions of its tokens alone: the split is stable
whatever the order, limit or mix of sources. Never feed im2latex validation formulas in here.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from texscribe.data.cleaning import Drop, LabelCleaner, label_rules
from texscribe.data.readers.archive import Archive
from texscribe.data.readers.comer import CAPTION_FILE, choose_split, comer_splits
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError
from texscribe.latex import to_latex, to_text

NAMED = {"k12": "formulas/k12_formulas.lst", "crohme": "crohme/crohme_offline.zip"}
SYNTHETIC_DEFAULT_COUNT = 10_000
CROHME_SPLIT = "train"  # the 2014 split is the test set: never render it for training
# Path fragments of evaluation-only data that must never become training images.
HELD_BACK_MARKERS = ("im2latex_val", "im2latex_validate", "crohme_2014", "/2014/")


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus source: `kind` in k12/crohme/synthetic/file, `path` (None for synthetic), `name` for reports."""

    kind: str
    path: Path | None
    name: str

    @classmethod
    def parse(cls, spec: str, data_root: str | Path | None = None) -> CorpusSpec:
        """`k12`, `crohme`, `synthetic`, `k12=PATH`, `crohme=PATH`, or a FILE path; `InputError` if missing."""
        name, _, given = spec.partition("=")
        if spec == "synthetic":
            return cls("synthetic", None, "synthetic")
        if name in NAMED:
            path = Path(given) if given else find_data_root(data_root, name) / NAMED[name]
            if not path.exists():
                raise InputError(f"{name} corpus not found; pass it as {name}=PATH", source=str(path))
            return cls(name, path, name)
        path = Path(spec)
        if not path.is_file():
            raise InputError(
                "corpus is not k12, crohme, synthetic, NAME=PATH or an existing text file", source=spec
            )
        if any(mark in str(path).lower() for mark in HELD_BACK_MARKERS):
            raise InputError(
                "this looks like the im2latex validation set, which is kept for evaluation only; "
                "render training formulas from another file",
                source=spec,
            )
        return cls("file", path, path.stem)


def find_data_root(data_root: str | Path | None, corpus: str) -> Path:
    """The shared data folder: `data_root`, $TEXSCRIBE_SHARED_DATA, or `shared/data` beside cwd/the repo."""
    candidates = [data_root, os.environ.get("TEXSCRIBE_SHARED_DATA")]
    candidates += [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ]
    for root in candidates:
        if root and (Path(root) / NAMED[corpus]).exists():
            return Path(root)
    raise InputError(
        f"cannot find the {corpus} corpus ({NAMED[corpus]}) under --data-root, $TEXSCRIBE_SHARED_DATA or "
        f"../shared/data; pass it as {corpus}=PATH"
    )


@dataclass(frozen=True)
class Formula:
    """One distinct normalised formula: `latex` is what gets rendered, `tokens` the label."""

    id: str
    tokens: tuple[str, ...]
    latex: str
    source: str
    origin: str
    held_out: bool


@dataclass
class Corpus:
    """Distinct formulas in first-seen order, what was skipped (with reasons), and counts per source."""

    formulas: list[Formula] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    read: Counter = field(default_factory=Counter)  # source -> items read

    @property
    def held_out(self) -> list[Formula]:
        return [f for f in self.formulas if f.held_out]


def formula_digest(tokens: tuple[str, ...] | list[str]) -> str:
    """SHA-1 of the space-joined tokens: a formula's identity across sources and runs."""
    return hashlib.sha1(to_text(tokens).encode("utf-8")).hexdigest()


# Share of formulas, chosen by hash, that rendered print holds out (`texscribe data render` default) and
# that synthetic handwriting never draws: a held-out formula stays unseen in every modality.
DEFAULT_HELD_OUT_FRACTION = 0.02


def is_held_out(tokens: tuple[str, ...] | list[str], fraction: float) -> bool:
    """Whether a formula belongs to the held-out part: a hash threshold, so it never depends on order."""
    if fraction <= 0:
        return False
    bucket = int(hashlib.sha1(("held-out\n" + to_text(tokens)).encode("utf-8")).hexdigest()[:12], 16)
    return bucket / float(1 << 48) < fraction


def read_lines(path: Path, source: str, pretokenized: bool = False) -> Iterator[Sample]:
    """One `Sample` per non-empty line of a UTF-8 text file (no image: `load=None`)."""
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte {exc.start}); convert the file to UTF-8", source=str(path)
        ) from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield Sample(f"{source}:{lineno}", line, source, None, f"{path}:{lineno}", pretokenized)


def read_crohme_captions(path: Path, split: str = CROHME_SPLIT) -> Iterator[Sample]:
    """Captions of one CoMER split (`id<TAB>tokens`); malformed lines are yielded with `latex=None`."""
    archive = Archive.open(path)
    folder = choose_split(comer_splits(archive), split, str(path), "CoMER (<split>/caption.txt)")
    name = f"{folder}/{CAPTION_FILE}"
    for lineno, line in enumerate(archive.read_text(name).split("\n"), start=1):
        if not line.strip():
            continue
        sample_id, _, label = line.rstrip("\r").partition("\t")
        origin = f"{archive.origin(name)}:{lineno}"
        yield Sample(f"crohme:{sample_id.strip()}", label.strip() or None, "crohme", None, origin, True)


def samples(spec: CorpusSpec, *, limit: int | None, seed: int, tokenized: bool) -> Iterator[Sample]:
    """The raw items of one source (synthetic: `limit` formulas, default `SYNTHETIC_DEFAULT_COUNT`)."""
    if spec.kind == "synthetic":
        from texscribe.render.synthetic import synthesize

        count = limit if limit is not None else SYNTHETIC_DEFAULT_COUNT
        for i, latex in enumerate(synthesize(count, seed)):
            yield Sample(f"synthetic:{i}", latex, "synthetic", None, f"synthetic seed {seed} #{i}")
    elif spec.kind == "crohme":
        yield from read_crohme_captions(spec.path)
    else:
        yield from read_lines(spec.path, spec.name, pretokenized=tokenized and spec.kind == "file")


def build_corpus(
    specs: list[CorpusSpec],
    *,
    limit: int | None = None,
    held_out_fraction: float = 0.0,
    max_label_len: int | None = 200,
    drop_multiline: bool = False,
    tokenized: bool = False,
    seed: int = 0,
) -> Corpus:
    """Read, normalise, clean and deduplicate `specs` in order; at most `limit` distinct formulas per source.

    Drops carry the cleaning reasons (`bad_label`, `out_of_vocab_chars`, `ocr_error_marker`, `too_long`,
    `multiline` when `drop_multiline`) or `duplicate_formula`. Matrices are kept by default: TeX renders
    them faithfully and printed exercises use them.
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise InputError(f"held-out fraction must be in [0, 1), got {held_out_fraction}")
    cleaner = LabelCleaner(
        max_label_len=max_label_len, rules=label_rules("drop" if drop_multiline else "keep")
    )
    corpus = Corpus()
    seen: dict[str, str] = {}
    for spec in specs:
        accepted = 0
        for item in samples(spec, limit=limit, seed=seed, tokenized=tokenized):
            if limit is not None and accepted >= limit:
                break
            corpus.read[spec.name] += 1
            tokens = cleaner(item)
            if isinstance(tokens, Drop):
                corpus.skipped.append(Skipped(item.id, spec.name, tokens.reason, tokens.detail))
                continue
            digest = formula_digest(tokens)
            if digest in seen:
                detail = f"{item.origin}: same tokens as {seen[digest]}"
                corpus.skipped.append(Skipped(item.id, spec.name, "duplicate_formula", detail))
                continue
            formula_id = f"{spec.name}-{digest[:12]}"
            seen[digest] = formula_id
            corpus.formulas.append(
                Formula(
                    formula_id,
                    tuple(tokens),
                    to_latex(tokens),
                    spec.name,
                    item.origin,
                    is_held_out(tokens, held_out_fraction),
                )
            )
            accepted += 1
    return corpus
