"""Label folder: every image next to a same-named `.txt` holding its raw LaTeX (`a/b.png` + `a/b.txt`).

A zip of such a tree works too. The split, when given, selects a sub-folder (`folder:train`).
Ids are the relative paths without suffix (`a/b`). Labels are UTF-8, or UTF-16/32 marked by a BOM
(`archive.decode_lines`); a label that does not decode is reported as `wrong_encoding` naming the
file and line rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from texscribe.data.readers.archive import Archive, decode_lines, is_image_name, stem_key
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError


def read_label_folder(path: str | Path, split: str | None = None) -> Iterator[Sample | Skipped]:
    """Yield a `Sample` (raw LaTeX, `pretokenized=False`) per image+label pair, `Skipped` otherwise.

    Skip reasons: `missing_label` (image without .txt), `missing_image` (.txt without image),
    `wrong_encoding`, `duplicate_id` (two images with the same stem, e.g. a.png and a.jpg).
    """
    archive = Archive.open(path)
    prefix = f"{split.strip('/')}/" if split else ""
    names = [n for n in archive.names if n.startswith(prefix) and not _hidden(n)]
    if split and not names:
        raise InputError(f"no sub-folder {split!r} with files", source=str(archive.path))
    source = f"{Path(path).name}:{split}" if split else Path(path).name
    return _paired_samples(archive, names, prefix, source)


def _paired_samples(
    archive: Archive, names: list[str], prefix: str, source: str
) -> Iterator[Sample | Skipped]:
    labels = {stem_key(n): n for n in names if n.lower().endswith(".txt")}
    images: dict[str, str] = {}
    for name in names:
        if not is_image_name(name):
            continue
        key = stem_key(name)
        sample_id = key[len(prefix) :]
        if key in images:
            yield Skipped(
                sample_id, source, "duplicate_id", f"{archive.origin(name)}: same name as {images[key]}"
            )
            continue
        images[key] = name
        label_name = labels.get(key)
        if label_name is None:
            yield Skipped(
                sample_id, source, "missing_label", f"{archive.origin(name)}: no {key}.txt beside it"
            )
            continue
        try:
            data = archive.read(label_name)
        except (InputError, OSError) as exc:
            yield Skipped(sample_id, source, "bad_label", f"{archive.origin(label_name)}: cannot read: {exc}")
            continue
        text = decode_lines(data)
        if text.bad:
            line, why = next(iter(text.bad.items()))
            yield Skipped(sample_id, source, "wrong_encoding", f"{archive.origin(label_name)}:{line}: {why}")
            continue
        latex = "\n".join(text.lines)
        yield Sample(
            id=sample_id,
            latex=latex.strip(),
            source=source,
            load=archive.loader(name),
            origin=archive.origin(name),
            pretokenized=False,
        )
    for key, label_name in labels.items():
        if key not in images:
            sample_id = key[len(prefix) :]
            yield Skipped(
                sample_id, source, "missing_image", f"{archive.origin(label_name)}: no image beside it"
            )


def _hidden(name: str) -> bool:
    """Skip dot-files and macOS zip debris (`__MACOSX/`, `._a.png`)."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))
