"""The prepared-dataset format's one writer (`PreparedWriter`), read back by `PreparedDataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from texscribe.data.prepared import (
    MANIFEST,
    SKIPPED,
    VOCAB,
    PreparedDataset,
    PreparedRecord,
    PreparedWriter,
    write_png_atomic,
)
from texscribe.data.sample import Skipped
from texscribe.errors import InputError
from texscribe.latex import Vocab


def _image(height: int, width: int) -> np.ndarray:
    image = np.zeros((height, width), np.float32)
    image[2:-2, 2:-2] = 1.0
    return image


def test_writer_refuses_a_foreign_folder_and_accepts_its_own(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"not empty and is not a prepared dataset \(no manifest.tsv or .x.tsv\)"
    ):
        PreparedWriter(tmp_path / "notes", ".x.tsv").check_target()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="not a folder"):
        PreparedWriter(tmp_path / "file").check_target()
    for marker in (".x.tsv", MANIFEST):  # an earlier (maybe interrupted) run of the tool
        (tmp_path / marker).mkdir()
        (tmp_path / marker / marker).write_text("", encoding="utf-8")
        PreparedWriter(tmp_path / marker, ".x.tsv").check_target()
    PreparedWriter(tmp_path / "new", ".x.tsv").check_target()
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_writer_puts_down_the_format_and_removes_stale_images(tmp_path: Path) -> None:
    writer = PreparedWriter(tmp_path / "ds", ".x.tsv")
    writer.make_dirs()
    records = []
    for sample_id, tokens in (("a", ["x", "+", "1"]), ("b/2", ["\\frac", "{", "x", "}", "{", "2", "}"])):
        dest = writer.image_path(sample_id)
        write_png_atomic(_image(10, 20), dest)
        records.append(PreparedRecord(sample_id, dest, tokens, "src", 10, 20))
    stale = writer.image_path("gone")
    write_png_atomic(_image(8, 8), stale)
    (writer.images / "notes.txt").write_text("kept: not an image", encoding="utf-8")
    vocab = Vocab.build(r.tokens for r in records)
    with writer.open_state_log() as log:
        log.write("a\tk1\tok\t10\t20\n")
    writer.write(records, vocab, [Skipped("c", "src", "no_ink", "blank\tpage")])
    writer.compact_state(["a\tk1\tok\t10\t20\n", "b/2\tk2\tok\t10\t20\n"])

    root = writer.root
    assert (root / MANIFEST).read_bytes() == (
        b"id\timage\ttokens\tsource\theight\twidth\n"
        b"a\timages/a.png\tx + 1\tsrc\t10\t20\n"
        + f"b/2\timages/{records[1].image_path.name}\t\\frac {{ x }} {{ 2 }}\tsrc\t10\t20\n".encode()
    )
    assert (root / VOCAB).read_text(encoding="utf-8") == vocab.to_json()
    assert (root / SKIPPED).read_text(
        encoding="utf-8"
    ) == "id\tsource\treason\tdetail\nc\tsrc\tno_ink\tblank page\n"
    assert (root / ".x.tsv").read_text(encoding="utf-8") == "a\tk1\tok\t10\t20\nb/2\tk2\tok\t10\t20\n"
    assert not stale.exists() and (writer.images / "notes.txt").exists()
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("*.tmp.png"))
    ds = PreparedDataset.open(root)
    assert ds.records == records and ds.vocab.itos == vocab.itos
