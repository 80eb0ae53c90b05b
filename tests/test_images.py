"""texscribe.images: every input format, polarity, crop/resize, PNG files, and the errors."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps, TiffImagePlugin

from texscribe import images
from texscribe.config import DataConfig
from texscribe.errors import ImageError, InputError

H, W = 48, 160
INK = (slice(12, 36), slice(20, 140))  # where the synthetic formula's ink lies


def formula_gray(light_background: bool = True) -> np.ndarray:
    """uint8 (H, W) 'formula': a fraction bar, two glyph blocks and a thin stroke inside INK's box."""
    ink, paper = (0, 255) if light_background else (255, 0)
    a = np.full((H, W), paper, np.uint8)
    a[12:20, 20:60] = ink
    a[23:25, 20:140] = ink  # fraction bar, 2 px
    a[28:36, 100:140] = ink
    a[12:36, 80] = ink  # 1-px vertical stroke
    return a


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def assert_canonical(img: np.ndarray, shape=(H, W), ink_min: float = 0.9, bg_max: float = 0.05) -> None:
    """float32 (H, W) in [0, 1] with bright ink where formula_gray drew it and dark background elsewhere."""
    assert img.dtype == np.float32 and img.shape == shape
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img[12:20, 20:60].mean() >= ink_min and img[23:25, 20:140].mean() >= ink_min
    background = np.ones(shape, bool)
    background[INK] = False
    assert img[background].mean() <= bg_max


# ------------------------------------------------------------------------------------------- formats
def _rgb(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([a, a, a], axis=-1))


def _transparent(a: np.ndarray, ink_value: int) -> Image.Image:
    """RGBA: opaque ink of `ink_value` on a fully transparent background (screenshot of text)."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = ink_value
    rgba[..., 3] = np.where(a == 0, 255, 0)
    return Image.fromarray(rgba)


FORMATS = {
    "png_L": lambda a: encode(Image.fromarray(a), "PNG"),
    "png_1bit": lambda a: encode(Image.fromarray(a).convert("1"), "PNG"),
    "png_16bit": lambda a: encode(Image.fromarray(a.astype(np.uint16) * 257), "PNG"),
    "png_16bit_rgb": lambda a: cv2.imencode(".png", np.stack([a.astype(np.uint16) * 257] * 3, axis=-1))[
        1
    ].tobytes(),
    "png_palette": lambda a: encode(_rgb(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG"),
    "png_rgba_dark_ink_transparent": lambda a: encode(_transparent(a, 0), "PNG"),
    "png_rgba_white_ink_transparent": lambda a: encode(_transparent(a, 255), "PNG"),
    "png_rgba_opaque_paper": lambda a: encode(_rgb(a).convert("RGBA"), "PNG"),
    "png_LA": lambda a: encode(_transparent(a, 0).convert("LA"), "PNG"),
    "gif_transparent": lambda a: encode(_transparent(a, 0).convert("P"), "GIF", transparency=0),
    "jpeg": lambda a: encode(_rgb(a), "JPEG", quality=90),
    "jpeg_cmyk": lambda a: encode(_rgb(a).convert("CMYK"), "JPEG", quality=90),
    "tiff_lzw": lambda a: encode(_rgb(a), "TIFF", compression="tiff_lzw"),
    "tiff_float": lambda a: encode(Image.fromarray(a.astype(np.float32) / 255.0), "TIFF"),
    "tiff_int32": lambda a: encode(Image.fromarray(a.astype(np.int32) * 100), "TIFF"),
    "bmp": lambda a: encode(_rgb(a), "BMP"),
    "gif": lambda a: encode(Image.fromarray(a), "GIF"),
    "webp_lossless": lambda a: encode(_rgb(a), "WEBP", lossless=True),
    "ppm": lambda a: encode(_rgb(a), "PPM"),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_canonical(name):
    data = FORMATS[name](formula_gray())
    lossy = name.startswith("jpeg")
    assert_canonical(images.load_image(data, origin=name), ink_min=0.8 if lossy else 0.99)


def test_dark_background_files_are_not_inverted():
    """CROHME-style bitmaps (white strokes on black) keep their polarity."""
    data = encode(Image.fromarray(formula_gray(light_background=False)), "BMP")
    assert_canonical(images.load_image(data), ink_min=0.99, bg_max=0.0)


def test_exif_orientation_is_applied():
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90° clockwise to view) comes back upright."""
    a = formula_gray()
    stored = _rgb(a).transpose(Image.Transpose.ROTATE_90)  # the camera's sensor layout, (W, H) swapped
    exif = Image.Exif()
    exif[0x0112] = 6
    img = images.load_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert_canonical(img, ink_min=0.8)


def test_path_inputs(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(FORMATS["png_L"](formula_gray()))
    assert_canonical(images.load_image(path))
    assert_canonical(images.load_image(str(path)))


# ------------------------------------------------------------------------------------------- arrays
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a, id="uint8"),
        pytest.param(lambda a: a.astype(np.uint16) * 257, id="uint16"),
        pytest.param(lambda a: a.astype(np.float32) / 255, id="float_unit"),
        pytest.param(lambda a: a.astype(np.float64), id="float_0_255"),
        pytest.param(lambda a: a > 127, id="bool"),
        pytest.param(lambda a: a.astype(np.int64) - 1000, id="int_negative_minmax"),
        pytest.param(lambda a: a[..., None], id="HxWx1"),
        pytest.param(lambda a: np.stack([a, a, a], -1), id="HxWx3"),
        pytest.param(lambda a: np.dstack([a, a, a, np.full_like(a, 255)]), id="HxWx4_opaque"),
        pytest.param(lambda a: np.dstack([a, np.full_like(a, 255)]), id="HxWx2_gray_alpha"),
    ],
)
def test_array_inputs(make):
    assert_canonical(images.load_image(make(formula_gray())), ink_min=0.99)


@pytest.mark.parametrize(
    "arr",
    [
        pytest.param(np.zeros((0, 5), np.uint8), id="zero_height"),
        pytest.param(np.zeros(10, np.uint8), id="1d"),
        pytest.param(np.zeros((4, 4, 5), np.uint8), id="5_channels"),
        pytest.param(np.zeros((2, 3, 4, 1), np.uint8), id="4d"),
        pytest.param(np.full((4, 4), np.nan), id="nan"),
        pytest.param(np.full((4, 4), "x", dtype=object), id="object"),
        pytest.param(np.zeros((4, 4), np.complex64), id="complex"),
    ],
)
def test_bad_arrays_raise_image_error(arr):
    with pytest.raises(ImageError) as err:
        images.load_image(arr, origin="mem:0")
    assert err.value.source == "mem:0"


# ------------------------------------------------------------------------------------------- errors
def _png_claiming(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR is patched (with a valid CRC) to claim width x height."""
    b = bytearray(encode(Image.new("L", (8, 8), 255), "PNG"))
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def _broken_png() -> bytes:
    data = bytearray(FORMATS["png_L"](formula_gray()))
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 20] = b"\x00" * 10  # break the compressed stream (and its CRC)
    return bytes(data)


BAD_INPUTS = {
    "empty": b"",
    "text": b"hello, this is not an image\n" * 3,
    "truncated_png": FORMATS["png_L"](formula_gray())[:150],
    "truncated_jpeg": FORMATS["jpeg"](formula_gray())[:300],
    "corrupt_png": _broken_png(),
    "bomb_100k_x_100k": _png_claiming(100_000, 100_000),
    "over_our_limit_8k_x_8k": _png_claiming(8000, 8000),
    "zero_width": _png_claiming(0, 8),
    "eps_is_refused": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_bytes_raise_image_error_naming_origin(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's own limit must never surface
        with pytest.raises(ImageError) as err:
            images.load_image(BAD_INPUTS[name], origin=f"upload/{name}")
    assert err.value.source == f"upload/{name}" and str(err.value).startswith(f"upload/{name}: ")
    assert isinstance(err.value, InputError)


def _jpeg_with_exif_past_the_end() -> bytes:
    """A JPEG whose EXIF "Make" string points 60,000 bytes past the end of its EXIF block."""
    exif = Image.Exif()
    exif[0x010F] = "some camera maker"
    raw = bytearray(exif.tobytes())  # b"Exif\0\0" + big-endian TIFF header + IFD at 8
    for i in range(struct.unpack_from(">H", raw, 14)[0]):
        entry = 16 + 12 * i
        if struct.unpack_from(">H", raw, entry)[0] == 0x010F:
            struct.pack_into(">I", raw, entry + 8, 60_000)
    return encode(Image.fromarray(formula_gray()), "JPEG", exif=bytes(raw))


def _tiff_with_tag_past_the_end() -> bytes:
    """A TIFF whose "Software" tag value lies beyond the end of the file."""
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[305] = "a long software name"
    raw = bytearray(encode(Image.fromarray(formula_gray()), "TIFF", tiffinfo=tags))
    ifd = struct.unpack_from("<I", raw, 4)[0]  # PIL writes little-endian ("II")
    for i in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", raw, entry)[0] == 305:
            struct.pack_into("<I", raw, entry + 8, len(raw) + 1000)
    return bytes(raw)


@pytest.mark.parametrize("make", [_jpeg_with_exif_past_the_end, _tiff_with_tag_past_the_end])
def test_corrupt_metadata_prints_no_warning(make):
    # issue 19 item 9: PIL's "Truncated File Read" / "Corrupt EXIF data" UserWarnings reached stderr
    data = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Image.open(io.BytesIO(data)).load()
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert caught, "the file no longer makes PIL warn; the test needs another corruption"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            images.load_image(data) > 0.5, images.load_image(FORMATS["png_L"](formula_gray())) > 0.5
        )


def test_a_lazy_pil_image_with_corrupt_metadata_prints_no_warning():
    """Found by benchmarks/fuzz_inputs.py: a user's lazily opened TIFF warned again ("Truncated File
    Read") when `pil_to_array` read its pixels for Recognizer.predict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the user's own Image.open may warn; that is not ours
        lazy = Image.open(io.BytesIO(_tiff_with_tag_past_the_end()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert images.pil_to_array(lazy, origin="lazy.tif").shape[:2] == formula_gray().shape


def test_pixel_limit_is_checked_before_decoding():
    """The limit applies from the header alone: the file below holds no pixel data at all."""
    with pytest.raises(ImageError, match="more than the limit"):
        images.load_image(_png_claiming(9000, 5000), origin="big.png")
    with pytest.raises(ImageError, match="more than the limit of 999"):
        images.load_image(FORMATS["png_L"](formula_gray()), max_pixels=999)


def test_raised_limit_beyond_pils_warning_is_honoured():
    """100 MP exceeds PIL's warning threshold (89 MP): with our limit raised, the header passes silently and
    the missing pixel data is what fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="truncated or corrupt"):
            images.load_image(_png_claiming(10_000, 10_000), max_pixels=150_000_000)


def test_file_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError) as err:
        images.load_image(missing)
    assert err.value.source == str(missing)
    with pytest.raises(ImageError):
        images.load_image(tmp_path)  # a directory
    with pytest.raises(ImageError, match="expected image bytes"):
        images.load_image(12345)  # type: ignore[arg-type]


def _finishes_within(seconds: float, fn) -> bool:
    """Run `fn()` on a daemon thread; whether it returned within `seconds` (a hang fails fast, not never)."""
    done = threading.Event()
    threading.Thread(target=lambda: (fn(), done.set()), daemon=True).start()
    return done.wait(seconds)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_special_files_are_refused_before_reading(tmp_path):
    # issue 19 item 7: /dev/zero was read until MemoryError and a FIFO blocked forever
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    cases = {str(fifo): "FIFO", str(tmp_path): "folder"}
    if os.path.exists("/dev/zero"):
        cases["/dev/zero"] = "character device"
    for path, kind in cases.items():
        errors: list[ImageError] = []

        def load(path=path, errors=errors):
            try:
                images.load_image(path)
            except ImageError as exc:
                errors.append(exc)

        assert _finishes_within(2.0, load), f"{path} hung"
        assert errors and errors[0].source == path, path
        assert "not a regular file" in str(errors[0]) and kind in str(errors[0])


def test_file_read_is_bounded_by_the_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + bytes(5000))
    with pytest.raises(ImageError, match="more than the limit of 4,096") as err:
        images.read_image_file(path, 4096)
    assert err.value.source == str(path)
    assert images.read_image_file(path, 5005) == path.read_bytes()


def test_loading_is_thread_safe():
    payloads = [FORMATS[name](formula_gray()) for name in sorted(FORMATS)] * 3
    expected = [images.load_image(p) for p in payloads]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(images.load_image, payloads))
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------- polarity
def test_polarity_light_and_dark_backgrounds_agree():
    light = images.to_ink_on_dark(formula_gray(True) / 255.0)
    dark = images.to_ink_on_dark(formula_gray(False) / 255.0)
    np.testing.assert_allclose(light, dark)
    assert_canonical(light, ink_min=1.0, bg_max=0.0)


def test_polarity_on_grey_noisy_paper():
    """A photo: grey paper (0.62) with faint noise and pencil ink (0.3); contrast is stretched to full range."""
    rng = np.random.default_rng(0)
    a = np.where(formula_gray() == 0, 0.3, 0.62) + rng.normal(0, 0.01, (H, W))
    assert_canonical(images.to_ink_on_dark(np.clip(a, 0, 1)), ink_min=0.85, bg_max=0.08)


def test_photo_with_a_shadow_is_flattened():
    """Paper lit from 0.95 (left) to 0.4 (right), ink reflecting 25% of it: the shadow must not become ink."""
    rng = np.random.default_rng(0)
    ink = np.zeros((300, 900), np.uint8)
    cv2.putText(ink, "a+b=c", (100, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, 255, 12)
    paper = np.linspace(0.95, 0.4, 900)[None, :] * np.linspace(1.0, 0.85, 300)[:, None]
    photo = np.clip(paper * np.where(ink > 0, 0.25, 1.0) + rng.normal(0, 0.01, ink.shape), 0, 1)
    out = images.load_image((photo * 255).astype(np.uint8))
    on = ink > 0
    assert out[on].mean() > 0.85 and np.percentile(out[on], 5) > 0.8  # even contrast in the shadow too
    assert out[~on].mean() < 0.02 and not (out[~on] > 0.5).any()
    ys, xs = np.nonzero(on)
    assert images.crop_to_ink(out, margin=0).shape == (np.ptp(ys) + 1, np.ptp(xs) + 1)
    np.testing.assert_array_equal(images.to_ink_on_dark(out), out)  # canonical output is a fixed point


def test_polarity_dark_paper_with_bright_ink_is_kept():
    a = np.where(formula_gray() == 0, 0.8, 0.25)
    assert_canonical(images.to_ink_on_dark(a), ink_min=0.99, bg_max=0.01)


def test_polarity_is_idempotent_and_flat_images_are_blank():
    once = images.to_ink_on_dark(formula_gray() / 255.0)
    np.testing.assert_allclose(images.to_ink_on_dark(once), once)
    assert not images.to_ink_on_dark(np.full((10, 10), 0.7)).any()


def test_has_ink():
    img = np.zeros((20, 20), np.float32)
    assert not images.has_ink(img)
    img[5, 5:8] = 1.0
    assert not images.has_ink(img)  # 3 pixels < min_pixels=4: noise, not a formula
    assert images.has_ink(img, min_pixels=3)
    img[6, 5] = 0.6
    assert images.has_ink(img) and not images.has_ink(img, threshold=0.7)


# ------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("margin", [0, 4, 15])
def test_crop_to_ink_margins(margin):
    img = images.to_ink_on_dark(formula_gray() / 255.0)
    out = images.crop_to_ink(img, margin=margin)
    assert out.shape == (24 + 2 * margin, 120 + 2 * margin)  # INK box plus the margin on every side
    np.testing.assert_array_equal(out[margin : margin + 24, margin : margin + 120], img[INK])
    inner = np.zeros(out.shape, bool)
    inner[margin : margin + 24, margin : margin + 120] = True
    assert not out[~inner].any()


def test_crop_pads_when_ink_touches_the_border():
    img = np.zeros((10, 10), np.float32)
    img[0:3, 8:10] = 1.0
    out = images.crop_to_ink(img, margin=2)
    assert out.shape == (7, 6)
    np.testing.assert_array_equal(out[2:5, 2:4], 1.0)
    assert out.sum() == 6.0


def test_crop_blank_raises():
    with pytest.raises(ImageError, match="no ink"):
        images.crop_to_ink(np.zeros((30, 30), np.float32))


@pytest.mark.parametrize(
    ("shape", "scale"),
    [((48, 160), 1.0), ((8, 30), 1.0), ((600, 200), 1.0), ((40, 5000), 1.0), ((3, 3000), 1.0), ((50, 50), 2.5),
     ((50, 100), 0.2), ((1, 1), 1.0), ((300, 20), 0.5)],
)  # fmt: skip
def test_fit_height_bounds(shape, scale):
    rng = np.random.default_rng(1)
    img = rng.random(shape).astype(np.float32)
    out = images.fit_height(img, min_height=16, max_height=128, max_width=1024, scale=scale)
    h, w = out.shape
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert w <= 1024 and h <= 128
    if w < 1024:  # only the width limit may push the height below min_height
        assert h >= 16
        expected_h = min(max(shape[0] * scale, 16), 128)
        assert abs(h - expected_h) <= 1
    assert (
        abs(w / h - shape[1] / shape[0]) <= max(1.0, shape[1] / shape[0] * 0.05) + 1 / h * shape[1] / shape[0]
    )


def test_fit_height_keeps_strokes_when_shrinking():
    """INTER_AREA keeps a 2-px stroke visible at 1/4 size (INTER_LINEAR would sample rows beside it)."""
    img = np.zeros((200, 400), np.float32)
    img[99:101, :] = 1.0
    out = images.fit_height(img, min_height=16, max_height=50, max_width=1000)
    assert out.shape == (50, 100)
    assert out.max() >= 0.25 and np.isclose(out.sum(), img.sum() / 16, rtol=0.01)


def test_preprocess_uses_data_config():
    cfg = DataConfig(img_min_height=32, img_max_height=64, img_max_width=200, scale=1.0)
    img = images.load_image(FORMATS["png_L"](formula_gray()))
    out = images.preprocess(img, cfg)
    assert out.shape == (32, round((120 + 8) * 32 / (24 + 8)))  # cropped 32x128, enlarged to min height
    with pytest.raises(ImageError, match="^blank.png: no ink"):
        images.preprocess(np.zeros((20, 20), np.float32), cfg, origin="blank.png")


# ------------------------------------------------------------------------------------------- files
def test_png_round_trip(tmp_path):
    img = np.random.default_rng(2).random((33, 77)).astype(np.float32)
    path = tmp_path / "sub" / "x.png"
    images.save_png(img, path)
    back = images.read_png(path)
    assert back.dtype == np.float32 and back.shape == img.shape
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-6
    assert images.to_uint8(np.array([[-1.0, 0.5, 2.0]])).tolist() == [[0, 128, 255]]


def test_read_png_errors(tmp_path):
    with pytest.raises(ImageError):
        images.read_png(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        images.read_png(bad)


# ------------------------------------------------------------------------------------------- real data
@pytest.mark.shared
def test_real_crohme_and_im2latex_end_ink_bright(shared_data):
    with zipfile.ZipFile(shared_data / "crohme" / "crohme_offline.zip") as zf:
        names = [n for n in zf.namelist() if n.startswith("data/2014/img/") and n.endswith(".bmp")][:20]
        crohme = [images.load_image(zf.read(n), origin=n) for n in names]
    with zipfile.ZipFile(shared_data / "im2latex" / "im2latex_val.zip") as zf:
        names = [n for n in zf.namelist() if n.endswith(".png")][:5]
        im2latex = [images.load_image(zf.read(n), origin=n) for n in names]
    for img in crohme + im2latex:
        ink_fraction = float((img > 0.5).mean())
        assert 0.0 < ink_fraction < 0.5 and img[0].mean() < 0.5  # ink bright, background dark
        assert images.preprocess(img, DataConfig()).shape[0] >= DataConfig().img_min_height


@pytest.mark.parametrize("values", [[[-5e-324, 0.0]], [[-5e-324, 5e-324]], [[-1e308, 1e308, 0.0]]])
def test_float_pixels_with_a_subnormal_or_huge_span_stay_finite(values):
    """Found by tests/test_fuzz.py: a span of 5e-324 halves to 0, and min-max scaling then gave NaN."""
    img = images.load_image(np.array(values, dtype=np.float64))
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
