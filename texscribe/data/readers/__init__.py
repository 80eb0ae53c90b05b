"""Readers: one module per source format, each yielding `Sample` / `Skipped` records lazily.

`open_source("crohme_offline.zip:train")` parses a source spec `PATH[:SPLIT]`, detects the format
from what the zip or folder holds (or takes `format=`), and returns the reader's iterator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from texscribe.data.readers.archive import Archive, is_image_name
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError

FORMATS = ("comer", "im2markup", "labels", "manifest", "inkml")
MANIFEST_SUFFIXES = (".tsv", ".csv")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: `path`, optional `split` (CoMER split, im2markup split, sub-folder...)."""

    path: Path
    split: str | None = None

    @classmethod
    def parse(cls, spec: str | Path) -> SourceSpec:
        """`data.zip:train` -> (data.zip, train); a path that exists as written never loses a colon."""
        text = str(spec)
        if Path(text).exists() or ":" not in text:
            return cls(Path(text))
        head, split = text.rsplit(":", 1)
        if not head or "/" in split or "\\" in split:
            return cls(Path(text))
        return cls(Path(head), split or None)

    def __str__(self) -> str:
        return f"{self.path}:{self.split}" if self.split else str(self.path)


def detect_format(path: str | Path) -> str:
    """Name of the format of a zip/folder/file (one of `FORMATS`); `InputError` when it cannot tell."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    if path.is_file() and path.suffix.lower() == ".inkml":
        return "inkml"
    names = Archive.open(path).names
    basenames = [PurePosixPath(n).name for n in names]
    if "caption.txt" in basenames:
        return "comer"
    if any(b.endswith(".lst") and "formulas" in b for b in basenames):
        return "im2markup"
    if any(b.lower().endswith(".inkml") for b in basenames):
        return "inkml"
    if path.is_dir() and any("/" not in n and n.lower().endswith(MANIFEST_SUFFIXES) for n in names):
        return "manifest"
    if any(is_image_name(n) for n in names) and any(n.endswith(".txt") for n in names):
        return "labels"
    raise InputError(
        "cannot tell the dataset format (no caption.txt, *formulas*.lst, *.inkml, manifest .tsv/.csv or "
        "image+.txt pairs found); pass --format comer|im2markup|labels|manifest|inkml",
        source=str(path),
    )


def open_source(
    spec: str | Path | SourceSpec, format: str = "auto", *, stroke_height: float | None = None
) -> Iterator[Sample | Skipped]:
    """Iterate the samples of one source spec `PATH[:SPLIT]` in the given (or detected) format.

    `stroke_height`: InkML only, the mean stroke height (px) strokes are drawn at with the usual pen
    (`RenderOptions`; default 28, the CROHME bitmap look): smaller writing with the same pen."""
    src = spec if isinstance(spec, SourceSpec) else SourceSpec.parse(spec)
    if not src.path.exists():
        raise InputError("no such file or folder; check the path", source=str(src.path))
    fmt = detect_format(src.path) if format == "auto" else format
    if stroke_height is not None and fmt != "inkml":
        raise InputError(f"--stroke-height applies to InkML sources; this one is {fmt}", source=str(src.path))
    if fmt == "comer":
        from texscribe.data.readers.comer import read_comer

        return read_comer(src.path, src.split)
    if fmt == "im2markup":
        from texscribe.data.readers.im2markup import read_im2markup

        return read_im2markup(src.path, src.split)
    if fmt == "labels":
        from texscribe.data.readers.label_folder import read_label_folder

        return read_label_folder(src.path, src.split)
    if fmt == "manifest":
        from texscribe.data.readers.manifest import read_manifest_source

        return read_manifest_source(src.path, src.split)
    if fmt == "inkml":
        try:
            from texscribe.data.readers.inkml import read_inkml
            from texscribe.data.render_strokes import RenderOptions
        except ModuleNotFoundError as exc:
            raise InputError(
                "InkML support is missing from this install (texscribe.data.readers.inkml)"
            ) from exc
        render = RenderOptions() if stroke_height is None else RenderOptions(stroke_height=stroke_height)
        return read_inkml(src.path, split=src.split, render=render)
    raise InputError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
