"""Which images a prediction job reads: INPUT specs (files, folders, globs, @lists) and manifests.

Both the local and the Ray engine of `texscribe predict` (and `texscribe.ray_engine.predict_on_ray`)
take their inputs from here, as `(source, path)` items: `source` is what results are keyed by (the path,
or a manifest's id), `path` what the loader opens.
"""

from __future__ import annotations

import csv
import glob
import io
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}
# what a folder contributes: image files, and InkML pen strokes (read as `Ink`, see `Recognizer.preprocess`)
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".inkml"}


def expand_inputs(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """INPUT arguments -> (image paths in order, [(spec, reason)] for arguments that match nothing).

    Folders contribute their image files (by suffix) sorted by path; globs their matches sorted; an
    `@list.txt` its lines (blank lines and `#` comments ignored). An explicitly named file is kept whatever
    its suffix or kind (a device or FIFO too), so a mislabelled, corrupt or special file is reported by the
    loader, which says what is wrong with it, rather than dropped or called missing.
    """
    paths: list[str] = []
    problems: list[tuple[str, str]] = []
    for spec in specs:
        if spec.startswith("@"):
            listing = Path(spec[1:])
            try:
                if _path_kind(listing) == "other" and not listing.is_file():  # /dev/zero never ends
                    raise OSError(f"{listing} is not a regular file")
                lines = listing.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((spec, f"cannot read list file: {exc}"))
                continue
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
            sub, sub_problems = expand_inputs([str(listing.parent / e) for e in entries])
            paths += sub
            problems += sub_problems
            continue
        kind = _path_kind(Path(spec))
        if kind == "folder":
            found = sorted(
                str(p) for p in Path(spec).rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
            )
            if not found:
                problems.append((spec, "folder holds no image files"))
            paths += found
        elif kind == "other":  # a file, a device or FIFO ("not a regular file"), a name too long...
            paths.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                problems.append((spec, "pattern matches no files"))
            paths += found
        else:
            problems.append((spec, "no such file or folder"))
    return paths, problems


def read_manifest(path: str | Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A TSV/CSV manifest -> ([(source, image path)] in file order, [(where, reason)] for unusable rows).

    A header row names the image column (`image`, `image_path`, `path`, `file`, ... as `data prepare`
    reads manifests) and optionally `id`, which becomes the source results are keyed by; without a
    header the first column is the image. Paths are relative to the manifest (a prepared dataset's
    `manifest.tsv` works as it is). A missing image is left to the loader, which reports it per item.
    """
    from texscribe.data.readers.manifest import IMAGE_COLUMNS  # the column names `data prepare` reads

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [(str(file), f"cannot read manifest: {exc}")]
    tab = file.suffix.lower() != ".csv"
    reader = (
        csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
        if tab
        else csv.reader(io.StringIO(text))
    )
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        return [], [(f"{file}:{reader.line_num}", f"cannot parse manifest: {exc}")]
    if not rows:
        return [], [(str(file), "manifest holds no rows")]
    names = [c.strip().lower() for c in rows[0][1]]
    image_col = next((names.index(c) for c in IMAGE_COLUMNS if c in names), None)
    id_col = None
    if image_col is None:
        image_col = 0  # no header: the first column is the image
    else:
        id_col = names.index("id") if "id" in names else None
        rows = rows[1:]
    items: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line, row in rows:
        if len(row) <= max(image_col, id_col or 0) or not row[image_col].strip():
            problems.append((f"{file}:{line}", "row has no image path"))
            continue
        image = str(file.parent / row[image_col].strip())
        source = row[id_col].strip() if id_col is not None else image
        if source in seen:
            problems.append((f"{file}:{line}", f"id {source!r} appears twice"))
            continue
        seen.add(source)
        items.append((source, image))
    return items, problems


def _path_kind(path: Path) -> str:
    """'folder', 'missing', or 'other': anything else that exists, or that cannot even be looked up
    (a name too long for the file system), for the loader to report in its own words."""
    try:
        if path.is_dir():
            return "folder"
        return "other" if path.exists() else "missing"
    except OSError:
        return "other"
