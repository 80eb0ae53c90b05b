"""Sub-expression decomposition of CROHME InkML files (`render/decompose.py`, `data decompose-inkml`)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from texscribe.cli import main
from texscribe.data.prepared import PreparedDataset
from texscribe.data.readers.inkml import parse_inkml, render_inkml
from texscribe.data.render_strokes import stroke_scale
from texscribe.images import crop_to_ink, load_image
from texscribe.latex import to_text
from texscribe.render.decompose import (
    Part,
    Reading,
    choose_parts,
    file_parts,
    file_scale,
    math_root,
    mathml_tokens,
    part_traces,
    render_part,
    resolve_reading,
    symbol_tokens,
    truth_tokens,
)
from texscribe.render.decompose_dataset import _decompose_file, _Settings
from texscribe.render.handwriting_corpus import held_back_formulas

QUADRATIC = "crohme_inkml/train/200922-949-30.inkml"


@pytest.fixture(scope="module")
def inkml_zip(shared_data) -> Path:
    return shared_data / "crohme" / "crohme_inkml.zip"


def _doc(inkml_zip: Path, name: str = QUADRATIC):
    with zipfile.ZipFile(inkml_zip) as z:
        return parse_inkml(z.read(name), name), z.read(name)


def _parts(doc) -> dict[str, set[str]]:
    reading, _ = resolve_reading(doc)
    assert reading is not None
    out: dict[str, set[str]] = {}
    for part in file_parts(doc, reading):
        out.setdefault(part.kind, set()).add(to_text(part.tokens))
    return out


# ----------------------------------------------------------------------------------------- converter
def test_small_mathml_tree_converts_with_dots_read_by_the_truth():
    """A `.` symbol is read as `\\cdot` when that gives the truth; rows nest; scripts are braced."""
    ink = """<ink xmlns="http://www.w3.org/2003/InkML">
    <annotation type="truth">$a \\cdot b^{2}$</annotation>
    <annotationXML type="truth" encoding="Content-MathML"><math xmlns="http://www.w3.org/1998/Math/MathML">
      <mrow><mi xml:id="a_1">a</mi><mrow><mo xml:id="._1">.</mo>
      <msup><mi xml:id="b_1">b</mi><mn xml:id="2_1">2</mn></msup></mrow></mrow></math></annotationXML>
    <trace id="0">0 0, 1 2</trace><trace id="1">3 1, 3 1</trace><trace id="2">5 0, 6 2</trace>
    <trace id="3">7 0, 7.5 -1</trace>
    <traceGroup><traceGroup><annotation type="truth">a</annotation><traceView traceDataRef="0"/>
    <annotationXML href="a_1"/></traceGroup><traceGroup><annotation type="truth">.</annotation>
    <traceView traceDataRef="1"/><annotationXML href="._1"/></traceGroup>
    <traceGroup><annotation type="truth">b</annotation><traceView traceDataRef="2"/><annotationXML href="b_1"/>
    </traceGroup><traceGroup><annotation type="truth">2</annotation><traceView traceDataRef="3"/>
    <annotationXML href="2_1"/></traceGroup></traceGroup></ink>"""
    doc = parse_inkml(ink)
    assert mathml_tokens(math_root(doc), Reading(symbol_tokens(doc))) == ["a", ".", "b", "^", "{", "2", "}"]
    reading, text = resolve_reading(doc)
    assert reading is not None and text == "a \\cdot b ^ { 2 }"
    parts = {to_text(p.tokens): p.kind for p in file_parts(doc, reading)}
    assert parts == {"b ^ { 2 }": "script"}  # `a \\cdot`, `\\cdot b ^ { 2 }`: a dangling operator


def test_whole_tree_equals_the_truth_on_train_files(inkml_zip):
    """On the first 400 train files, nearly every MathML tree gives the file's own truth label."""
    with zipfile.ZipFile(inkml_zip) as z:
        names = sorted(
            n for n in z.namelist() if n.startswith("crohme_inkml/train/") and n.endswith(".inkml")
        )
        docs = [parse_inkml(z.read(n), n) for n in names[:400]]
    passing = 0
    for doc in docs:
        reading, text = resolve_reading(doc)
        if reading is not None:
            passing += 1
            assert text == to_text(truth_tokens(doc)) or "l o g" in (doc.truth or "") or "tg" in doc.truth
    assert passing / len(docs) > 0.95


# --------------------------------------------------------------------------------------------- parts
def test_parts_of_the_quadratic_formula(inkml_zip):
    doc, _ = _doc(inkml_zip)
    parts = _parts(doc)
    assert parts["numerator"] == {"- b + \\sqrt { b ^ { 2 } - 4 a c }"}
    assert parts["denominator"] == {"2 a"}
    assert parts["radicand"] == {"b ^ { 2 } - 4 a c"}
    assert "b ^ { 2 }" in parts["script"]
    assert {"4 a c", "a c", "- b"} <= parts["run"]
    every = {t for texts in parts.values() for t in texts}
    assert "\\frac { - b + \\sqrt { b ^ { 2 } - 4 a c } } { 2 a }" not in every  # never the whole expression
    assert not any(t.endswith(("-", "+")) or t.startswith("+") for t in parts["run"])  # no dangling operator
    assert not any("(" in t for t in every)


def test_choice_is_seeded_capped_and_varied():
    parts = [Part("run", (str(i), "x"), frozenset({f"{i}a", f"{i}b"})) for i in range(20)]
    parts += [Part("numerator", ("a", "b"), frozenset({"na", "nb"}))]
    parts += [Part("script", ("x", "^", "{", "2", "}"), frozenset({"sx", "s2"}))]
    first = choose_parts(parts, 6, seed=0, file_id="f")
    assert len(first) == 6 and first == choose_parts(parts, 6, seed=0, file_id="f")
    assert {"numerator", "script"} <= {p.kind for p in first}  # every kind gets its turn
    assert len({p.tokens for p in first}) == 6
    assert choose_parts(parts[:3], 6, seed=0, file_id="f") == parts[:3]


# --------------------------------------------------------------------------------------------- image
def test_part_images_use_the_whole_files_scale(inkml_zip):
    """All of a file's symbols drawn as one part give exactly `data prepare`'s image of the file; a part is
    drawn at the file's scale, not at its own."""
    doc, data = _doc(inkml_zip)
    reading, _ = resolve_reading(doc)
    scale = file_scale(doc)
    full = crop_to_ink(load_image(render_inkml(data)), margin=4)
    every = frozenset(s.href for s in doc.symbols)
    assert np.array_equal(render_part(part_traces(doc, every), scale), full)
    denominator = next(p for p in file_parts(doc, reading) if p.kind == "denominator")
    traces = part_traces(doc, denominator.symbols)
    assert scale == stroke_scale(doc.traces) != stroke_scale(traces)
    image = render_part(traces, scale)
    assert image.shape[0] < full.shape[0] / 2  # `2 a` sits below the bar at the size it has in the full image


def test_parts_equal_to_a_2014_test_caption_are_dropped(inkml_zip, shared_data, tmp_path):
    held_back = held_back_formulas(shared_data / "crohme" / "crohme_offline.zip")
    assert "\\frac { a } { b }" in held_back
    from texscribe.data.readers.archive import Archive

    archive = Archive.open(inkml_zip)
    settings = _Settings(str(inkml_zip), tmp_path, 0, 50, frozenset({"2 a", "4 a c"}))
    (tmp_path).mkdir(exist_ok=True)
    outcome = _decompose_file(QUADRATIC, archive, settings)
    texts = {to_text(tokens) for _, _, tokens, _, _ in outcome.parts}
    assert outcome.dropped["crohme_2014_formula"] == 2 and not texts & {"2 a", "4 a c"}
    assert {s.reason for s in outcome.held_back} == {"crohme_2014_formula"}


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_writes_resumes_and_refuses_a_foreign_folder(inkml_zip, shared_data, tmp_path, capsys):
    out = tmp_path / "dec"
    args = ["data", "decompose-inkml", "--out", str(out), "--inkml", str(inkml_zip), "--limit", "20"]
    args += ["--data-root", str(shared_data), "--no-progress"]
    assert main(args) == 0
    ds = PreparedDataset.open(out)
    assert 20 <= len(ds) <= 6 * 20
    held_back = held_back_formulas(shared_data / "crohme" / "crohme_offline.zip")
    for record in ds:
        image = ds.load_image(record)
        assert image.shape == (record.height, record.width) and image.max() == 1.0
        assert record.source.startswith("decompose:") and to_text(record.tokens) not in held_back
        assert len(record.tokens) >= 2
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    d = report["decompose"]
    assert d["files"]["read"] == 20 and d["images"]["kept"] == len(ds) and d["split"] == "train"
    assert "## Sub-expression decomposition" in (out / "report.md").read_text(encoding="utf-8")
    first = {r.id: r.image_path.read_bytes() for r in ds}
    capsys.readouterr()
    assert main(args) == 0  # a rerun reuses every image
    assert f"0 / {len(ds)}" in capsys.readouterr().out
    assert {r.id: r.image_path.read_bytes() for r in PreparedDataset.open(out)} == first
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    capsys.readouterr()
    assert (
        main(["data", "decompose-inkml", "--out", str(foreign), "--inkml", str(inkml_zip), "--limit", "2"])
        != 0
    )
    assert "not a prepared dataset" in capsys.readouterr().err
    assert (foreign / "notes.txt").exists() and not (foreign / "images").exists()
