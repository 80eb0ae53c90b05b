"""One view over "a zip or a folder": relative POSIX names, lazy byte reads, readable origins.

Readers list what a source holds, then hand out `loader(name)` callables so image bytes are read
only when a sample is actually used. A zip stays open as long as some loader refers to it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
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
        """Decode a UTF-8 text member (a BOM is allowed); `InputError` naming the member otherwise."""
        data = self.read(name)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(utf8_error_message(data, exc), source=self.origin(name)) from exc

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


def utf8_error_message(data: bytes, exc: UnicodeDecodeError) -> str:
    """Say where UTF-8 decoding failed and what to do about it."""
    return f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); re-save it as UTF-8"


def stem_key(name: str) -> str:
    """`a/b/c.png` -> `a/b/c`: the name without its last suffix, for pairing images with labels."""
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix else name


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
