"""Property tests: hostile bytes never escape `load_image` as anything but `ImageError`, hostile text never
escapes the LaTeX functions as anything but `LabelError`, and LaTeX survives a write/read round trip."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from texscribe import images, latex
from texscribe.errors import ImageError, LabelError

# PIL reports some corrupt-file details as UserWarnings (bad EXIF, short tags); corrupt files are the point here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_canonical(img: np.ndarray) -> None:
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.ndim == 2 and img.size > 0
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


def load_or_image_error(payload) -> None:
    """The contract: a canonical image or `ImageError`, nothing else (no ValueError, OSError, warnings-as-errors)."""
    try:
        img = images.load_image(payload, origin="fuzz", max_pixels=1_000_000)
    except ImageError as exc:
        assert exc.source == "fuzz"
        return
    assert_canonical(img)


# --------------------------------------------------------------------------------------------- images
def _seed_files() -> dict[str, bytes]:
    """Small valid files of each format, for mutation: the fuzzer then reaches the pixel decoders."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((12, 20, 3)) * 255).astype(np.uint8))
    out = {}
    for name, im, fmt, kw in [
        ("png", rgb, "PNG", {}),
        ("png16", Image.fromarray((rng.random((12, 20)) * 65535).astype(np.uint16)), "PNG", {}),
        ("png_palette_alpha", rgb.convert("P"), "PNG", {"transparency": 0}),
        ("jpeg", rgb, "JPEG", {}),
        ("bmp", rgb, "BMP", {}),
        ("gif", rgb.convert("P"), "GIF", {}),
        ("tiff_lzw", rgb, "TIFF", {"compression": "tiff_lzw"}),
        ("tiff_float", Image.fromarray(rng.random((12, 20)).astype(np.float32)), "TIFF", {}),
        ("webp", rgb, "WEBP", {}),
    ]:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    return out


SEEDS = _seed_files()
MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"BM",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"P6\n",
]


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    load_or_image_error(data)


@FUZZ
@given(st.text(max_size=300))
def test_random_paths(path):
    load_or_image_error(path)


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=512))
def test_random_bytes_after_a_format_signature(magic, tail):
    load_or_image_error(magic + tail)


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_valid_files(name, edits, cut):
    data = bytearray(SEEDS[name])
    for pos, value in edits:
        data[pos % len(data)] = value
    load_or_image_error(bytes(data[: max(1, len(data) - cut % len(data))]))


@FUZZ
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12),
    )
)
def test_random_arrays(arr):
    load_or_image_error(arr)


@FUZZ
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16)))
def test_random_float_arrays_including_nan_and_inf(arr):
    load_or_image_error(arr)


@FUZZ
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
        elements=st.floats(0, 1, width=32),
    )
)
def test_polarity_is_idempotent(gray):
    once = images.to_ink_on_dark(gray)
    assert_canonical(once)
    np.testing.assert_allclose(images.to_ink_on_dark(once), once, atol=1e-5)


# --------------------------------------------------------------------------------------------- latex
LATEXISH = [
    *"xyzabn0123456789+-=<>()[]{}^_|,.!'*/&",
    " ", "  ", "\n", "$", "\\,", "\\;", "\\!", "\\quad", "\\ ", "\\\\", "\\{", "\\}", "\\|",
    "\\frac", "\\dfrac", "\\sqrt", "\\alpha", "\\beta", "\\pi", "\\infty", "\\sum", "\\int", "\\lim", "\\limits",
    "\\left", "\\right", "\\big", "\\le", "\\leq", "\\ne", "\\to", "\\cdot", "\\times", "\\prime", "\\ldots",
    "\\dots", "\\mathrm", "\\mathbf", "\\text", "\\operatorname", "\\operatorname*", "\\sin", "\\log",
    "\\overline", "\\hat", "\\vec", "\\displaystyle", "\\begin{matrix}", "\\end{matrix}",
    "\\begin{pmatrix}", "\\end{pmatrix}", "\\lbrace", "\\rbrace", "\\lt", "\\varepsilon",
]  # fmt: skip
latexish = st.lists(st.sampled_from(LATEXISH), max_size=30).map("".join)
LATEX_FUNCS = [latex.tokenize, latex.parse_label, latex.split_label]


@FUZZ
@given(st.text(max_size=200), st.sampled_from(LATEX_FUNCS))
def test_random_text_raises_only_label_error(text, func):
    try:
        tokens = func(text)
    except LabelError:
        return
    assert isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens)


@FUZZ
@given(st.one_of(st.text(max_size=120), latexish))
def test_normalize_and_to_latex_raise_only_label_error(text):
    try:
        tokens = latex.tokenize(text)
    except LabelError:
        return
    with contextlib.suppress(LabelError):
        assert isinstance(latex.normalize(tokens), list)
    # any tokenizer output can be written back, and re-reads as the same tokens
    assert latex.tokenize(latex.to_latex(tokens)) == tokens


@FUZZ
@given(latexish)
def test_parse_label_round_trip(text):
    try:
        tokens = latex.parse_label(text)
    except LabelError:
        return
    assert latex.parse_label(latex.to_latex(tokens)) == tokens
    assert latex.normalize(tokens) == tokens  # normalising is idempotent


@pytest.mark.parametrize("bad", [None, 3, b"x^2", ["x"]])
def test_non_string_labels_are_label_errors(bad):
    with pytest.raises(LabelError):
        latex.parse_label(bad)
