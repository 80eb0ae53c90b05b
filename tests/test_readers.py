"""Readers on tiny fixtures built in each test (zip and folder): samples, skip reasons, spec parsing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from texscribe.data.readers import SourceSpec, detect_format, open_source
from texscribe.data.readers.comer import read_comer
from texscribe.data.readers.im2markup import read_im2markup
from texscribe.data.readers.label_folder import read_label_folder
from texscribe.data.readers.manifest import read_manifest_source
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError
from texscribe.images import load_image


def stroke_image(seed: int, ext: str = ".bmp", dark_ink: bool = False) -> bytes:
    """A small encoded image with a few random strokes (white on black, or black on white)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((40, 90), np.uint8)
    for _ in range(3):
        pts = rng.integers([5, 5], [85, 35], size=(4, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, 255, 2)
    if dark_ink:
        img = 255 - img
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return root


def write_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def both(tmp_path: Path, files: dict[str, bytes | str]) -> list[Path]:
    """The same tree as a folder and as a zip."""
    return [write_tree(tmp_path / "folder", files), write_zip(tmp_path / "tree.zip", files)]


def split_items(items) -> tuple[dict[str, Sample], dict[str, Skipped]]:
    items = list(items)
    samples = {s.id: s for s in items if isinstance(s, Sample)}
    skipped = {s.id: s for s in items if isinstance(s, Skipped)}
    return samples, skipped


# ------------------------------------------------------------------------------------------- CoMER
COMER_CAPTIONS = "a1\tx + 1\na2\t\\frac { 1 } { 2 }\r\nnoTabHere x + 1\n\na3\t\na1\ty\nghost\tz\n"


def comer_files() -> dict[str, bytes | str]:
    return {
        "data/train/caption.txt": COMER_CAPTIONS,
        "data/train/img/a1.bmp": stroke_image(1),
        "data/train/img/a2.bmp": stroke_image(2),
        "data/train/img/a3.bmp": stroke_image(3),
        "data/train/img/orphan.bmp": stroke_image(4),
        "data/2014/caption.txt": "t1\t2 x\n",
        "data/2014/img/t1.bmp": stroke_image(5),
    }


def test_comer_zip_and_folder_give_the_same_records(tmp_path):
    folder, archive = both(tmp_path, comer_files())
    results = []
    for path in (folder, archive):
        samples, skipped = split_items(read_comer(path, "train"))
        assert sorted(samples) == ["a1", "a2"]
        assert samples["a2"].latex == "\\frac { 1 } { 2 }" and samples["a2"].pretokenized
        assert samples["a1"].source == f"{path.name}:train"
        reasons = {k: v.reason for k, v in skipped.items()}
        assert reasons == {
            "noTabHere": "malformed_line",
            "a3": "malformed_line",
            "ghost": "missing_image",
            "a1": "duplicate_id",
            "orphan": "missing_label",
        }
        assert "caption.txt:3" in skipped["noTabHere"].detail  # file:line of the malformed caption
        img = load_image(samples["a1"].load(), origin=samples["a1"].origin)
        assert img.shape == (40, 90)
        results.append([(s.id, s.latex) for s in samples.values()])
    assert results[0] == results[1]


def test_comer_line_with_extra_tab_columns_is_malformed(tmp_path):
    """Issue 19 item 8: `a1<TAB>x + 1<TAB>junk` was read as the label `x + 1 junk` and dropped as
    "plain-language text"; which column is the label cannot be known, so the line is malformed."""
    files = comer_files()
    files["data/2014/caption.txt"] = "t1\tx + 1\tsome\tjunk\n"
    samples, skipped = split_items(read_comer(write_zip(tmp_path / "c.zip", files), "2014"))
    assert not samples and skipped["t1"].reason == "malformed_line"
    assert "caption.txt:1: 4 TAB-separated columns, expected 2 (id<TAB>label)" in skipped["t1"].detail


def test_comer_split_selection(tmp_path):
    folder, archive = both(tmp_path, comer_files())
    for path in (folder, archive):
        samples, _ = split_items(read_comer(path, "2014"))
        assert list(samples) == ["t1"]
        with pytest.raises(InputError, match="several splits.*2014, train"):
            list(read_comer(path))
        with pytest.raises(InputError, match="no split 'test'; available: 2014, train"):
            list(read_comer(path, "test"))


def test_comer_reads_images_lazily(tmp_path):
    folder = write_tree(tmp_path / "f", comer_files())
    items = read_comer(folder, "train")
    first = next(items)
    (folder / "data/train/img/a1.bmp").unlink()  # gone before anyone asked for the pixels
    with pytest.raises(FileNotFoundError):
        first.load()


# ------------------------------------------------------------------------------------------- im2markup
def im2markup_files(prefix: str = "im2latex_val/") -> dict[str, bytes | str]:
    return {
        f"{prefix}im2latex_formulas.norm.lst": "x ^ { 2 }\r\n\\alpha + \\beta\r\ny = 1\r\n",
        f"{prefix}im2latex_validate_filter.lst": "p0.png 0\np1.png 1\np2.png 7\np3.png two\np4.png 2\np0.png 2\nlonely\n",
        f"{prefix}im2latex_train_filter.lst": "p1.png 1\n",
        f"{prefix}formula_images_processed/p0.png": stroke_image(10, ".png", dark_ink=True),
        f"{prefix}formula_images_processed/p1.png": stroke_image(11, ".png", dark_ink=True),
        f"{prefix}formula_images_processed/p2.png": stroke_image(12, ".png", dark_ink=True),
        f"{prefix}formula_images_processed/p3.png": stroke_image(13, ".png", dark_ink=True),
    }


def test_im2markup_reader(tmp_path):
    for path in both(tmp_path, im2markup_files()):
        items = list(read_im2markup(path, "val"))  # alias of validate
        samples, _ = split_items(items)
        assert {k: s.latex for k, s in samples.items()} == {"p0": "x ^ { 2 }", "p1": "\\alpha + \\beta"}
        assert all(s.pretokenized and s.source == f"{path.name}:validate" for s in samples.values())
        reasons = [(s.id, s.reason) for s in items if isinstance(s, Skipped)]
        assert reasons == [
            ("p2", "bad_index"),
            ("p3", "bad_index"),
            ("p4", "missing_image"),
            ("p0", "duplicate_id"),
            ("lonely", "malformed_line"),
        ]
        assert load_image(samples["p0"].load()).max() == pytest.approx(1.0)  # dark ink inverted to bright
        train, _ = split_items(read_im2markup(path, "train"))
        assert list(train) == ["p1"]


def test_im2markup_odd_indices_and_bare_names(tmp_path):
    """Found by benchmarks/fuzz_inputs.py: an index '²' passed str.isdigit() and int() raised ValueError,
    aborting data prepare; a line without an index was skipped under 'p5.png', not its id 'p5'."""
    files = im2markup_files("")
    files["im2latex_validate_filter.lst"] = "p0.png \u00b2\np1.png \u0663\np2.png -1\np5.png\np3.png 1\n"
    items = list(read_im2markup(write_tree(tmp_path, files), "validate"))
    reasons = [(s.id, s.reason) for s in items if isinstance(s, Skipped)]
    assert reasons == [
        ("p0", "bad_index"),
        ("p1", "bad_index"),
        ("p2", "bad_index"),
        ("p5", "malformed_line"),
    ]
    assert [s.id for s in items if isinstance(s, Sample)] == ["p3"]


def test_im2markup_requires_formulas_file(tmp_path):
    files = im2markup_files("")
    del files["im2latex_formulas.norm.lst"]
    folder = write_tree(tmp_path, files)
    with pytest.raises(InputError, match="formulas"):
        list(read_im2markup(folder, "validate"))


# ------------------------------------------------------------------------------------------- label folder
def label_files() -> dict[str, bytes | str]:
    return {
        "train/a.png": stroke_image(20, ".png"),
        "train/a.txt": "$x^2 + 1$\n",
        "train/sub/b.jpg": stroke_image(21, ".jpg"),
        "train/sub/b.txt": "\ufeff\\frac{1}{2}",  # UTF-8 with BOM is fine
        "train/c.png": stroke_image(22, ".png"),  # no label
        "train/d.txt": "y",  # no image
        "train/e.png": stroke_image(23, ".png"),
        "train/e.txt": "\\alpha \u00b2".encode("latin-1"),  # wrong encoding
        "train/.hidden.txt": "ignored",
        "test/z.png": stroke_image(24, ".png"),
        "test/z.txt": "z",
    }


def test_label_folder_reader(tmp_path):
    for path in both(tmp_path, label_files()):
        items = list(read_label_folder(path, "train"))
        samples, skipped = split_items(items)
        assert {k: s.latex for k, s in samples.items()} == {"a": "$x^2 + 1$", "sub/b": "\\frac{1}{2}"}
        assert not any(s.pretokenized for s in samples.values())
        assert {k: s.reason for k, s in skipped.items()} == {
            "c": "missing_label",
            "d": "missing_image",
            "e": "wrong_encoding",
        }
        assert "e.txt" in skipped["e"].detail and "not UTF-8" in skipped["e"].detail
        everything, _ = split_items(read_label_folder(path))
        assert set(everything) == {"train/a", "train/sub/b", "test/z"}


# ------------------------------------------------------------------------------------------- manifest
def test_manifest_tsv_with_header(tmp_path):
    write_tree(tmp_path, {"imgs/a.png": stroke_image(30, ".png"), "imgs/b.png": stroke_image(31, ".png")})
    (tmp_path / "list.tsv").write_text(
        "image_path\tlatex\n"
        "imgs/a.png\t\\frac{a}{b}\n"
        "imgs/missing.png\tx\n"
        "imgs/b.png\n"
        "imgs/b.png\t\n"
        "imgs/a.png\ty\n",
        encoding="utf-8",
    )
    items = list(read_manifest_source(tmp_path / "list.tsv"))
    samples, _ = split_items(items)
    assert {k: s.latex for k, s in samples.items()} == {"imgs/a": "\\frac{a}{b}"}
    assert [(s.id, s.reason) for s in items if isinstance(s, Skipped)] == [
        ("imgs/missing", "missing_image"),
        ("imgs/b.png", "malformed_line"),
        ("imgs/b", "missing_label"),
        ("imgs/a", "duplicate_id"),
    ]
    assert "list.tsv:4" in items[2].detail


def test_manifest_image_path_too_long_for_the_file_system_is_skipped(tmp_path):
    """Found by benchmarks/fuzz_inputs.py: Path.is_file() raised OSError (ENAMETOOLONG), aborting prepare."""
    write_tree(tmp_path, {"a.png": stroke_image(30, ".png")})
    (tmp_path / "list.tsv").write_text(f"id\timage\tlatex\nlong\t{'n' * 300}.png\tx\nok\ta.png\ty\n")
    items = list(read_manifest_source(tmp_path / "list.tsv"))
    skipped = [s for s in items if isinstance(s, Skipped)]
    assert [(s.id, s.reason) for s in skipped] == [("long", "missing_image")]
    assert "File name too long" in skipped[0].detail
    assert [s.id for s in items if isinstance(s, Sample)] == ["ok"]


def test_manifest_csv_without_header_and_quoted_commas(tmp_path):
    write_tree(tmp_path, {"a.png": stroke_image(32, ".png"), "b.png": stroke_image(33, ".png")})
    (tmp_path / "labels.csv").write_text('a.png,"f(x, y)"\nb.png,z\n', encoding="utf-8")
    samples, skipped = split_items(open_source(tmp_path / "labels.csv"))
    assert {k: s.latex for k, s in samples.items()} == {"a": "f(x, y)", "b": "z"}
    assert not skipped


def test_manifest_in_a_folder_by_split_and_tokens_column(tmp_path):
    write_tree(tmp_path, {"images/q.png": stroke_image(34, ".png")})
    (tmp_path / "val.tsv").write_text("id\timage\ttokens\nq-1\timages/q.png\tx ^ { 2 }\n", encoding="utf-8")
    (tmp_path / "train.tsv").write_text("image\tlatex\n", encoding="utf-8")
    samples, _ = split_items(open_source(f"{tmp_path}:val"))
    assert samples["q-1"].pretokenized and samples["q-1"].latex == "x ^ { 2 }"
    with pytest.raises(InputError, match="cannot pick a manifest"):
        list(open_source(tmp_path, format="manifest"))


def test_manifest_line_not_utf8_is_skipped_with_its_line(tmp_path):
    """Issue 19 item 4: one Latin-1 line costs that line, reported with file and line; the rest is read."""
    write_tree(tmp_path, {"a.png": stroke_image(35, ".png"), "b.png": stroke_image(36, ".png")})
    (tmp_path / "m.tsv").write_bytes("a.png\tx\nb.png\t\u00e9\nc.png\ty\n".encode("latin-1"))
    items = list(read_manifest_source(tmp_path / "m.tsv"))
    assert [(s.id, type(s).__name__) for s in items] == [("a", "Sample"), ("b", "Skipped"), ("c", "Skipped")]
    assert items[1].reason == "wrong_encoding" and f"{tmp_path / 'm.tsv'}:2: not UTF-8" in items[1].detail
    assert "0xe9" in items[1].detail and items[2].reason == "missing_image"


def test_utf16_files_with_a_bom_are_read(tmp_path):
    """Issue 19 item 4: UTF-16 (as Windows Notepad saves) captions, manifests and label files read."""
    files = comer_files()
    files["data/2014/caption.txt"] = "t1\t2 x\r\n".encode("utf-16")
    samples, skipped = split_items(read_comer(write_zip(tmp_path / "c.zip", files), "2014"))
    assert samples["t1"].latex == "2 x" and not skipped
    write_tree(tmp_path / "m", {"a.png": stroke_image(37, ".png"), "b.txt": "\\beta".encode("utf-16")})
    (tmp_path / "m" / "m.csv").write_bytes("image,latex\na.png,\\alpha\n".encode("utf-16"))
    samples, skipped = split_items(read_manifest_source(tmp_path / "m" / "m.csv"))
    assert samples["a"].latex == "\\alpha" and not skipped
    (tmp_path / "m" / "b.png").write_bytes(stroke_image(38, ".png"))
    samples, _ = split_items(read_label_folder(tmp_path / "m"))
    assert samples["b"].latex == "\\beta"


def test_caption_and_formula_lines_not_utf8_are_skipped_alone(tmp_path):
    """Issue 19 item 4: a bad caption line skips its id (once, not also as `missing_label`); a bad im2markup
    formula line skips only the images that point at it."""
    files = comer_files()
    files["data/train/caption.txt"] = "a1\tx + 1\na2\t\\alpha \xb2\na3\ty\n".encode("latin-1")
    samples, skipped = split_items(read_comer(write_zip(tmp_path / "c.zip", files), "train"))
    assert sorted(samples) == ["a1", "a3"]
    assert {k: v.reason for k, v in skipped.items()} == {"a2": "wrong_encoding", "orphan": "missing_label"}
    assert "caption.txt:2: not UTF-8 text (byte 0xb2 at column 11)" in skipped["a2"].detail
    files = im2markup_files()
    files["im2latex_val/im2latex_formulas.norm.lst"] = b"x ^ { 2 }\n\\alpha \xff\ny = 1\n"
    items = list(read_im2markup(write_tree(tmp_path / "im2", files), "validate"))
    samples, skipped = split_items(items)
    assert sorted(samples) == ["p0"] and skipped["p1"].reason == "wrong_encoding"
    assert "im2latex_formulas.norm.lst:2" in skipped["p1"].detail


# ------------------------------------------------------------------------------------------- open_source
def test_source_spec_parsing(tmp_path):
    assert SourceSpec.parse("data.zip:train") == SourceSpec(Path("data.zip"), "train")
    assert SourceSpec.parse("data.zip") == SourceSpec(Path("data.zip"), None)
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert SourceSpec.parse(str(odd)) == SourceSpec(odd, None)  # an existing path keeps its colon
    assert SourceSpec.parse("x:y/z").split is None


def test_detect_format_and_dispatch(tmp_path):
    comer = write_zip(tmp_path / "c.zip", comer_files())
    im2 = write_tree(tmp_path / "im2", im2markup_files())
    labels = write_tree(tmp_path / "labels", label_files())
    (tmp_path / "m.tsv").write_text("image\tlatex\n", encoding="utf-8")
    inkml = write_zip(tmp_path / "ink.zip", {"ink/2014/a.inkml": "<ink/>"})
    assert detect_format(comer) == "comer"
    assert detect_format(im2) == "im2markup"
    assert detect_format(labels) == "labels"
    assert detect_format(tmp_path / "m.tsv") == "manifest"
    assert detect_format(inkml) == "inkml"
    samples, _ = split_items(open_source(f"{comer}:2014"))
    assert list(samples) == ["t1"]
    samples, _ = split_items(open_source(f"{im2}:validate", format="im2markup"))
    assert set(samples) == {"p0", "p1"}
    with pytest.raises(InputError, match="unknown format"):
        open_source(comer, format="pdf")


def test_open_source_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "nope.zip:train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cannot tell the dataset format"):
        open_source(tmp_path / "empty")
    (tmp_path / "notzip.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="expected a .zip archive or a folder"):
        open_source(tmp_path / "notzip.zip", format="comer")


INKML = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="truth">$x+1$</annotation>
<trace id="0">10 10, 40 40</trace>
<trace id="1">40 10, 10 40</trace>
<trace id="2">60 25, 90 25</trace>
<trace id="3">75 10, 75 40</trace>
<trace id="4">110 10, 110 40</trace>
</ink>
"""


def test_inkml_sources_dispatch_to_the_inkml_reader(tmp_path):
    files = {"ink/2014/e1.inkml": INKML, "ink/2014/bad.inkml": "<ink><trace>1 2"}
    for path in both(tmp_path, files):
        assert detect_format(path) == "inkml"
        samples, skipped = split_items(open_source(f"{path}:2014"))
        assert samples["e1"].latex == "x+1" and not samples["e1"].pretokenized
        assert skipped["bad"].reason == "malformed_inkml"
        img = load_image(samples["e1"].load(), origin=samples["e1"].origin)
        assert img.ndim == 2 and img.max() == pytest.approx(1.0, abs=0.02)
