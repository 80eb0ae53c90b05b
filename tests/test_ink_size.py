"""Ink-size measurement and normalisation (`images.measure_ink`, `images.normalise_ink_size`): writing far
from the training size is brought back to it, ordinary writing is left untouched."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from texscribe.config import DataConfig
from texscribe.data.readers.inkml import parse_inkml
from texscribe.data.render_strokes import RenderOptions, render_strokes
from texscribe.images import crop_to_ink, measure_ink, normalise_ink_size, preprocess, preprocess_views

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_crohme" / "data" / "train" / "img"


def _bitmap(name: str) -> np.ndarray:
    return cv2.imread(str(EXAMPLE / name), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def _tiny_formula() -> np.ndarray:
    """`y=4x` from the sample bitmaps, shrunk to ~8 px symbols (CROHME's are ~28)."""
    img = _bitmap("sample_y_eq_4x.bmp")
    size = measure_ink(img)
    assert size is not None
    factor = 8.0 / size.symbol_height
    return cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _strip_of(ink: np.ndarray, lefts: tuple[int, ...], width: int = 300) -> np.ndarray:
    """A `width` px wide dark strip holding a copy of `ink` at each left edge in `lefts`, 4 px margins."""
    strip = np.zeros((ink.shape[0] + 8, width), np.float32)
    for left in lefts:
        strip[4 : 4 + ink.shape[0], left : left + ink.shape[1]] = ink
    return strip


def test_measure_ink_follows_writing_size_not_pen(shared_data: Path) -> None:
    """The same CROHME 2014 ink drawn 0.5x..3x as large, with a thin or a thick pen: the measured symbol
    height scales with the writing and hardly with the pen (a 5 px pen on writing half the bitmaps' size
    fills the letters in; that case is left out)."""
    with zipfile.ZipFile(shared_data / "crohme" / "crohme_inkml.zip") as z:
        names = sorted(n for n in z.namelist() if "/2014/" in n and n.endswith(".inkml"))[:40]
        docs = [parse_inkml(z.read(n), n) for n in names]
    heights: dict[tuple[float, float], list[float]] = {}
    for scale in (0.5, 1.0, 2.0, 3.0):
        for pen in (2.0, 5.0):
            opts = RenderOptions(stroke_height=28.0 * scale, line_width=pen)
            sizes = [measure_ink(render_strokes(d.traces, opts).astype(np.float32) / 255.0) for d in docs]
            heights[scale, pen] = [s.symbol_height if s else np.nan for s in sizes]
    base = np.array(heights[1.0, 2.0])
    assert 22 <= np.nanmedian(base) <= 34  # the bitmaps' 28 px stroke height
    for (scale, pen), values in heights.items():
        if scale < 1 and pen > 2:
            continue
        ratio = np.nanmedian(np.array(values) / base)
        assert abs(ratio - scale) <= 0.2 * scale, (scale, pen, ratio)


def test_measure_ink_on_real_bitmap_and_blank_cases() -> None:
    img = _bitmap("sample_y_eq_4x.bmp")
    size = measure_ink(img)
    assert size is not None and 20 <= size.symbol_height <= 80 and 2 <= size.pen <= 8
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    big_size = measure_ink(big)
    assert big_size is not None and 2.5 <= big_size.symbol_height / size.symbol_height <= 3.5
    assert measure_ink(np.zeros((40, 40), np.float32)) is None
    dash = np.zeros((40, 80), np.float32)
    dash[18:22, 10:70] = 1.0  # a lone minus sign says nothing about the writing size
    assert measure_ink(dash) is None


def test_normalise_ink_size_rescales_only_unusual_writing() -> None:
    img = crop_to_ink(_bitmap("sample_y_eq_4x.bmp"))
    off = DataConfig()
    assert normalise_ink_size(img, off) is img  # models without ink_height: untouched
    size = measure_ink(img)
    assert size is not None
    on = replace(off, ink_height=size.symbol_height, ink_height_tolerance=1.5, ink_pen=size.pen)
    assert normalise_ink_size(img, on) is img  # ordinary size: untouched
    # the same formula written 3x larger with the same pen
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    radius = int(round(size.pen))  # thin the 3x-wide strokes back to about the original pen
    big = cv2.erode(big, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    out = normalise_ink_size(big, on)
    assert 0.7 <= out.shape[0] / img.shape[0] <= 1.4
    back = measure_ink(out)
    assert back is not None
    assert abs(back.symbol_height / size.symbol_height - 1) <= 0.3
    assert abs(back.pen - size.pen) <= 1.5


def test_preprocess_with_ink_height_gives_similar_inputs_at_any_size() -> None:
    img = _bitmap("sample_y_eq_4x.bmp")
    config = DataConfig(img_min_height=16, img_max_height=256, img_max_width=1024, scale=0.5)
    plain = preprocess(img, config)
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    assert preprocess(big, config).shape[0] > 2 * plain.shape[0]  # without normalisation: 3x the pixels
    size = measure_ink(crop_to_ink(img))
    assert size is not None
    normalised = preprocess(big, replace(config, ink_height=size.symbol_height, ink_pen=size.pen))
    assert 0.6 <= normalised.shape[0] / plain.shape[0] <= 1.6


def test_preprocess_views_reads_unusual_writing_at_each_height_and_drops_repeats() -> None:
    """With `read_ink_heights`, writing far from every height gives one view per height, the first being
    `preprocess`'s; writing within tolerance of several heights is left as it is, so those views are one."""
    img = _bitmap("sample_y_eq_4x.bmp")
    size = measure_ink(crop_to_ink(img))
    assert size is not None
    h = size.symbol_height
    config = DataConfig(scale=0.5, ink_height=h, ink_pen=size.pen)
    assert len(preprocess_views(img, config)) == 1  # nothing further to read at
    several = replace(config, read_ink_heights=[h / 1.25, h * 1.25])
    ordinary = preprocess_views(img, several)
    assert len(ordinary) == 1 and np.array_equal(ordinary[0], preprocess(img, several))
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    views = preprocess_views(big, several)
    assert len(views) == 3
    assert np.array_equal(views[0], preprocess(big, several))
    assert views[1].shape[0] < views[0].shape[0] < views[2].shape[0]  # read smaller, then larger


def test_normalise_ink_size_never_enlarges_past_the_input_box() -> None:
    """Tiny writing spread over a wide image (two copies of a formula, measured at ~4 px symbols, far
    apart) is enlarged only up to the model's input box at its scale, not by the ~7x its symbol height
    asks for; without the wide margin the same ink is enlarged in full."""
    tiny = _tiny_formula()
    strip = _strip_of(tiny, lefts=(10, 200))
    cfg = DataConfig(ink_height=28.0, scale=0.5, img_max_height=128, img_max_width=640)
    out = normalise_ink_size(strip, cfg)
    assert out.shape[1] <= 640 / 0.5 + 10  # the box's width at scale 0.5 (+ the pen's padding)
    assert out.shape[1] >= 640 / 0.5 - 10  # and enlarged right up to it
    roomy = normalise_ink_size(strip[:, :60], cfg)  # the same ink without the wide margin: fully enlarged
    assert roomy.shape[1] >= 60 * 5


def test_faint_thin_print_keeps_its_strokes_when_enlarged(monkeypatch) -> None:  # noqa: ANN001
    """Small anti-aliased print (7 px symbols whose hairline strokes peak at 0.6) is enlarged ~5x; thinning
    its pen to `ink_pen` by erosion would leave no pixel above the ink threshold, so the strokes are kept."""
    import texscribe.images as images

    img = np.zeros((20, 90), np.float32)
    for x in range(5, 85, 8):  # ten "symbols": 7 px high, one faint pixel wide with a grey edge
        img[6:13, x] = 0.6
        img[6:13, x - 1] = img[6:13, x + 1] = 0.3
    cfg = DataConfig(ink_height=28.0, scale=0.5, img_max_height=160, img_max_width=1024)
    out = normalise_ink_size(img, cfg)
    assert out.shape[0] > 2.5 * img.shape[0]  # enlarged
    assert np.count_nonzero(out > 0.5) >= 10 * np.count_nonzero(img > 0.5)  # ~5x taller, ~3x wider
    monkeypatch.setattr(images, "_KEEP_AFTER_THINNING", 0.0)  # the unguarded erosion wipes the ink out
    assert np.count_nonzero(normalise_ink_size(img, cfg) > 0.5) == 0


def test_prepare_ink_height_enlarges_without_a_box(tmp_path: Path) -> None:
    """`data prepare --ink-height` stores writing at the symbol height in full: the input box belongs to the
    model (training's `fit_height` applies it), so DataConfig's default 1024 px width must not cut it short."""
    from texscribe.data.prepare import prepare
    from texscribe.data.prepared import PreparedDataset

    tiny = _tiny_formula()
    strip = _strip_of(tiny, lefts=(10, 280 - tiny.shape[1]))
    labels = tmp_path / "labels"
    labels.mkdir()
    cv2.imwrite(
        str(labels / "wide.png"), (255 * (1 - strip)).astype(np.uint8)
    )  # dark ink on white, as scanned
    (labels / "wide.txt").write_text("y = 4 x y = 4 x")
    prepare([str(labels)], tmp_path / "out", ink_height=28.0, workers=1, progress=False)
    (record,) = PreparedDataset.open(tmp_path / "out").records
    assert record.width > 1100  # ~270 px of ink enlarged ~7x; the old default-box cap stopped at 1024
