"""im2markup / im2latex-100k layout, as a zip or a folder (any single top folder prefix is fine):

- `im2latex_formulas.norm.lst`: one space-tokenised formula per line (line index 0-based)
- `im2latex_{train,validate,test}_filter.lst`: `<image file> <line index>` per line
- `formula_images_processed/<image file>` (or `formula_images/`)

The split is `train`, `validate` (also `val`/`validation`) or `test`; ids are image stems.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from texscribe.data.readers.archive import Archive, TextLines, is_image_name
from texscribe.data.readers.comer import choose_split
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError

SPLIT_ALIASES = {"val": "validate", "valid": "validate", "validation": "validate", "dev": "validate"}
IMAGE_DIRS = ("formula_images_processed", "formula_images")
_SPLIT_RE = re.compile(r"(?:.*_)?(train|validate|test)(?:_filter)?\.lst$")


def _formulas_file(archive: Archive) -> str:
    """Prefer the normalised formulas (`*.norm.lst`) over raw ones."""
    candidates = [n for n in archive.names if "formulas" in PurePosixPath(n).name and n.endswith(".lst")]
    if not candidates:
        raise InputError("no *formulas*.lst file (im2markup layout)", source=str(archive.path))
    return sorted(candidates, key=lambda n: (".norm." not in n, len(n)))[0]


def _split_files(archive: Archive) -> dict[str, str]:
    """Split name -> its `<image> <index>` list; `_filter` lists win over unfiltered ones."""
    found: dict[str, str] = {}
    for name in sorted(archive.names, key=lambda n: ("_filter" not in n, n)):
        m = _SPLIT_RE.match(PurePosixPath(name).name)
        if m and "formulas" not in PurePosixPath(name).name:
            found.setdefault(m.group(1), name)
    return found


def _image_index(archive: Archive) -> dict[str, str]:
    """Image file name -> archive name, from the first image folder that exists."""
    for folder in IMAGE_DIRS:
        images = {
            PurePosixPath(n).name: n
            for n in archive.names
            if PurePosixPath(n).parent.name == folder and is_image_name(n)
        }
        if images:
            return images
    return {}


def read_im2markup(path: str | Path, split: str | None = None) -> Iterator[Sample | Skipped]:
    """Yield `Sample`s (pretokenized labels) for one split; `Skipped` for bad lines/indices/images.

    Skip reasons: `malformed_line`, `bad_index` (not an integer or past the formulas file),
    `wrong_encoding` (the list line or the formula line does not decode), `duplicate_id`, `missing_image`.
    """
    archive = Archive.open(path)
    split = SPLIT_ALIASES.get(split, split) if split else None
    list_name = choose_split(
        _split_files(archive), split, str(archive.path), "im2markup (*_{split}_filter.lst)"
    )
    split_name = _SPLIT_RE.match(PurePosixPath(list_name).name).group(1)
    source = f"{Path(path).name}:{split_name}"
    formulas_name = _formulas_file(archive)
    # '\n' only: a few im2latex formulas hold other line-break characters that splitlines() would cut.
    formulas = archive.read_lines(formulas_name)
    formulas.lines = [line.rstrip("\r") for line in formulas.lines]
    lines = archive.read_lines(list_name)
    return _listed_samples(archive, list_name, lines, formulas_name, formulas, _image_index(archive), source)


def _listed_samples(
    archive: Archive,
    list_name: str,
    listing: TextLines,
    formulas_name: str,
    formulas: TextLines,
    images: dict[str, str],
    source: str,
) -> Iterator[Sample | Skipped]:
    seen: set[str] = set()
    for lineno, raw in enumerate(listing.lines, start=1):
        line = raw.strip()
        where = f"{archive.origin(list_name)}:{lineno}"
        if lineno in listing.bad:
            named = line.split()[0] if line.split() else ""
            sample_id = PurePosixPath(named).stem if named and "\ufffd" not in named else f"line{lineno}"
            yield Skipped(sample_id, source, "wrong_encoding", f"{where}: {listing.bad[lineno]}")
            continue
        if not line:
            continue
        cells = line.split()
        sample_id = PurePosixPath(cells[0]).stem
        if len(cells) < 2:
            yield Skipped(sample_id, source, "malformed_line", f"{where}: expected '<image> <line index>'")
            continue
        image_file, index = cells[0], cells[1]
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
        if not (index.isascii() and index.isdigit()) or int(index) >= len(formulas.lines):
            yield Skipped(
                sample_id,
                source,
                "bad_index",
                f"{where}: line index {index!r} not in 0..{len(formulas.lines) - 1}",
            )
            continue
        if int(index) + 1 in formulas.bad:
            formula_where = f"{archive.origin(formulas_name)}:{int(index) + 1}"
            yield Skipped(
                sample_id, source, "wrong_encoding", f"{formula_where}: {formulas.bad[int(index) + 1]}"
            )
            continue
        if sample_id in seen:
            yield Skipped(sample_id, source, "duplicate_id", f"{where}: image {image_file!r} listed twice")
            continue
        seen.add(sample_id)
        image = images.get(PurePosixPath(image_file).name)
        if image is None:
            yield Skipped(sample_id, source, "missing_image", f"{where}: image {image_file!r} not found")
            continue
        yield Sample(
            id=sample_id,
            latex=formulas.lines[int(index)],
            source=source,
            load=archive.loader(image),
            origin=archive.origin(image),
            pretokenized=True,
        )
