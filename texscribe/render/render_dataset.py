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

from texscribe.data.prepare import PrepareResult
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
from texscribe.data.sample import Skipped
from texscribe.errors import InputError
from texscribe.images import save_png
from texscribe.latex import Vocab
from texscribe.render.corpus import Corpus, CorpusSpec, build_corpus
from texscribe.render.job_state import check_out_dir, cpu_seconds, load_state, state_line
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
        tmp = job.dest.with_name(job.dest.name + ".tmp.png")
        save_png(img, tmp)
        tmp.replace(job.dest)
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
    held_out_fraction: float = 0.02,
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
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(out)
    styles = styles or StyleSpace()
    if variants < 1 or batch_size < 1:
        raise InputError(f"variants and batch size must be >= 1, got {variants} and {batch_size}")
    specs = [CorpusSpec.parse(c, data_root) for c in corpora]  # every corpus checked before any work
    engine = choose_renderer(renderer, styles.fonts)
    check_out_dir(out, (STATE, MANIFEST), "render")
    held_root = out / HELD_OUT_DIR
    for root in (out, held_root):
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
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

    jobs: list[_Job] = []
    for formula in corpus.formulas:
        for v in range(variants):
            job_id = formula.id if variants == 1 else f"{formula.id}-v{v}"
            style = styles.pick(formula.latex, v)
            root = held_root if formula.held_out else out
            key = style_key(formula.latex, style, engine, RENDERER_VERSION)
            dest = root / IMAGES_DIR / image_filename(job_id)
            jobs.append(
                _Job(
                    job_id, formula.latex, formula.tokens, formula.source, style, dest, key, formula.held_out
                )
            )

    state = load_state(out / STATE)
    outcomes: dict[str, object] = {}
    todo: list[_Job] = []
    for job in jobs:
        cached = state.get(job.id)
        if cached and cached[0] == job.key and cached[1] == "ok" and job.dest.is_file():
            outcomes[job.id] = (int(cached[2]), int(cached[3]))
            result.reused += 1
        elif cached and cached[0] == job.key and cached[1] == "fail":
            outcomes[job.id] = RenderFailure(cached[2], cached[3])
            result.reused += 1
        else:
            todo.append(job)

    result.attempted = len(todo)
    render_started, cpu_started = time.perf_counter(), cpu_seconds()
    by_id = {job.id: job for job in jobs}
    args = [(batch, engine, margin, timeout) for batch in _batches(todo, batch_size)]
    pool = multiprocessing.Pool(workers) if workers > 1 and len(args) > 1 else None
    try:
        with (
            (out / STATE).open("a", encoding="utf-8") as log,
            tqdm(total=len(todo), desc=f"render ({engine})", unit="formula", disable=not progress) as bar,
        ):
            stream = pool.imap_unordered(_render_batch, args) if pool else map(_render_batch, args)
            for batch in stream:
                for job_id, outcome in batch:
                    outcomes[job_id] = outcome
                    if not isinstance(outcome, RenderFailure):
                        result.rendered += 1
                    if _cacheable(outcome):
                        log.write(state_line(job_id, by_id[job_id].key, outcome))
                log.flush()
                bar.update(len(batch))
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or an error: do not wait for queued batches
        raise
    if pool is not None:
        pool.close()
        pool.join()
    result.render_s = time.perf_counter() - render_started
    result.cpu_s = cpu_seconds() - cpu_started

    _finish(out, held_root, jobs, outcomes, {j.id for j in todo}, corpus, result, specs, styles, started)
    return result


def _finish(
    out: Path,
    held_root: Path,
    jobs: list[_Job],
    outcomes: dict[str, object],
    new_ids: set[str],
    corpus: Corpus,
    result: RenderResult,
    specs: list[CorpusSpec],
    styles: StyleSpace,
    started: float,
) -> None:
    """Write both prepared datasets (manifest, vocab, skipped, report) and compact the state file."""
    splits: dict[bool, tuple[list[PreparedRecord], list[Skipped], PrepareResult, dict[str, Counter]]] = {}
    for held in (False, True):
        root = held_root if held else out
        records: list[PreparedRecord] = []
        counts: dict[str, Counter] = defaultdict(Counter)
        skipped: list[Skipped] = [] if held else list(corpus.skipped)
        prep = PrepareResult(out=root, sources=[s.name for s in specs])
        if not held:
            for item in corpus.skipped:
                prep.per_source[item.source]["in"] += 1
                prep.per_source[item.source][item.reason] += 1
                prep.dropped[item.reason] += 1
            prep.n_in = len(corpus.skipped)
        for job in (j for j in jobs if j.held_out == held):
            prep.n_in += 1
            prep.per_source[job.source]["in"] += 1
            outcome = outcomes.get(job.id)
            if isinstance(outcome, RenderFailure) or outcome is None:
                failure = outcome or RenderFailure("renderer_error", "no result (interrupted)")
                detail = f"{failure.detail} | style {job.style.tag()} | {job.latex[:200]}"
                skipped.append(Skipped(job.id, job.source, failure.cause, detail))
                prep.dropped[failure.cause] += 1
                prep.per_source[job.source][failure.cause] += 1
                continue
            h, w = outcome  # type: ignore[misc]
            records.append(PreparedRecord(job.id, job.dest, list(job.tokens), job.source, h, w))
            prep.per_source[job.source]["kept"] += 1
            style = job.style
            counts["font"][style.font] += 1
            counts["size_pt"][f"{style.size:g}"] += 1
            counts["dpi"][str(style.dpi)] += 1
            counts["math_style"]["display" if style.display else "text"] += 1
            counts["degraded"]["yes" if style.degrade_seed is not None else "no"] += 1
        prep.kept = len(records)
        splits[held] = (records, skipped, prep, counts)

    train_records = splits[False][0]
    vocab = Vocab.build(r.tokens for r in train_records or splits[True][0])
    kept_names: dict[Path, set[str]] = {}
    for held, (records, skipped, prep, _) in splits.items():
        root = held_root if held else out
        prep.vocab_size = len(vocab)
        prep.written = sum(1 for r in records if r.id in new_ids)
        prep.reused = len(records) - prep.written
        if held:
            prep.unknown_tokens = Counter(t for r in records for t in r.tokens if t not in vocab)
        vocab.save(root / VOCAB)
        write_manifest(root, records)
        write_tsv(root / SKIPPED, SKIPPED_COLUMNS, [(s.id, s.source, s.reason, s.detail) for s in skipped])
        kept_names[root] = {r.image_path.name for r in records}
    result.train, result.held_out = len(splits[False][0]), len(splits[True][0])
    result.failures = Counter(o.cause for o in outcomes.values() if isinstance(o, RenderFailure))
    for root, names in kept_names.items():
        for png in (root / IMAGES_DIR).iterdir():
            if png.suffix == ".png" and png.name not in names:
                png.unlink()  # left by an earlier run with other settings, or a failed temp file
    state = [
        state_line(j.id, j.key, outcomes[j.id])
        for j in jobs
        if j.id in outcomes and _cacheable(outcomes[j.id])
    ]
    tmp = out / (STATE + ".tmp")
    tmp.write_text("".join(state), encoding="utf-8")
    tmp.replace(out / STATE)
    result.wall_s = time.perf_counter() - started
    for held, (records, skipped, prep, counts) in splits.items():
        prep.wall_s = result.wall_s
        write_render_report(
            held_root if held else out, prep, records, skipped, result, styles, corpus, counts, held_out=held
        )


def _cacheable(outcome: object) -> bool:
    return not (isinstance(outcome, RenderFailure) and outcome.cause in _TRANSIENT)
