"""`texscribe data decompose-inkml`: the sub-expressions of the CROHME InkML train files as a prepared dataset.

Each train file (never a test split) whose MathML tree gives its truth label (`render.decompose`) yields
up to `max_per_file` parts, a seeded choice; a part whose tokens equal a CROHME 2014 test caption is
dropped. Each part's image is only its symbols' traces, drawn at the whole file's scale and cropped as
`texscribe data prepare` crops. Workers read, decompose and draw whole files; the main process logs each
image to `OUT/.decompose_state.tsv` (keyed by a hash of the file's bytes, the part and the generator
version), so a rerun reuses what is done and a foreign non-empty folder is refused (`PreparedWriter`).
Labels are the parts' tokens; the manifest's `source` is `decompose:<kind>` (numerator, run, ...).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from texscribe.data.prepared import PreparedRecord, PreparedWriter, image_filename, write_png_atomic
from texscribe.data.readers.archive import Archive
from texscribe.data.readers.inkml import choose_inkml_split, parse_inkml
from texscribe.data.render_strokes import ink_problem
from texscribe.data.sample import Skipped
from texscribe.errors import ImageError, InputError
from texscribe.latex import Vocab, to_text
from texscribe.render.corpus import NAMED, find_data_root
from texscribe.render.decompose import (
    choose_parts,
    file_parts,
    file_scale,
    part_traces,
    render_part,
    resolve_reading,
)
from texscribe.render.decompose_report import write_decompose_report
from texscribe.render.handwriting_corpus import held_back_formulas
from texscribe.render.job_state import cpu_seconds, load_state, state_line, worker_pool

GENERATOR_VERSION = 1  # bump when the parts or images of the same file change
STATE = ".decompose_state.tsv"
INKML = "crohme/crohme_inkml.zip"
SPLIT = "train"  # the only split decomposed: 2014/2016/2019 are test sets
SOURCE = "decompose"
CHUNK = 16  # files per worker task


@dataclass(frozen=True)
class PartFailure:
    """Why a part has no image (a state-file failure line: `cause`, `detail`)."""

    cause: str
    detail: str


@dataclass
class FileOutcome:
    """What one file gave: a skip reason, or parts as (id, kind, tokens, key, (h, w) | PartFailure)."""

    file_id: str
    skip: Skipped | None = None
    parts: list[tuple[str, str, tuple[str, ...], str, object]] = field(default_factory=list)
    found: Counter = field(default_factory=Counter)  # kind -> parts found before the cap
    dropped: Counter = field(default_factory=Counter)  # part reason -> count
    held_back: list[Skipped] = field(default_factory=list)
    generated: int = 0
    reused: int = 0


@dataclass
class DecomposeResult:
    """What a run did: files read and skipped, parts found/kept per kind, images, times (s)."""

    out: Path
    files: int = 0
    files_skipped: Counter = field(default_factory=Counter)
    mismatch_examples: list[str] = field(default_factory=list)
    found: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    generated: int = 0
    reused: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def files_passing(self) -> int:
        """Files whose MathML tree gives their truth label (a file with no part of 2+ symbols passes)."""
        return self.files - sum(n for reason, n in self.files_skipped.items() if reason != "no_parts")


def part_key(data: bytes, symbols: Sequence[str], tokens: Sequence[str]) -> str:
    """Content hash of one part's image: generator version, the file's bytes, the part's symbols and tokens."""
    h = hashlib.sha1(f"v{GENERATOR_VERSION}|{','.join(sorted(symbols))}|{to_text(tokens)}|".encode())
    h.update(data)
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ workers
@dataclass(frozen=True)
class _Settings:
    inkml: str
    images: Path
    seed: int
    max_per_file: int
    held_back: frozenset[str]


_SETTINGS: _Settings | None = None
_STATE: dict[str, tuple[str, ...]] = {}
_ARCHIVE: Archive | None = None


def _init_worker(settings: _Settings, state: dict[str, tuple[str, ...]]) -> None:
    global _SETTINGS, _STATE, _ARCHIVE
    _SETTINGS, _STATE, _ARCHIVE = settings, state, Archive.open(Path(settings.inkml))


def _decompose_files(names: list[str]) -> list[FileOutcome]:
    """Worker: decompose and draw one chunk of files."""
    assert _SETTINGS is not None and _ARCHIVE is not None, "worker started without its settings"
    return [_decompose_file(name, _ARCHIVE, _SETTINGS) for name in names]


def _decompose_file(name: str, archive: Archive, settings: _Settings) -> FileOutcome:
    """Parse one file, choose its parts and write their images (reusing those the state file lists)."""
    file_id = PurePosixPath(name).stem
    outcome = FileOutcome(file_id)
    origin = archive.origin(name)

    def skip(reason: str, detail: str) -> FileOutcome:
        outcome.skip = Skipped(file_id, f"{SOURCE}:file", reason, f"{origin}: {detail}")
        return outcome

    try:
        data = archive.read(name)
        doc = parse_inkml(data, origin)
    except (InputError, OSError) as exc:
        return skip("malformed_inkml", str(exc))
    problem = ink_problem(doc.traces, doc.trace_ids)
    if problem:
        return skip("bad_traces", problem)
    reading, text = resolve_reading(doc)
    if reading is None:
        return skip("mathml_mismatch", f"truth {doc.truth!r}, tree {text!r}")
    parts = file_parts(doc, reading)
    outcome.found.update(p.kind for p in parts)
    usable = []
    for part in parts:
        if to_text(part.tokens) in settings.held_back:
            outcome.dropped["crohme_2014_formula"] += 1
            detail = f"{origin}: {to_text(part.tokens)[:200]}"
            outcome.held_back.append(Skipped(file_id, f"{SOURCE}:{part.kind}", "crohme_2014_formula", detail))
        else:
            usable.append(part)
    if not usable:
        return skip("no_parts", "no sub-expression of two or more symbols" if not parts else "all held back")
    chosen = choose_parts(usable, settings.max_per_file, settings.seed, file_id)
    outcome.dropped["over_cap"] += len(usable) - len(chosen)
    scale = file_scale(doc)
    for n, part in enumerate(chosen):
        part_id = f"{file_id}-d{n}"
        key = part_key(data, sorted(part.symbols), part.tokens)
        dest = settings.images / image_filename(part_id)
        cached = _STATE.get(part_id)
        if cached and cached[0] == key and (cached[1] == "fail" or dest.is_file()):
            result: object = (
                (int(cached[2]), int(cached[3])) if cached[1] == "ok" else PartFailure(*cached[2:4])
            )
            outcome.reused += 1
        else:
            result = _draw(part_traces(doc, part.symbols), scale, dest)
            outcome.generated += 1
        outcome.parts.append((part_id, part.kind, part.tokens, key, result))
    return outcome


def _draw(traces, scale: float, dest: Path) -> object:
    """Draw and write one part's image; (h, w) or a `PartFailure`."""
    try:
        image = render_part(traces, scale)
        write_png_atomic(image, dest)
    except (ImageError, OSError) as exc:
        return PartFailure("bad_image", str(exc)[:300])
    return int(image.shape[0]), int(image.shape[1])


# ------------------------------------------------------------------------------------------------ run
def decompose_inkml(
    out: str | Path,
    *,
    inkml: str | Path | None = None,
    data_root: str | Path | None = None,
    max_per_file: int = 6,
    seed: int = 0,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> DecomposeResult:
    """Write the sub-expressions of the InkML train files (`inkml`, default `<data root>/crohme/crohme_inkml.zip`)
    to the prepared dataset `out`; `limit`: the first N train files only. The 2014 test captions are read
    from `<data root>/crohme/crohme_offline.zip`."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if max_per_file < 1 or workers < 1 or (limit is not None and limit < 1):
        raise InputError(
            f"--max-per-file, --workers and --limit must be >= 1, got {max_per_file}, {workers}, {limit}"
        )
    writer = PreparedWriter(Path(out), STATE)
    writer.check_target()
    root = find_data_root(data_root, "crohme")
    inkml_path = Path(inkml) if inkml else root / INKML
    if not inkml_path.exists():
        raise InputError("CROHME InkML zip not found; pass --inkml PATH", source=str(inkml_path))
    archive = Archive.open(inkml_path)
    names, _ = choose_inkml_split(
        [n for n in archive.names if n.lower().endswith(".inkml")], SPLIT, str(inkml_path)
    )
    names = names[:limit] if limit else names
    settings = _Settings(
        str(inkml_path),
        writer.images,
        seed,
        max_per_file,
        frozenset(held_back_formulas(root / NAMED["crohme"])),
    )
    writer.make_dirs()
    state = load_state(writer.state_path)
    result = DecomposeResult(out=writer.root)
    outcomes = _run_files(names, settings, state, workers, progress, writer)
    records, skipped = _collect(outcomes, writer, result)
    writer.write(records, Vocab.build(r.tokens for r in records), skipped)
    writer.compact_state(state_line(pid, key, res) for o in outcomes for pid, _, _, key, res in o.parts)
    result.wall_s = time.perf_counter() - started
    result.cpu_s = cpu_seconds() - cpu_started
    write_decompose_report(
        writer.root, records, skipped, result, seed, max_per_file, workers, str(inkml_path)
    )
    return result


def _run_files(
    names: list[str],
    settings: _Settings,
    state: dict[str, tuple[str, ...]],
    workers: int,
    progress: bool,
    writer: PreparedWriter,
) -> list[FileOutcome]:
    """Decompose `names` in chunks, in `workers` spawned processes (or in this one); each file's image
    outcomes are appended to the state log as they come."""
    from tqdm import tqdm

    tasks = list(_chunks(names, CHUNK))
    pool = None
    if workers > 1 and len(tasks) > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (settings, state))
    else:
        _init_worker(settings, state)
    outcomes: list[FileOutcome] = []
    with (
        worker_pool(pool),
        writer.open_state_log() as log,
        tqdm(total=len(names), desc="decompose inkml", unit="file", disable=not progress) as bar,
    ):
        for chunk in pool.imap(_decompose_files, tasks) if pool else map(_decompose_files, tasks):
            for o in chunk:
                log.writelines(state_line(pid, key, res) for pid, _, _, key, res in o.parts)
            log.flush()
            bar.update(len(chunk))
            outcomes.extend(chunk)
    return outcomes


def _collect(
    outcomes: list[FileOutcome], writer: PreparedWriter, result: DecomposeResult
) -> tuple[list[PreparedRecord], list[Skipped]]:
    """Manifest records and skipped items of all files, counted into `result`."""
    records: list[PreparedRecord] = []
    skipped: list[Skipped] = []
    for o in outcomes:
        result.files += 1
        result.found.update(o.found)
        result.dropped.update(o.dropped)
        skipped.extend(o.held_back)
        result.generated += o.generated
        result.reused += o.reused
        if o.skip is not None:
            result.files_skipped[o.skip.reason] += 1
            if o.skip.reason == "mathml_mismatch" and len(result.mismatch_examples) < 20:
                result.mismatch_examples.append(o.skip.detail)
            skipped.append(o.skip)
            continue
        for part_id, kind, tokens, _, res in o.parts:
            source = f"{SOURCE}:{kind}"
            if isinstance(res, tuple):
                records.append(
                    PreparedRecord(part_id, writer.image_path(part_id), list(tokens), source, *res)
                )
                result.kept[kind] += 1
            else:
                result.dropped[res.cause] += 1
                skipped.append(Skipped(part_id, source, res.cause, res.detail))
    return records, skipped


def _chunks(names: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield list(names[start : start + size])
