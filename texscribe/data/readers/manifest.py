"""A manifest source: a user's list of labelled images, `image_path<TAB>latex` (TSV) or `image_path,latex`
(CSV), paths relative to the file; `data prepare` reads it like any other source. (A prepared dataset's
own manifest.tsv is read for training by `texscribe.data.prepared.read_prepared_manifest`.)

An optional header line names the columns: image (`image_path`, `image`, `path`, `file`, `filename`),
label (`latex`, `label`, `formula`, `text`, or `tokens` for space-tokenised labels) and optionally
`id`. That makes a prepared dataset's own `manifest.tsv` readable as a source too. Without a header
the first column is the image and the second the raw LaTeX label.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path, PurePath
from typing import Any

from texscribe.data.readers.archive import TextLines, decode_lines
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError

IMAGE_COLUMNS = ("image_path", "image", "path", "file", "filename", "img")
LABEL_COLUMNS = ("latex", "label", "formula", "text", "tokens")
SUFFIXES = (".tsv", ".csv")


def find_manifest(path: Path, split: str | None) -> Path:
    """The manifest file itself, or inside a folder `<split>.tsv|csv` / `manifest.tsv|csv` / the only one."""
    if path.is_file():
        return path
    stems = [split] if split else ["manifest"]
    for stem in stems:
        for suffix in SUFFIXES:
            if (path / f"{stem}{suffix}").is_file():
                return path / f"{stem}{suffix}"
    found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if len(found) == 1 and not split:
        return found[0]
    listed = ", ".join(p.name for p in found) or "none"
    want = f"{split}.tsv or {split}.csv" if split else "manifest.tsv (or a single .tsv/.csv)"
    raise InputError(f"cannot pick a manifest: expected {want}; found {listed}", source=str(path))


def _columns(header: list[str]) -> tuple[int, int, int | None, bool] | None:
    """(image col, label col, id col, pretokenized) when `header` is a header row, else None."""
    names = [c.strip().lower() for c in header]
    image = next((names.index(c) for c in IMAGE_COLUMNS if c in names), None)
    label = next((names.index(c) for c in LABEL_COLUMNS if c in names), None)
    if image is None or label is None:
        return None
    return image, label, names.index("id") if "id" in names else None, names[label] == "tokens"


def _checked(rows: Any, file: Path) -> Iterator[list[str]]:
    """Re-raise the csv module's parse errors as `InputError` naming the line."""
    line = 0
    try:
        for row in rows:
            line = rows.line_num
            yield row
    except csv.Error as exc:
        raise InputError(f"cannot parse: {exc}", source=str(file), line=line + 1) from exc


def read_manifest_source(path: str | Path, split: str | None = None) -> Iterator[Sample | Skipped]:
    """Yield a `Sample` per row of the manifest source at `path` (a file, or a folder holding
    `<split>.tsv|csv`, `manifest.tsv|csv` or a single one); `Skipped` for malformed rows, lines that do not decode (`wrong_encoding`),
    empty labels, missing images, duplicate ids."""
    file = find_manifest(Path(path), split)
    text = decode_lines(file.read_bytes())
    # undecodable lines are blanked for the csv reader (line numbers stay right) and reported apart
    good = "\n".join("" if n in text.bad else line for n, line in enumerate(text.lines, start=1))
    tab = file.suffix.lower() == ".tsv" or (file.suffix.lower() != ".csv" and "\t" in text.lines[0])
    rows = (
        csv.reader(io.StringIO(good), delimiter="\t", quoting=csv.QUOTE_NONE)
        if tab
        else csv.reader(io.StringIO(good))
    )
    return _rows_to_samples(file, rows, _undecodable(file, text, "\t" if tab else ","))


def _undecodable(file: Path, text: TextLines, delimiter: str) -> list[tuple[int, Skipped]]:
    """(line, `Skipped`) for each line that does not decode, named by its first cell when that is readable."""
    out = []
    for n, why in text.bad.items():
        first = text.lines[n - 1].split(delimiter, 1)[0].strip()
        sample_id = str(PurePath(first).with_suffix("")) if first and "\ufffd" not in first else f"line{n}"
        out.append((n, Skipped(sample_id, file.name, "wrong_encoding", f"{file}:{n}: {why}")))
    return out


def _rows_to_samples(
    file: Path, rows: Any, undecodable: list[tuple[int, Skipped]]
) -> Iterator[Sample | Skipped]:
    source = file.name
    columns: tuple[int, int, int | None, bool] = (0, 1, None, False)
    width = 2
    seen: set[str] = set()
    first_row = True
    pending = iter(undecodable)
    bad_line, bad = next(pending, (None, None))
    for row in _checked(rows, file):
        lineno = rows.line_num
        while bad_line is not None and bad_line < lineno:  # in file order
            yield bad
            bad_line, bad = next(pending, (None, None))
        if not row or not any(cell.strip() for cell in row):
            continue
        if first_row:
            first_row = False
            header = _columns(row)
            if header is not None:
                columns, width = header, len(row)
                continue
        where = f"{file}:{lineno}"
        if len(row) != width:
            yield Skipped(
                row[0].strip(), source, "malformed_line", f"{where}: expected {width} columns, got {len(row)}"
            )
            continue
        image_col, label_col, id_col, pretokenized = columns
        image_rel = row[image_col].strip()
        sample_id = row[id_col].strip() if id_col is not None else str(PurePath(image_rel).with_suffix(""))
        if not image_rel or not sample_id:
            yield Skipped(
                sample_id or f"line{lineno}", source, "malformed_line", f"{where}: empty image path"
            )
            continue
        if sample_id in seen:
            yield Skipped(sample_id, source, "duplicate_id", f"{where}: id {sample_id!r} listed twice")
            continue
        seen.add(sample_id)
        label = row[label_col].strip()
        if not label:
            yield Skipped(sample_id, source, "missing_label", f"{where}: empty label")
            continue
        image = file.parent / image_rel
        try:
            found = image.is_file()
        except OSError as exc:  # a name too long for the file system, ...
            yield Skipped(sample_id, source, "missing_image", f"{where}: image {image}: {exc.strerror}")
            continue
        if not found:
            yield Skipped(sample_id, source, "missing_image", f"{where}: image {image} not found")
            continue
        yield Sample(
            id=sample_id,
            latex=label,
            source=source,
            load=partial(image.read_bytes),
            origin=str(image),
            pretokenized=pretokenized,
        )
    if bad_line is not None:
        yield bad
    yield from (skip for _, skip in pending)
