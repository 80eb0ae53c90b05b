"""`texscribe data synth-handwriting`: N synthetic handwritten formulas as a prepared dataset.

Sample i draws formula `order[i]` (a seeded shuffle of the selected formulas, reshuffled each time the
list is used up) and its own random generator `(seed, i)`, so every image is a function of
(seed, i, formula, bank) alone. Worker processes load the glyph bank once and write PNGs; the main
process appends each outcome to `OUT/.synth_state.tsv`, so an interrupted run resumes and a larger
`--count` only draws the new samples. Output is `texscribe.data.prepared`'s format (manifest.tsv,
images/, vocab.json, report.json, report.md, skipped.tsv); the label of each image is its formula's tokens.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from texscribe.data.prepared import PreparedRecord, PreparedWriter, write_png_atomic
from texscribe.data.sample import Skipped
from texscribe.errors import InputError
from texscribe.latex import Vocab, to_text
from texscribe.render.corpus import NAMED, find_data_root
from texscribe.render.glyph_bank import GlyphBank, load_or_build
from texscribe.render.handwriting import missing_symbols, render_handwriting
from texscribe.render.handwriting_corpus import DEFAULT_MAX_LEN, FormulaSelection, select_formulas
from texscribe.render.handwriting_layout import LayoutFailure
from texscribe.render.job_state import (
    cpu_seconds,
    load_state,
    logged_outcomes,
    reuse_outcomes,
    state_line,
    worker_pool,
)

GENERATOR_VERSION = 1  # bump when images of the same (seed, i, formula) change
STATE = ".synth_state.tsv"
INKML = "crohme/crohme_inkml.zip"
CHUNK = 32  # samples per worker task
SOURCE = "synth_handwriting"


@dataclass(frozen=True)
class _Job:
    index: int
    id: str
    tokens: tuple[str, ...]
    source: str
    dest: Path
    key: str


@dataclass
class SynthResult:
    """What a run did. `speed` is images per CPU second of the generating processes: one worker's rate."""

    out: Path
    requested: int = 0
    kept: int = 0
    generated: int = 0
    reused: int = 0
    failures: Counter = field(default_factory=Counter)
    formulas: int = 0
    generate_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    bank_path: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.generated / self.generate_s if self.generate_s > 0 else 0.0

    @property
    def images_per_cpu_s(self) -> float:
        return self.generated / self.cpu_s if self.cpu_s > 0 else 0.0


def sample_key(seed: int, index: int, tokens: Sequence[str], bank_path: Path) -> str:
    """Content hash of one sample: generator version, seed, index, formula and bank file."""
    text = f"v{GENERATOR_VERSION}|{seed}|{index}|{bank_path.name}|{to_text(tokens)}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def formula_order(n_formulas: int, count: int, seed: int) -> list[int]:
    """Formula index of samples 0..count-1: a fresh seeded shuffle for every pass over the formulas."""
    order: list[int] = []
    cycle = 0
    while len(order) < count:
        order.extend(np.random.default_rng([seed, 7919, cycle]).permutation(n_formulas).tolist())
        cycle += 1
    return order[:count]


# ------------------------------------------------------------------------------------------------ workers
_BANK: GlyphBank | None = None


def _init_worker(bank_path: str) -> None:
    global _BANK
    _BANK = GlyphBank.load(bank_path)


def _generate(args: tuple[list[_Job], int]) -> list[tuple[str, object]]:
    """Worker: draw and write one chunk; (id, (h, w)) or (id, LayoutFailure) per job."""
    jobs, seed = args
    assert _BANK is not None, "worker started without its glyph bank"
    out: list[tuple[str, object]] = []
    for job in jobs:
        rng = np.random.default_rng([seed, job.index])
        try:
            image = render_handwriting(job.tokens, _BANK, rng)
        except Exception as exc:  # a bug must not cost the other samples of the run: record and go on
            image = LayoutFailure("generator_error", f"{type(exc).__name__}: {exc}"[:300])
        if isinstance(image, LayoutFailure):
            out.append((job.id, image))
            continue
        write_png_atomic(image.astype(np.float32) / 255.0, job.dest)
        out.append((job.id, (int(image.shape[0]), int(image.shape[1]))))
    return out


# ------------------------------------------------------------------------------------------------ run
def synth_handwriting(
    out: str | Path,
    count: int,
    *,
    seed: int = 0,
    workers: int = 2,
    data_root: str | Path | None = None,
    inkml: str | Path | None = None,
    bank: str | Path | None = None,
    extra_formulas: Sequence[str | Path] | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    progress: bool = True,
) -> SynthResult:
    """Write `count` synthetic handwritten formulas to the prepared dataset `out`.

    Formulas: CROHME train captions + `extra_formulas` (default: the k12 school corpus) restricted to
    the CROHME train vocabulary and `max_len` tokens, never a 2014 test formula. Glyphs: the bank of the
    InkML train split (`inkml`, default `<data root>/crohme/crohme_inkml.zip`), cached at `bank`.
    """
    started = time.perf_counter()
    if count < 1 or workers < 1:
        raise InputError(f"count and workers must be >= 1, got {count} and {workers}")
    writer = PreparedWriter(Path(out), STATE)
    writer.check_target()
    glyphs, bank_path, selection = _glyphs_and_formulas(data_root, inkml, bank, extra_formulas, max_len)
    result = SynthResult(
        out=writer.root, requested=count, formulas=len(selection.formulas), bank_path=bank_path
    )
    writer.make_dirs()
    jobs = _plan_jobs(writer, selection, count, seed, bank_path)
    outcomes, todo = reuse_outcomes(jobs, load_state(writer.state_path), LayoutFailure)
    result.reused = len(outcomes)
    _generate_all(todo, outcomes, writer, glyphs, bank_path, seed, workers, progress, result)
    _finish(writer, jobs, outcomes, selection, glyphs, result, started, seed, workers)
    return result


def _glyphs_and_formulas(
    data_root: str | Path | None,
    inkml: str | Path | None,
    bank: str | Path | None,
    extra_formulas: Sequence[str | Path] | None,
    max_len: int,
) -> tuple[GlyphBank, Path, FormulaSelection]:
    """(glyph bank, its cache file, the usable formulas): `InputError` when the InkML zip is missing or no
    formula can be drawn."""
    root = find_data_root(data_root, "crohme")
    inkml_path = Path(inkml) if inkml else root / INKML
    if not inkml_path.exists():
        raise InputError("CROHME InkML zip not found; pass --inkml PATH", source=str(inkml_path))
    extra = [Path(p) for p in extra_formulas] if extra_formulas is not None else [root / NAMED["k12"]]
    glyphs, bank_path = load_or_build(inkml_path, bank)
    selection = select_formulas(
        root / NAMED["crohme"], extra, lambda t: missing_symbols(t, glyphs), max_len=max_len
    )
    if not selection.formulas:
        raise InputError("no formula is usable (see the drop reasons); check the formula files")
    return glyphs, bank_path, selection


def _plan_jobs(
    writer: PreparedWriter, selection: FormulaSelection, count: int, seed: int, bank_path: Path
) -> list[_Job]:
    """Sample i draws formula `formula_order(...)[i]`; its id `hw-<seed>-<i>` names its image."""
    jobs = []
    for i, f in enumerate(formula_order(len(selection.formulas), count, seed)):
        formula = selection.formulas[f]
        sample_id = f"hw-{seed}-{i:07d}"
        key = sample_key(seed, i, formula.tokens, bank_path)
        dest = writer.image_path(sample_id)
        jobs.append(_Job(i, sample_id, formula.tokens, f"{SOURCE}:{formula.source}", dest, key))
    return jobs


def _generate_all(
    todo: list[_Job],
    outcomes: dict[str, object],
    writer: PreparedWriter,
    glyphs: GlyphBank,
    bank_path: Path,
    seed: int,
    workers: int,
    progress: bool,
    result: SynthResult,
) -> None:
    """Draw `todo` in chunks of `CHUNK`, in `workers` spawned processes that each load the bank (or in this
    one with `glyphs`); each outcome goes into `outcomes` and the state log."""
    global _BANK
    from tqdm import tqdm

    gen_started, cpu_started = time.perf_counter(), cpu_seconds()
    tasks = [(chunk, seed) for chunk in _chunks(todo, CHUNK)]
    pool = None
    if workers > 1 and len(tasks) > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (str(bank_path),))
    else:
        _BANK = glyphs
    keys = {job.id: job.key for job in todo}
    with (
        worker_pool(pool),
        writer.open_state_log() as log,
        tqdm(total=len(todo), desc="synth handwriting", unit="img", disable=not progress) as bar,
    ):
        chunks = pool.imap(_generate, tasks) if pool else map(_generate, tasks)
        for job_id, outcome in logged_outcomes(chunks, keys, log, bar):
            outcomes[job_id] = outcome
            result.generated += 1
    result.generate_s = time.perf_counter() - gen_started
    result.cpu_s = cpu_seconds() - cpu_started


def _finish(
    writer: PreparedWriter,
    jobs: list[_Job],
    outcomes: dict[str, object],
    selection: FormulaSelection,
    glyphs: GlyphBank,
    result: SynthResult,
    started: float,
    seed: int,
    workers: int,
) -> None:
    """Manifest, vocabulary, skipped list, report; stale images and state lines removed."""
    from texscribe.render.handwriting_report import write_synth_report

    records: list[PreparedRecord] = []
    failed: list[Skipped] = []
    for job in jobs:
        outcome = outcomes.get(job.id)
        if isinstance(outcome, tuple):
            h, w = outcome
            records.append(PreparedRecord(job.id, job.dest, list(job.tokens), job.source, h, w))
        else:
            failure = (
                outcome
                if isinstance(outcome, LayoutFailure)
                else LayoutFailure("generator_error", "no result")
            )
            failed.append(
                Skipped(job.id, job.source, failure.cause, f"{failure.detail} | {to_text(job.tokens)[:200]}")
            )
    result.kept = len(records)
    result.failures = Counter(s.reason for s in failed)
    skipped = selection.skipped + failed
    writer.write(records, Vocab.build(r.tokens for r in records), skipped)
    writer.compact_state(state_line(j.id, j.key, outcomes[j.id]) for j in jobs if j.id in outcomes)
    result.wall_s = time.perf_counter() - started
    write_synth_report(writer.root, records, skipped, selection, glyphs, result, seed, workers)


def _chunks(jobs: Sequence[_Job], size: int) -> Iterator[list[_Job]]:
    for start in range(0, len(jobs), size):
        yield list(jobs[start : start + size])
