"""One view over "a zip or a folder": relative POSIX names, lazy byte reads, readable origins.

Readers list what a source holds, then hand out `loader(name)` callables so image bytes are read
only when a sample is actually used. A zip stays open as long as some loader refers to it.
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

from texscribe.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".pnm"}
)


class Archive:
    """Files of a zip or a folder, addressed by relative POSIX paths (`data/train/img/a.bmp`)."""

    def __init__(self, path: Path, names: list[str]):
        self.path = path
        self.names = names
        self._name_set = set(names)

    @staticmethod
    def open(path: str | Path) -> Archive:
        """Open a `.zip` file or a directory; `InputError` when it is neither or cannot be read."""
        path = Path(path)
        if path.is_dir():
            return FolderArchive(path)
        if path.is_file() and zipfile.is_zipfile(path):
            return ZipArchive(path)
        if not path.exists():
            raise InputError("no such file or folder; check the path", source=str(path))
        raise InputError("expected a .zip archive or a folder", source=str(path))

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def origin(self, name: str) -> str:
        """Human-readable location of one member, for error messages and reports."""
        raise NotImplementedError

    def loader(self, name: str) -> Callable[[], bytes]:
        """A zero-argument callable reading `name` when called (lazy image access)."""
        return partial(self.read, name)

    def read_text(self, name: str) -> str:
        """Decode a whole text member (see `decode_lines`); `InputError` naming its first bad line."""
        text = decode_lines(self.read(name))
        if text.bad:
            line, why = next(iter(text.bad.items()))
            raise InputError(why, source=self.origin(name), line=line)
        return "\n".join(text.lines)

    def read_lines(self, name: str) -> TextLines:
        """The lines of a text member, each decoded on its own (see `decode_lines`)."""
        return decode_lines(self.read(name))

    def __contains__(self, name: str) -> bool:
        return name in self._name_set


class ZipArchive(Archive):
    def __init__(self, path: Path):
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"cannot open zip archive: {exc}", source=str(path)) from exc
        names = [info.filename for info in self._zip.infolist() if not info.is_dir()]
        super().__init__(path, names)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except KeyError as exc:
            raise FileNotFoundError(f"{self.origin(name)}: not in the archive") from exc
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(f"cannot read archive member: {exc}", source=self.origin(name)) from exc

    def origin(self, name: str) -> str:
        return f"{self.path}:{name}"


class FolderArchive(Archive):
    def __init__(self, path: Path):
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        super().__init__(path, names)

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def origin(self, name: str) -> str:
        return str(self.path / name)


@dataclass
class TextLines:
    """A text file split at `\\n` (a `\\r` before it is kept), in the encoding `sniff_encoding` found.

    `bad` maps a 1-based line number to why that line could not be decoded; its entry in `lines` then
    holds U+FFFD for what did not decode, for naming the item (an id before a TAB), never as a label.
    """

    lines: list[str]
    encoding: str
    bad: dict[int, str] = field(default_factory=dict)


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def sniff_encoding(data: bytes) -> str:
    """`utf-8-sig`, `utf-16` or `utf-32` when a byte-order mark says so; UTF-16 without a BOM when most
    bytes on one side of each pair are zero (ASCII text saved as UTF-16); `utf-8` otherwise."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    head = data[:4096]
    pairs = len(head) // 2
    if pairs >= 2 and b"\x00" in head:
        even, odd = head[0 : 2 * pairs : 2].count(0), head[1 : 2 * pairs : 2].count(0)
        if odd >= 0.7 * pairs and even <= 0.05 * pairs:
            return "utf-16-le"
        if even >= 0.7 * pairs and odd <= 0.05 * pairs:
            return "utf-16-be"
    return "utf-8"


def decode_lines(data: bytes) -> TextLines:
    """Decode text line by line, so one bad byte costs one line, not the file.

    UTF-8 lines are decoded one at a time and a bad one is reported with the offending byte and its
    column. In a UTF-16/32 file (BOM-marked, or detected as above) a line that holds an undecodable
    code unit is reported as bad.
    """
    encoding = sniff_encoding(data)
    try:
        return TextLines(data.decode(encoding).split("\n"), encoding)
    except UnicodeDecodeError:
        pass
    if not encoding.startswith("utf-8"):
        lines = data.decode(encoding, errors="replace").split("\n")
        why = f"not valid {encoding.upper()} text (an undecodable code unit); re-save it as UTF-8"
        bad = {n: why for n, line in enumerate(lines, start=1) if "\ufffd" in line}
        return TextLines(lines, encoding, bad)
    lines, bad = [], {}
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            lines.append(raw.decode("utf-8", errors="replace"))
            bad[n] = utf8_error_message(raw, exc, "column")
    return TextLines(lines, encoding, bad)


def utf8_error_message(data: bytes, exc: UnicodeDecodeError, unit: str = "offset") -> str:
    """Say where UTF-8 decoding failed (the byte, its offset or column) and what to do about it."""
    where = exc.start + (unit == "column")
    return f"not UTF-8 text (byte 0x{data[exc.start]:02x} at {unit} {where}); re-save it as UTF-8"


def stem_key(name: str) -> str:
    """`a/b/c.png` -> `a/b/c`: the name without its last suffix, for pairing images with labels."""
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix else name


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
