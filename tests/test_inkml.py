"""InkML reader and stroke rasteriser (texscribe.data.readers.inkml, texscribe.data.render_strokes)."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from texscribe.data.cleaning import REASONS
from texscribe.data.readers import open_source
from texscribe.data.readers.inkml import clean_truth, parse_inkml, parse_trace, read_inkml
from texscribe.data.render_strokes import RenderOptions, render_strokes
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import ImageError, InputError
from texscribe.images import load_image
from texscribe.latex import parse_label, split_label

# A CROHME-style file: namespace, traceFormat, truth with $...$ and an XML escape, symbol groups.
INKML = """<ink xmlns="http://www.w3.org/2003/InkML">
<traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/></traceFormat>
<annotation type="writer">w1</annotation>
<annotation type="truth">$x_1 &lt; 2$</annotation>
<trace id="0">10 10, 12 30, 14 50, 16 70</trace>
<trace id="1">20 60, 30 40, 40 60</trace>
<trace id="2">30 80, 30 80</trace>
<trace id="3">50 55, 70 50, 50 45</trace>
<trace id="4">80 20, 100 20, 90 20, 90 70</trace>
<traceGroup xml:id="9">
  <annotation type="truth">Segmentation</annotation>
  <traceGroup xml:id="10"><annotation type="truth">x</annotation>
    <traceView traceDataRef="0"/><traceView traceDataRef="1"/><annotationXML href="x_1"/></traceGroup>
  <traceGroup xml:id="11"><annotation type="truth">1</annotation><traceView traceDataRef="2"/></traceGroup>
  <traceGroup xml:id="12"><annotation type="truth">&lt;</annotation><traceView traceDataRef="3"/></traceGroup>
  <traceGroup xml:id="13"><annotation type="truth">2</annotation><traceView traceDataRef="4"/></traceGroup>
</traceGroup>
</ink>"""


def inkml(truth: str | None = "$a+b$", traces: str = '<trace id="0">0 0, 10 40</trace>') -> str:
    note = f'<annotation type="truth">{truth}</annotation>' if truth is not None else ""
    return f'<ink xmlns="http://www.w3.org/2003/InkML">{note}{traces}</ink>'


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_inkml_reads_traces_truth_and_symbols():
    doc = parse_inkml(INKML.encode())
    assert doc.truth == "x_1 < 2"
    assert doc.channels == ("X", "Y")
    assert [t.shape for t in doc.traces] == [(4, 2), (3, 2), (2, 2), (3, 2), (4, 2)]
    assert doc.traces[0][1].tolist() == [12.0, 30.0]
    assert [(s.label, s.traces) for s in doc.symbols] == [
        ("x", (0, 1)),
        ("1", (2,)),
        ("<", (3,)),
        ("2", (4,)),
    ]
    assert doc.symbols[0].href == "x_1"
    assert doc.annotations["writer"] == "w1"


def test_parse_inkml_without_namespace_and_with_time_channel():
    text = (
        "<ink><traceFormat><channel name='X'/><channel name='Y'/><channel name='T'/></traceFormat>"
        "<annotation type='truth'>y</annotation><trace xml:id='t1'>1 2 100, 3 4 116</trace></ink>"
    )
    doc = parse_inkml(text)
    assert doc.channels == ("X", "Y", "T")
    assert doc.trace_ids == ["t1"]
    assert doc.traces[0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert doc.truth == "y"


def test_parse_trace_plain_ragged_and_float():
    assert parse_trace("1 2, 3 4").tolist() == [[1, 2], [3, 4]]
    assert parse_trace("1.5 -2e1 7, 3 4").tolist() == [[1.5, -20.0], [3, 4]]  # ragged rows keep x, y
    assert parse_trace(" 0.25 0.5 ,\n 1 1 ,").tolist() == [[0.25, 0.5], [1, 1]]


def test_parse_trace_difference_encoding():
    # explicit, then first differences (sticky), then second differences, then explicit again
    points = parse_trace("10 20, '1 '2, 1 2, \"0 \"1, 0 0, !5 !5")
    assert points.tolist() == [[10, 20], [11, 22], [12, 24], [13, 27], [14, 30], [5, 5]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<ink><trace>1 2, 3 4</trace>", "malformed XML"),
        ("<svg><trace>1 2</trace></svg>", "not <ink>"),
        ("<ink><trace id='7'>1 2, a b</trace></ink>", "trace '7'"),
        ("<ink><trace id='8'>1 2, '3 x</trace></ink>", "trace '8'"),
    ],
)
def test_parse_inkml_malformed_raises_input_error_naming_the_file(text, message):
    with pytest.raises(InputError) as info:
        parse_inkml(text, origin="bad.inkml")
    assert "bad.inkml" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("encoding", ["x-bogus-9", "shift_jis", "utf-7"])
def test_a_declared_encoding_that_cannot_be_read_is_an_input_error(encoding):
    """Found by benchmarks/fuzz_inputs.py: expat's LookupError / ValueError escaped parse_inkml and
    aborted data prepare."""
    data = f'<?xml version="1.0" encoding="{encoding}"?><ink><trace>1 2, 3 4</trace></ink>'.encode()
    with pytest.raises(InputError, match="names an encoding that cannot be read") as info:
        parse_inkml(data, origin="odd.inkml")
    assert str(info.value).startswith("odd.inkml: ")


def test_latin1_file_without_declaration_is_read():
    data = (
        inkml("$a \\cdot b$")
        .encode()
        .replace(b"</ink>", "<annotation type='x'>\xb7</annotation></ink>".encode("latin-1"))
    )
    assert parse_inkml(data).truth == "a \\cdot b"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_unicode_files_with_or_without_a_bom_are_read(encoding):
    """Issue 19 item 4: a UTF-16 InkML (as Windows tools save it) was reported as "malformed XML"."""
    doc = parse_inkml(inkml("$\\alpha \u2264 1$").encode(encoding), origin="w.inkml")
    assert doc.truth == "\\alpha \u2264 1" and doc.traces[0].tolist() == [[0, 0], [10, 40]]


def test_clean_truth_strips_dollars_and_rewrites_rit_root_index():
    assert clean_truth("  $ x^2 $ ") == "x^2"
    assert clean_truth("$ p^2 \\ $") == "p^2"  # a trailing control space draws nothing
    assert clean_truth("$ \\sqrt {648} ABOVE {4} + 8 $") == "\\sqrt[4]{648}+8"
    assert clean_truth("\\sqrt {\\sqrt {x} ABOVE {n}} ABOVE {m}") == "\\sqrt[m]{\\sqrt[n]{x}}"
    assert clean_truth("A ABOVE {b}") == "A ABOVE {b}"  # not a root: left alone


# --- reading folders and zips -------------------------------------------------------------------------


def write_tree(root: Path) -> Path:
    """crohme_inkml/{train,test}/*.inkml with one good file per split and every kind of bad file in train."""
    files = {
        "crohme_inkml/train/good.inkml": INKML,
        "crohme_inkml/train/broken.inkml": "<ink><trace>1 2",
        "crohme_inkml/train/notrace.inkml": inkml(traces=""),
        "crohme_inkml/train/notruth.inkml": inkml(truth=None),
        "crohme_inkml/train/empty.inkml": inkml(truth="$ $"),
        "crohme_inkml/train/readme.txt": "not inkml",
        "crohme_inkml/test/t1.inkml": inkml("$\\frac{1}{2}$"),
        "crohme_inkml/test/sub/good.inkml": inkml("$z$"),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_read_inkml_folder_yields_samples_and_skips_with_reasons(tmp_path):
    items = list(read_inkml(write_tree(tmp_path), "train"))
    samples = [i for i in items if isinstance(i, Sample)]
    skipped = {i.id: i for i in items if isinstance(i, Skipped)}
    assert [s.id for s in samples] == ["good"]
    assert samples[0].latex == "x_1 < 2" and samples[0].pretokenized is False
    assert samples[0].source.endswith(":train")
    assert {k: v.reason for k, v in skipped.items()} == {
        "broken": "malformed_inkml",
        "notrace": "no_traces",
        "notruth": "no_truth",
        "empty": "no_truth",
    }
    assert "broken.inkml" in skipped["broken"].detail


def test_read_inkml_zip_splits_and_duplicates(tmp_path):
    root = write_tree(tmp_path / "tree")
    archive = tmp_path / "crohme_inkml.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(root).as_posix())
    assert sorted(s.id for s in read_inkml(archive, "test")) == ["good", "t1"]
    everything = list(read_inkml(archive, "all"))
    assert [i.reason for i in everything if isinstance(i, Skipped) and i.id == "good"] == ["duplicate_id"]
    with pytest.raises(InputError, match="several splits"):
        list(read_inkml(archive))
    with pytest.raises(InputError, match="no split 'val'"):
        list(read_inkml(archive, "val"))


def test_read_single_file_and_open_source(tmp_path):
    path = tmp_path / "one.inkml"
    path.write_text(INKML, encoding="utf-8")
    (sample,) = read_inkml(path)
    assert sample.id == "one" and sample.load().ndim == 2
    write_tree(tmp_path / "data")
    ids = sorted(s.id for s in open_source(f"{tmp_path / 'data'}:test") if isinstance(s, Sample))
    assert ids == ["good", "t1"]


def test_prepare_draws_inkml_at_a_stroke_height_with_the_same_pen(tmp_path):
    """`data prepare --stroke-height 14` writes the same ink at half the size, its pen as wide as at 28 px."""
    from texscribe.data.prepare import prepare
    from texscribe.data.prepared import PreparedDataset
    from texscribe.images import measure_ink

    root = write_tree(tmp_path / "data")
    sizes = {}
    for height in (28.0, 14.0):
        out = tmp_path / f"h{height:g}"
        prepare([f"{root}:test"], out, format="inkml", stroke_height=height, workers=1, progress=False)
        ds = PreparedDataset.open(out)
        rec = next(r for r in ds.records if r.id == "t1")
        image = ds.load_image(rec)
        pen = measure_ink(image).pen
        rows = np.flatnonzero((image > 0.5).any(axis=1))
        sizes[height] = (rows[-1] - rows[0] + 1 - pen, pen)  # stroke height without the pen, pen width
    assert sizes[28.0][0] == pytest.approx(28, abs=2) and sizes[14.0][0] == pytest.approx(14, abs=2)
    assert sizes[14.0][1] == pytest.approx(sizes[28.0][1], abs=0.5)
    with pytest.raises(InputError, match="--stroke-height"):
        prepare([f"{root}:test"], tmp_path / "bad", format="inkml", stroke_height=0.5, progress=False)
    with pytest.raises(InputError, match="--stroke-height applies to InkML sources; this one is comer"):
        prepare([f"{root}:test"], tmp_path / "bad", format="comer", stroke_height=14, progress=False)


def test_samples_load_lazily(tmp_path):
    root = write_tree(tmp_path)
    (sample,) = [s for s in read_inkml(root, "test") if s.id == "t1"]
    (root / "crohme_inkml/test/t1.inkml").write_text(inkml("$x$", '<trace id="0">0 0, 40 0, 40 40</trace>'))
    image = sample.load()  # reads the file now, not when iterating
    assert image.shape[1] > image.shape[0] / 2


# --- rendering ------------------------------------------------------------------------------------------


def test_render_shape_polarity_and_margin():
    image = render_strokes(parse_inkml(INKML).traces)
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.max() == 255
    assert image[:10].max() == 0 and image[:, :10].max() == 0 and image[-10:].max() == 0  # dark margin
    ink = np.argwhere(image > 127)
    assert ink[:, 0].min() == pytest.approx(12, abs=1) and ink[:, 1].min() == pytest.approx(12, abs=1)
    canonical = load_image(image)  # the library's image module keeps ink bright
    assert canonical.dtype == np.float32 and canonical.max() == 1.0 and canonical[0, 0] == 0.0


def test_render_normalises_units():
    traces = parse_inkml(INKML).traces
    small = render_strokes(traces)
    big = render_strokes([t * 1000 + 5e6 for t in traces])  # same ink in other units and origin
    assert big.shape == small.shape
    assert np.abs(big.astype(int) - small.astype(int)).mean() < 1


def test_render_size_options():
    traces = parse_inkml(INKML).traces
    default = render_strokes(traces)
    double = render_strokes(traces, RenderOptions(stroke_height=56))
    assert double.shape[0] - 26 == pytest.approx(2 * (default.shape[0] - 26), abs=3)
    fixed = render_strokes(traces, RenderOptions(target_height=100, padding=0))
    assert fixed.shape[0] == pytest.approx(100, abs=1)
    unit = render_strokes(traces, RenderOptions(scale=1.0, padding=0, line_width=1))
    assert unit.shape == (71, 91)  # y 10..80, x 10..100 at 1 px per unit, plus the pen width
    capped = render_strokes([np.array([[0, 0], [1e6, 1.0]])], RenderOptions(scale=1.0, max_side=500))
    assert max(capped.shape) <= 500


def test_render_dots_and_flat_strokes():
    dot = render_strokes([np.array([[5.0, 5.0]])])
    assert dot.max() == 255
    minus = render_strokes([np.array([[0.0, 0.0], [10.0, 0.0]])])  # only a flat stroke: sized by its length
    assert minus.shape[1] > minus.shape[0]


def test_render_jitter_is_seeded_per_sample():
    doc = parse_inkml(INKML)
    opts = RenderOptions(jitter=1.0, seed=3)
    a = render_strokes(doc.traces, opts, opts.rng_for("id1"))
    b = render_strokes(doc.traces, opts, opts.rng_for("id1"))
    c = render_strokes(doc.traces, opts, opts.rng_for("id2"))
    plain = render_strokes(doc.traces)
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert a.shape != plain.shape or not np.array_equal(a, plain)
    assert abs(a.shape[0] - plain.shape[0]) < 0.3 * plain.shape[0]  # a perturbation, not a different image


def test_render_errors():
    with pytest.raises(ImageError, match="no trace points"):
        render_strokes([np.empty((0, 2))], origin="x.inkml")
    with pytest.raises(ImageError, match=r"x\.inkml: trace '1': coordinate nan is not finite"):
        render_strokes([np.empty((0, 2)), np.array([[np.nan, 1.0]])], origin="x.inkml")
    with pytest.raises(ImageError, match=r"trace '0': coordinate 1e\+300 beyond"):
        render_strokes([np.array([[0.0, 0.0], [1e300, 5.0]])])
    with pytest.raises(ImageError):
        render_strokes([np.zeros(3)])
    with pytest.raises(ValueError):
        RenderOptions(target_height=0)
    with pytest.raises(ValueError):
        RenderOptions(jitter=-1)


@pytest.mark.parametrize(
    ("traces", "detail"),
    [
        ('<trace id="t1">5 5</trace>', "all 1 point(s) at one place: a dot"),
        ('<trace id="t1">5 5, 5 5</trace><trace id="t2">5 5</trace>', "all 3 point(s) at one place"),
        (
            '<trace id="t1">0 0, 10 40</trace><trace id="t2">1e300 5, 1e300 9</trace>',
            "trace 't2': coordinate 1e+300",
        ),
        (
            '<trace id="t1">0 0, 10 40</trace><trace id="t2">5 nan</trace>',
            "trace 't2': coordinate nan is not",
        ),
        ('<trace id="t1">0 0, 10 40</trace><trace id="t2">900000 5</trace>', "the ink spans 2.25e+04 stroke"),
    ],
)
def test_traces_that_cannot_show_the_label_are_skipped_with_a_reason(tmp_path, traces, detail):
    """Issue 19 item 8: a 1-point trace became an 11x11 dot labelled `a+b`; 1e300 was drawn (all else a
    speck). Such files are skipped as `bad_traces` naming the trace; a dot among strokes (`i`) is fine."""
    path = tmp_path / "w.inkml"
    path.write_text(inkml("$a+b$", traces), encoding="utf-8")
    (item,) = read_inkml(path)
    assert isinstance(item, Skipped) and item.reason == "bad_traces" and detail in item.detail
    assert "bad_traces" in REASONS
    path.write_text(
        inkml("$i$", '<trace id="1">3 10, 3 30</trace><trace id="2">3 2</trace>'), encoding="utf-8"
    )
    (item,) = read_inkml(path)
    assert isinstance(item, Sample) and item.load().max() == 255


# --- real data ------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_crohme_2014_truth_agrees_with_captions(shared_data):
    """Done-when of the foundation issue: normalised InkML truth == normalised caption for >= 90 % of ids."""
    from texscribe.data.readers.comer import read_comer

    crohme = shared_data / "crohme"
    captions = {
        s.id: s.latex for s in read_comer(crohme / "crohme_offline.zip", "2014") if isinstance(s, Sample)
    }
    samples = [s for s in read_inkml(crohme / "crohme_inkml.zip", "2014") if isinstance(s, Sample)][:200]
    equal = 0
    for s in samples:
        with contextlib.suppress(InputError):  # a truth with unbalanced braces counts as a disagreement
            equal += parse_label(s.latex) == split_label(captions[s.id])
    assert len(samples) == 200
    assert equal / len(samples) >= 0.90
    rendered = samples[0].load()  # and the strokes look like the offline bitmap of the same id
    assert 40 <= rendered.shape[0] <= 250 and rendered.max() == 255


def test_an_inkml_file_is_read_as_its_pen_strokes(tmp_path):
    """`texscribe predict file.inkml` (and a folder of them): the file's traces, drawn as `Ink` is drawn."""
    from texscribe.data.render_strokes import Ink
    from texscribe.inference import load_model
    from texscribe.inputs import expand_inputs

    good = tmp_path / "plus_one.inkml"
    good.write_text(inkml(traces='<trace id="0">0 20, 30 20</trace><trace id="1">15 5, 15 35</trace>'
                                '<trace id="2">45 0, 45 40</trace>'))  # fmt: skip
    bad = tmp_path / "bad.inkml"
    bad.write_text("<ink><trace id='7'>1 2, a b</trace></ink>")
    recognizer = load_model("default")
    traces = parse_inkml(good.read_bytes()).traces
    from_file = recognizer.preprocess(good)  # one array, or a tuple of views (data.read_ink_heights)
    from_ink = recognizer.preprocess(Ink(tuple(traces)))
    views = [from_file] if isinstance(from_file, np.ndarray) else list(from_file)
    ink_views = [from_ink] if isinstance(from_ink, np.ndarray) else list(from_ink)
    assert len(views) == len(ink_views)
    assert all(np.array_equal(a, b) for a, b in zip(views, ink_views))
    with pytest.raises(InputError, match="trace '7'") as err:
        recognizer.preprocess(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(InputError, match="cannot read InkML file") as err:
        recognizer.preprocess(tmp_path / "missing.inkml")
    assert "missing.inkml" in str(err.value)
    paths, problems = expand_inputs([str(tmp_path)])
    assert sorted(paths) == sorted([str(good), str(bad)]) and problems == []
