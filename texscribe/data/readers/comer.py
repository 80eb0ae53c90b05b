"""CoMER/BTTR layout: `data/<split>/caption.txt` (`id<TAB>tokens`) + `data/<split>/img/<id>.bmp`.

Works on the zip the CoMER/BTTR repositories distribute (`data.zip`, here `crohme_offline.zip`)
and on the same tree unpacked into a folder. Captions are already tokenised (`pretokenized=True`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from texscribe.data.readers.archive import Archive, TextLines, is_image_name
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError

CAPTION_FILE = "caption.txt"


def comer_splits(archive: Archive) -> dict[str, str]:
    """Split name -> folder holding its `caption.txt` (e.g. `{"train": "data/train"}`)."""
    splits: dict[str, str] = {}
    for name in archive.names:
        p = PurePosixPath(name)
        if p.name == CAPTION_FILE and p.parent.name:
            splits.setdefault(p.parent.name, str(p.parent))
    return splits


def choose_split(available: dict[str, str], split: str | None, source: str, layout: str) -> str:
    """The folder for `split`, or the only split when none is given; `InputError` listing the choices."""
    names = ", ".join(sorted(available)) or "none"
    if not available:
        raise InputError(f"no {layout} split found inside", source=source)
    if split is None:
        if len(available) == 1:
            return next(iter(available.values()))
        raise InputError(f"holds several splits ({names}); choose one as PATH:SPLIT", source=source)
    if split not in available:
        raise InputError(f"no split {split!r}; available: {names}", source=source)
    return available[split]


def read_comer(path: str | Path, split: str | None = None) -> Iterator[Sample | Skipped]:
    """Yield one `Sample` per caption line with an image, and `Skipped` for every unusable item.

    Skip reasons: `malformed_line` (no tab, more than one, empty id or label), `wrong_encoding` (a caption line that
    does not decode; the others are read), `duplicate_id`, `missing_image` (caption without image),
    `missing_label` (image without caption). Images are read lazily.
    """
    archive = Archive.open(path)
    folder = choose_split(comer_splits(archive), split, str(archive.path), "CoMER (<split>/caption.txt)")
    source = f"{Path(path).name}:{PurePosixPath(folder).name}"
    caption_name = f"{folder}/{CAPTION_FILE}"
    images = {
        PurePosixPath(n).stem: n
        for n in archive.names
        if n.startswith(f"{folder}/img/") and is_image_name(n) and n.count("/") == folder.count("/") + 2
    }
    text = archive.read_lines(caption_name)
    return _caption_samples(archive, folder, source, caption_name, text, images)


def _caption_samples(
    archive: Archive, folder: str, source: str, caption_name: str, text: TextLines, images: dict[str, str]
) -> Iterator[Sample | Skipped]:
    seen: set[str] = set()  # ids with a usable caption line
    mentioned: set[str] = set()  # ids named by any caption line, usable or not (no double reports)
    for lineno, raw in enumerate(text.lines, start=1):
        line = raw.rstrip("\r")
        where = f"{archive.origin(caption_name)}:{lineno}"
        if lineno in text.bad:
            named = line.split("\t", 1)[0].strip() if "\t" in line else ""
            sample_id = named if named and "\ufffd" not in named else f"line{lineno}"
            mentioned.add(sample_id)
            yield Skipped(sample_id, source, "wrong_encoding", f"{where}: {text.bad[lineno]}")
            continue
        if not line.strip():
            continue
        mentioned.add(line.split()[0] if "\t" not in line else line.split("\t", 1)[0].strip())
        if "\t" not in line:
            yield Skipped(line.split()[0], source, "malformed_line", f"{where}: no TAB between id and label")
            continue
        sample_id, label = line.split("\t", 1)
        sample_id, label = sample_id.strip(), label.strip()
        if not sample_id or not label:
            missing = "id" if not sample_id else "label"
            yield Skipped(sample_id or f"line{lineno}", source, "malformed_line", f"{where}: empty {missing}")
            continue
        if "\t" in label:  # which column is the label? Never guess (tokens are separated by spaces)
            columns = label.count("\t") + 2
            detail = f"{where}: {columns} TAB-separated columns, expected 2 (id<TAB>label)"
            yield Skipped(sample_id, source, "malformed_line", detail)
            continue
        if sample_id in seen:
            yield Skipped(sample_id, source, "duplicate_id", f"{where}: id {sample_id!r} already captioned")
            continue
        seen.add(sample_id)
        image = images.get(sample_id)
        if image is None:
            yield Skipped(sample_id, source, "missing_image", f"{where}: no image {folder}/img/{sample_id}.*")
            continue
        yield Sample(
            id=sample_id,
            latex=label,
            source=source,
            load=archive.loader(image),
            origin=archive.origin(image),
            pretokenized=True,
        )
    for sample_id, image in images.items():
        if sample_id not in mentioned:
            yield Skipped(
                sample_id, source, "missing_label", f"{archive.origin(image)}: no line in {caption_name}"
            )
