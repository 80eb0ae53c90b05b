"""Formula corpus -> prepared dataset of printed renderings (`texscribe data render`).

Output is exactly `texscribe.data.prepared`'s format (manifest.tsv, images/, vocab.json, report.json,
report.md, skipped.tsv); the hash-selected held-out formulas form a second prepared dataset in
`<out>/held_out/` that shares the training vocabulary. Each rendering's cache key is a content hash of
formula + style + renderer (`style_key`), logged to `<out>/.render_state.tsv` after every batch: a re-run
re-uses every image (and every deterministic failure) whose key is unchanged, so an interrupted or
extended run resumes. Batches of one font go to a process pool, one TeX run per batch.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from texscribe.data.prepared import PreparedRecord, PreparedWriter, write_png_atomic
from texscribe.data.report import DatasetCounts
from texscribe.data.sample import Skipped
from texscribe.errors import InputError
from texscribe.latex import Vocab
from texscribe.render.corpus import DEFAULT_HELD_OUT_FRACTION, Corpus, CorpusSpec, build_corpus
from texscribe.render.job_state import (
    cpu_seconds,
    load_state,
    logged_outcomes,
    reuse_outcomes,
    state_line,
    worker_pool,
)
from texscribe.render.renderer import DEFAULT_MARGIN, RENDERER_VERSION, choose_renderer, render_formulas
from texscribe.render.report import write_render_report
from texscribe.render.style import RenderFailure, RenderStyle, StyleSpace, style_key

STATE = ".render_state.tsv"
HELD_OUT_DIR = "held_out"
DEFAULT_BATCH = 256  # formulas per TeX run: each run costs ~0.2 CPU s to start (LaTeX + packages + dvipng)
_TRANSIENT = {"timeout", "renderer_error"}  # failures that may not recur: never cached


@dataclass(frozen=True)
class _Job:
    """One rendering: `dest` is the PNG to write; `key` its content hash."""

    id: str
    latex: str
    tokens: tuple[str, ...]
    source: str
    style: RenderStyle
    dest: Path
    key: str
    held_out: bool


@dataclass
class RenderResult:
    """What a render run did; `failures` maps cause -> count over both splits."""

    out: Path
    renderer: str
    train: int = 0
    held_out: int = 0
    attempted: int = 0
    rendered: int = 0
    reused: int = 0
    failures: Counter = field(default_factory=Counter)
    corpus_dropped: Counter = field(default_factory=Counter)
    render_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds of this process, its workers and their TeX runs while rendering
    wall_s: float = 0.0

    @property
    def formulas_per_s(self) -> float:
        """Throughput of the rendering phase: new renderings (successes and failures) per second."""
        return self.attempted / self.render_s if self.render_s > 0 else 0.0

    @property
    def formulas_per_cpu_s(self) -> float:
        """Renderings per CPU second: the throughput of one unshared core (wall figures vary with load)."""
        return self.attempted / self.cpu_s if self.cpu_s > 0 else 0.0


def _render_batch(args: tuple[list[_Job], str, int, float | None]) -> list[tuple[str, object]]:
    """Worker: render one batch and write its PNGs; returns (job id, (h, w) or RenderFailure) per job."""
    jobs, renderer, margin, timeout = args
    images = render_formulas(
        [j.latex for j in jobs], [j.style for j in jobs], renderer, margin=margin, timeout=timeout
    )
    out: list[tuple[str, object]] = []
    for job, img in zip(jobs, images):
        if isinstance(img, RenderFailure):
            out.append((job.id, img))
            continue
        write_png_atomic(img, job.dest)
        out.append((job.id, (int(img.shape[0]), int(img.shape[1]))))
    return out


def _batches(jobs: Sequence[_Job], size: int) -> Iterator[list[_Job]]:
    """Jobs grouped by font — one TeX document each — in chunks of `size`."""
    groups: dict[str, list[_Job]] = defaultdict(list)
    for job in jobs:
        groups[job.style.font].append(job)
    for group in groups.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def render_dataset(
    corpora: Sequence[str],
    out: str | Path,
    *,
    limit: int | None = None,
    styles: StyleSpace | None = None,
    variants: int = 1,
    held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
    renderer: str = "auto",
    workers: int = 2,
    batch_size: int = DEFAULT_BATCH,
    max_label_len: int | None = 200,
    drop_multiline: bool = False,
    tokenized: bool = False,
    data_root: str | Path | None = None,
    margin: int = DEFAULT_MARGIN,
    timeout: float | None = None,
    progress: bool = True,
) -> RenderResult:
    """Render `corpora` (see `CorpusSpec.parse`) into a prepared dataset at `out` (+ `out/held_out`).

    `limit`: distinct formulas per corpus (synthetic: how many to generate). `variants`: renderings
    per formula, each in its own drawn style. Failed formulas are recorded with their cause in
    skipped.tsv and the report, never stop the run.
    """
    started = time.perf_counter()
    out = Path(out)
    styles = styles or StyleSpace()
    if variants < 1 or batch_size < 1:
        raise InputError(f"variants and batch size must be >= 1, got {variants} and {batch_size}")
    specs = [CorpusSpec.parse(c, data_root) for c in corpora]  # every corpus checked before any work
    engine = choose_renderer(renderer, styles.fonts)
    writers = {False: PreparedWriter(out, STATE), True: PreparedWriter(out / HELD_OUT_DIR)}  # by held-out
    writers[False].check_target()
    for writer in writers.values():
        writer.make_dirs()
    corpus = build_corpus(
        specs,
        limit=limit,
        held_out_fraction=held_out_fraction,
        max_label_len=max_label_len,
        drop_multiline=drop_multiline,
        tokenized=tokenized,
        seed=styles.seed,
    )
    result = RenderResult(out=out, renderer=engine)
    result.corpus_dropped = Counter(s.reason for s in corpus.skipped)
    jobs = _plan_jobs(corpus, styles, variants, engine, writers)
    outcomes, todo = reuse_outcomes(jobs, load_state(out / STATE), RenderFailure)
    result.reused = len(outcomes)
    _render_all(
        todo, outcomes, writers[False], (engine, margin, timeout), batch_size, workers, progress, result
    )
    result.failures = Counter(o.cause for o in outcomes.values() if isinstance(o, RenderFailure))
    splits = {held: _split(held, writers[held].root, jobs, outcomes, corpus, specs) for held in (False, True)}
    _write_splits(splits, writers, {j.id for j in todo}, result)
    writers[False].compact_state(
        state_line(j.id, j.key, outcomes[j.id])
        for j in jobs
        if j.id in outcomes and _cacheable(outcomes[j.id])
    )
    result.wall_s = time.perf_counter() - started
    for held, split in splits.items():
        split.counts.wall_s = result.wall_s
        write_render_report(
            writers[held].root, split.counts, split.records, split.skipped, result, styles, corpus,
            split.styles, held_out=held,
        )  # fmt: skip
    return result


def _plan_jobs(
    corpus: Corpus, styles: StyleSpace, variants: int, engine: str, writers: dict[bool, PreparedWriter]
) -> list[_Job]:
    """`variants` renderings of every formula, each in its own drawn style, into its split's folder."""
    jobs: list[_Job] = []
    for formula in corpus.formulas:
        for v in range(variants):
            job_id = formula.id if variants == 1 else f"{formula.id}-v{v}"
            style = styles.pick(formula.latex, v)
            key = style_key(formula.latex, style, engine, RENDERER_VERSION)
            dest = writers[formula.held_out].image_path(job_id)
            jobs.append(
                _Job(
                    job_id, formula.latex, formula.tokens, formula.source, style, dest, key, formula.held_out
                )
            )
    return jobs


def _render_all(
    todo: list[_Job],
    outcomes: dict[str, object],
    writer: PreparedWriter,
    how: tuple[str, int, float | None],
    batch_size: int,
    workers: int,
    progress: bool,
    result: RenderResult,
) -> None:
    """Render `todo` in font batches of `batch_size` with `how` = (renderer, margin, timeout), in a pool of
    `workers` processes; each outcome goes into `outcomes` and, when cacheable, the state log."""
    from tqdm import tqdm

    result.attempted = len(todo)
    render_started, cpu_started = time.perf_counter(), cpu_seconds()
    keys = {job.id: job.key for job in todo}
    args = [(batch, *how) for batch in _batches(todo, batch_size)]
    with (
        worker_pool(multiprocessing.Pool(workers) if workers > 1 and len(args) > 1 else None) as pool,
        writer.open_state_log() as log,
        tqdm(total=len(todo), desc=f"render ({how[0]})", unit="formula", disable=not progress) as bar,
    ):
        batches = pool.imap_unordered(_render_batch, args) if pool else map(_render_batch, args)
        for job_id, outcome in logged_outcomes(batches, keys, log, bar, keep=_cacheable):
            outcomes[job_id] = outcome
            if not isinstance(outcome, RenderFailure):
                result.rendered += 1
    result.render_s = time.perf_counter() - render_started
    result.cpu_s = cpu_seconds() - cpu_started


@dataclass
class _Split:
    """One output dataset (train or held-out): its records, skipped items, report counts and the styles
    of its kept renderings (kind -> value -> count)."""

    records: list[PreparedRecord]
    skipped: list[Skipped]
    counts: DatasetCounts
    styles: dict[str, Counter]


def _split(
    held: bool,
    root: Path,
    jobs: list[_Job],
    outcomes: dict[str, object],
    corpus: Corpus,
    specs: list[CorpusSpec],
) -> _Split:
    """The train (`held` False: with the corpus' dropped formulas) or held-out dataset at `root` from the
    jobs' outcomes; a job without an outcome (an interrupted run) is skipped as `renderer_error`."""
    split = _Split([], [], DatasetCounts(out=root, sources=[s.name for s in specs]), defaultdict(Counter))
    if not held:
        split.skipped += corpus.skipped
        for item in corpus.skipped:
            split.counts.count_read(item.source)
            split.counts.count_dropped(item.source, item.reason)
    for job in (j for j in jobs if j.held_out == held):
        split.counts.count_read(job.source)
        outcome = outcomes.get(job.id)
        if isinstance(outcome, RenderFailure) or outcome is None:
            failure = outcome or RenderFailure("renderer_error", "no result (interrupted)")
            detail = f"{failure.detail} | style {job.style.tag()} | {job.latex[:200]}"
            split.skipped.append(Skipped(job.id, job.source, failure.cause, detail))
            split.counts.count_dropped(job.source, failure.cause)
            continue
        h, w = outcome  # type: ignore[misc]
        split.records.append(PreparedRecord(job.id, job.dest, list(job.tokens), job.source, h, w))
        split.counts.count_kept(job.source)
        _count_style(split.styles, job.style)
    split.counts.kept = len(split.records)
    return split


def _count_style(counts: dict[str, Counter], style: RenderStyle) -> None:
    counts["font"][style.font] += 1
    counts["size_pt"][f"{style.size:g}"] += 1
    counts["dpi"][str(style.dpi)] += 1
    counts["math_style"]["display" if style.display else "text"] += 1
    counts["degraded"]["yes" if style.degrade_seed is not None else "no"] += 1


def _write_splits(
    splits: dict[bool, _Split], writers: dict[bool, PreparedWriter], new_ids: set[str], result: RenderResult
) -> None:
    """Both datasets with the training part's vocabulary (the held-out part's when training has none)."""
    vocab = Vocab.build(r.tokens for r in splits[False].records or splits[True].records)
    for held, split in splits.items():
        split.counts.vocab_size = len(vocab)
        split.counts.written = sum(1 for r in split.records if r.id in new_ids)
        split.counts.reused = len(split.records) - split.counts.written
        if held:
            split.counts.unknown_tokens = Counter(
                t for r in split.records for t in r.tokens if t not in vocab
            )
        writers[held].write(split.records, vocab, split.skipped)
    result.train, result.held_out = len(splits[False].records), len(splits[True].records)


def _cacheable(outcome: object) -> bool:
    return not (isinstance(outcome, RenderFailure) and outcome.cause in _TRANSIENT)
