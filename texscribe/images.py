"""Pixels, in one place: safe loading, polarity, crop to ink, resize, PNG files.

Batching them (padding into (B, 1, H, W), size buckets) is `texscribe.data.batching`.

Canonical form everywhere in the library: `np.ndarray` float32 in [0, 1], shape (H, W),
ink BRIGHT (≈1) on a DARK (≈0) background. CROHME bitmaps already look like that; printed
formulas, photos and screenshots (dark ink on light paper) are inverted by `to_ink_on_dark`.
Nothing outside this module flips polarity or rescales pixels.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageOps

from texscribe.errors import ImageError

if TYPE_CHECKING:
    from texscribe.config import DataConfig

DEFAULT_MAX_PIXELS = 40_000_000
INK_THRESHOLD = 0.5  # canonical value above which a pixel counts as ink
# symbol height (px, `measure_ink`) of the CROHME offline bitmaps, the scale all handwriting data here is at
HANDWRITING_SYMBOL_HEIGHT = 28.0
# Formats we let PIL decode. Anything else (EPS runs Ghostscript, fonts, icons...) is refused.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM")
# PIL flags oversized images with a DecompressionBombWarning (and an error past 2 x MAX_IMAGE_PIXELS,
# ~179 MP, which therefore caps `max_pixels`). We silence the warning while parsing the header and apply
# our own limit; the warnings filter is process-global, so that short header parse holds this lock.
_OPEN_LOCK = threading.Lock()
_CONTRAST_EPS = 1e-3  # images whose whole range is below this are treated as blank
_KEEP_AFTER_THINNING = 0.25  # share of ink pixels a pen-thinning erosion must leave, else it is skipped
_UNEVEN_LIGHT = 0.1  # spread of border background levels above which lighting is flattened first


# ----------------------------------------------------------------------------------------------- loading
def load_image(
    payload: bytes | bytearray | memoryview | str | os.PathLike | np.ndarray,
    *,
    origin: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode any common image (file path, encoded bytes, or a pixel array) into canonical float32 (H, W).

    Alpha is composited onto the background, EXIF orientation applied, polarity normalised (ink bright).
    The pixel count is checked from the header before any pixel is decoded. Every failure raises
    `ImageError` naming `origin` (defaults to the path when given one).
    """
    if isinstance(payload, np.ndarray):
        return to_ink_on_dark(_array_to_gray(payload, origin, max_pixels))
    if isinstance(payload, (str, os.PathLike)):
        origin = origin or os.fspath(payload) or "<empty path>"
        data = read_image_file(payload, _max_file_bytes(max_pixels), origin=origin)
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    else:
        raise ImageError(
            f"expected image bytes, a file path or a numpy array, got {type(payload).__name__}", source=origin
        )
    if not data:
        raise ImageError("empty image data (0 bytes)", source=origin)
    return to_ink_on_dark(_decode_to_gray(data, origin, max_pixels))


def read_image_file(
    path: str | os.PathLike, max_bytes: int, *, origin: str | None = None, what: str = "image file"
) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes` of them; anything else is `ImageError`
    (its message calls the file `what`: "image file", or "InkML file" for `read_ink_file`).

    Devices (/dev/zero never ends), FIFOs and sockets (a read blocks until some writer appears) and
    folders are refused from `fstat` before any byte is read: the file is opened non-blocking so that
    opening a FIFO cannot hang either. The size is checked from `fstat` and again while reading, since
    a file may grow after the check.
    """
    origin = origin or os.fspath(path) or "<empty path>"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError) as exc:  # ValueError: NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise ImageError(f"cannot read {what}: {reason}", source=origin) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(
                f"not a regular file (it is a {_file_kind(info.st_mode)}); pass an {what}", source=origin
            )
        if info.st_size > max_bytes:
            raise ImageError(
                f"file is {info.st_size:,} bytes, more than the limit of {max_bytes:,}", source=origin
            )
        data = _read_upto(fd, max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"cannot read {what}: {exc.strerror or exc}", source=origin) from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageError(f"file grew past the limit of {max_bytes:,} bytes while being read", source=origin)
    return data


def _read_upto(fd: int, limit: int) -> bytes:
    """Read from `fd` until end of file or `limit` bytes, whichever comes first."""
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "special file")


def _max_file_bytes(max_pixels: int) -> int:
    """Largest plausible encoded size: 16-bit RGBA uncompressed (8 bytes/pixel) plus 16 MiB of metadata."""
    return max_pixels * 8 + (16 << 20)


@contextlib.contextmanager
def _quiet_pil() -> Iterator[None]:
    """PIL's warnings silenced (under `_OPEN_LOCK`, the filter being process-wide): its
    DecompressionBombWarning, which our `max_pixels` check replaces, and the UserWarnings it prints
    for metadata it skips (corrupt EXIF, TIFF tags past the end of the file). Either the pixels still
    decode, or decoding fails with an `ImageError` that says so; stderr is not the place.
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # its hard error still applies
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def _decode_to_gray(data: bytes, origin: str | None, max_pixels: int) -> np.ndarray:
    """Encoded bytes -> float gray (H, W) in [0, 1], original polarity. Only `ImageError` escapes."""
    with _quiet_pil(), _open_image(data, origin, max_pixels) as im:
        width, height = im.size
        _check_size(height, width, origin, max_pixels)
        try:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return _pil_to_gray(im, origin)
        except ImageError:
            raise
        except Exception as exc:  # truncated data, bad chunks, broken EXIF, odd modes
            raise ImageError(
                f"cannot decode {im.format} data ({type(exc).__name__}: {exc}); "
                "the file is truncated or corrupt",
                source=origin,
            ) from exc


def _open_image(data: bytes, origin: str | None, max_pixels: int) -> Image.Image:
    """Parse the header of encoded bytes (no pixels decoded yet); any failure is an `ImageError`."""
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"too many pixels (limit {max_pixels:,}); the header claims a huge image: {exc}", source=origin
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(
            f"not a supported image (expected one of {', '.join(ALLOWED_FORMATS)}; got {len(data)} bytes "
            f"starting {data[:8]!r})",
            source=origin,
        ) from exc
    except Exception as exc:  # PIL raises many types on corrupt headers; all mean "bad file"
        raise ImageError(f"corrupt image header: {type(exc).__name__}: {exc}", source=origin) from exc


def pil_to_array(
    im: Image.Image, *, origin: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """A PIL image as the pixel array `load_image` reads (only the mode changes, never the pixels).

    The image may be lazily opened (`Image.open` decodes nothing yet): its size is checked against
    `max_pixels` before the pixels are read, and data that turn out truncated or corrupt are `ImageError`.
    """
    width, height = im.size
    _check_size(height, width, origin, max_pixels)
    try:
        with _quiet_pil():
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I", "F"):
                im = im.convert("RGBA" if "A" in im.mode or "a" in im.mode else "RGB")
            return np.asarray(im)
    except Exception as exc:  # PIL raises many types for data it cannot decode
        raise ImageError(
            f"cannot read the pixels of this PIL image ({type(exc).__name__}: {exc}); the file it was "
            "opened from is truncated or corrupt",
            source=origin,
        ) from exc


def _check_size(height: int, width: int, origin: str | None, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageError(f"image has zero size ({width}x{height})", source=origin)
    if height * width > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {height * width:,} pixels, more than the limit of {max_pixels:,}; "
            "downscale it or raise max_pixels",
            source=origin,
        )


def _pil_to_gray(im: Image.Image, origin: str | None) -> np.ndarray:
    """A loaded PIL image in any mode -> float32 gray (H, W) in [0, 1], alpha composited.

    Colour goes through PIL's own C conversions to 8-bit L/LA (ITU-R 601 luma), which keeps a
    40-megapixel photo at a few hundred MB instead of float64 RGB planes.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "L")
        mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32)
    if mode == "L":
        return np.asarray(im, dtype=np.float32) / np.float32(255)
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32) / np.float32(65535)
    if mode in ("I", "F"):
        return _scale_unknown_range(np.asarray(im), origin)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        la = np.asarray(im.convert("LA"), dtype=np.float32) / np.float32(255)
        return _composite(la[..., 0], la[..., 1])
    return np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float -> (H, W), ITU-R 601 weights (what PIL's convert('L') uses)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten gray+alpha onto a background chosen so the ink stays visible.

    When opaque pixels are a minority they are the ink (text on a transparent screenshot), so the
    background is the opposite of their brightness; otherwise they include the paper, whose median
    brightness becomes the background colour.
    """
    if np.all(alpha >= 1.0):
        return gray
    opaque = alpha > 0.5
    if not opaque.any():
        return np.zeros_like(gray)
    if opaque.mean() < 0.5:
        background = 1.0 if float(np.average(gray, weights=alpha)) < 0.5 else 0.0
    else:
        background = float(np.median(gray[opaque]))
    return alpha * gray + (1.0 - alpha) * np.float32(background)


def _scale_unknown_range(values: np.ndarray, origin: str | None) -> np.ndarray:
    """Integer/float pixels of unstated range -> float32 [0, 1]: unit, 8-bit, 16-bit, else min-max."""
    if not np.all(np.isfinite(values)):
        raise ImageError("image holds NaN or infinite pixel values", source=origin)
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        out = values
    elif lo >= 0.0 and hi <= 255.0:
        out = values / 255.0
    elif lo >= 0.0 and hi <= 65535.0:
        out = values / 65535.0
    # halves: hi - lo may overflow for extreme values; a subnormal span halves to 0 (all-zero image)
    elif hi / 2 - lo / 2 > 0:
        out = np.clip((values / 2 - lo / 2) / (hi / 2 - lo / 2), 0.0, 1.0)
    else:
        out = np.zeros_like(values)
    return out.astype(np.float32)


def _array_to_gray(arr: np.ndarray, origin: str | None, max_pixels: int) -> np.ndarray:
    """Pixel array (H, W) or (H, W, C), C in 1..4, of bool/uint8/uint16/int/float -> float32 gray in [0, 1].

    uint8 and uint16 use their full range; other numbers are read as unit, 8-bit or 16-bit range
    when they fit one, else min-max scaled. C=2 is gray+alpha, C=3 RGB, C=4 RGBA.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageError(
            f"pixel array must be (H, W) or (H, W, C) with C in 1..4, got shape {arr.shape}", source=origin
        )
    _check_size(arr.shape[0], arr.shape[1], origin, max_pixels)
    if arr.dtype == np.bool_:
        values = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        values = arr.astype(np.float32) / np.float32(255)
    elif arr.dtype == np.uint16:
        values = arr.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
        values = _scale_unknown_range(arr, origin)
    else:
        raise ImageError(
            f"unsupported pixel dtype {arr.dtype}; use uint8, uint16, bool or float", source=origin
        )
    if values.ndim == 2:
        return values
    channels = values.shape[2]
    if channels == 2:
        return _composite(values[..., 0], values[..., 1])
    gray = _luminance(values[..., :3])
    return _composite(gray, values[..., 3]) if channels == 4 else gray


# ----------------------------------------------------------------------------------------------- polarity
def to_ink_on_dark(gray: np.ndarray) -> np.ndarray:
    """Gray (H, W) in [0, 1], either polarity -> canonical float32: background ≈ 0, ink ≈ 1.

    The background level is the (lower) median of the image border: formulas are mostly background there.
    Ink is whatever deviates from it: if the mass darker than the background outweighs the brighter mass
    the image is dark-on-light and gets inverted. When the border is lit unevenly (a phone photo with a
    shadow), the slowly varying background is estimated and divided out first. A contrast stretch then
    maps background -> 0 and the strongest ink -> 1. Idempotent on canonical images; flat ones become 0.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ImageError(f"expected a non-empty 2-D gray image, got shape {g.shape}")
    background = _lower_median(_border(g))
    balance = float(g.sum(dtype=np.float64)) - background * g.size  # brighter mass - darker mass
    if balance < 0 or (balance == 0 and background > 0.5):
        ink = np.subtract(np.float32(1), g)
        background = 1.0 - background
    else:
        ink = g.copy()
    if _unevenly_lit(ink):
        ink = _flatten_background(ink)
        background = _lower_median(_border(ink))
    peak = float(ink.max()) - background
    if peak < _CONTRAST_EPS:
        return np.zeros(g.shape, dtype=np.float32)
    ink -= np.float32(background)
    ink /= np.float32(peak)
    return np.clip(ink, 0.0, 1.0, out=ink)


def _lower_median(values: np.ndarray) -> float:
    """The median as an actual sample (lower middle): at least half the values are <= and >= it, which
    makes `to_ink_on_dark` idempotent (the background row maps exactly to 0)."""
    k = (values.size - 1) // 2
    return float(np.partition(values, k)[k])


def _border_width(h: int, w: int) -> int:
    return max(1, min(h, w) // 50)  # ~2% of the short side


def _border(g: np.ndarray) -> np.ndarray:
    """Pixels of a frame ~2% of the short side wide (at least 1 pixel) around the image."""
    h, w = g.shape
    t = _border_width(h, w)
    if 2 * t >= h or 2 * t >= w:
        return g.ravel()
    return np.concatenate([g[:t].ravel(), g[-t:].ravel(), g[t:-t, :t].ravel(), g[t:-t, -t:].ravel()])


def _unevenly_lit(ink: np.ndarray) -> bool:
    """True when the background (median) of the border's eight half-sides differs by more than
    `_UNEVEN_LIGHT`: a lighting gradient, not noise (noise leaves every half-side's median alike)."""
    h, w = ink.shape
    t = _border_width(h, w)
    if min(h, w) < 32:
        return False
    hh, hw = h // 2, w // 2
    halves = [ink[:t, :hw], ink[:t, hw:], ink[-t:, :hw], ink[-t:, hw:],
              ink[:hh, :t], ink[hh:, :t], ink[:hh, -t:], ink[hh:, -t:]]  # fmt: skip
    medians = [float(np.median(part)) for part in halves]
    return max(medians) - min(medians) > _UNEVEN_LIGHT


def _flatten_background(ink: np.ndarray) -> np.ndarray:
    """Remove a slowly varying background from an ink-bright image: (ink - bg) / (1 - bg).

    bg is a morphological opening (erases strokes narrower than ~1/6 of the short side) computed on a
    copy shrunk to 256 px, smoothed and scaled back up. For an inverted photo this equals dividing
    the original by the paper brightness, which also evens out the ink contrast in the shadow.
    """
    h, w = ink.shape
    f = min(1.0, 256 / max(h, w))
    small = cv2.resize(ink, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    k = max(3, min(small.shape) // 6) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    bg_small = cv2.blur(cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel), (k, k))
    bg = cv2.resize(bg_small, (w, h), interpolation=cv2.INTER_LINEAR)
    np.minimum(bg, np.float32(1 - 1e-3), out=bg)
    out = ink - bg
    out /= 1 - bg
    return out


def has_ink(img: np.ndarray, threshold: float = INK_THRESHOLD, min_pixels: int = 4) -> bool:
    """True when at least `min_pixels` canonical pixels exceed `threshold` (blank-page filter)."""
    return int(np.count_nonzero(np.asarray(img) > threshold)) >= min_pixels


# ----------------------------------------------------------------------------------------------- geometry
def crop_to_ink(
    img: np.ndarray, margin: int = 4, threshold: float = INK_THRESHOLD, *, origin: str | None = None
) -> np.ndarray:
    """Crop a canonical image to the bounding box of pixels above `threshold`, plus `margin` pixels.

    The margin is exactly `margin` on every side: where the image lacks room it is padded with
    background (0). Raises `ImageError` when no pixel is ink.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    mask = np.asarray(img) > threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ImageError(f"no ink: no pixel above {threshold} (blank image?)", source=origin)
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = img.shape
    out = np.zeros((bottom - top + 2 * margin, right - left + 2 * margin), dtype=np.float32)
    y0, y1 = max(0, top - margin), min(h, bottom + margin)
    x0, x1 = max(0, left - margin), min(w, right + margin)
    oy, ox = y0 - (top - margin), x0 - (left - margin)
    out[oy : oy + (y1 - y0), ox : ox + (x1 - x0)] = img[y0:y1, x0:x1]
    return out


@dataclass(frozen=True)
class InkSize:
    """How big writing is, measured from its pixels: `symbol_height` and `pen` (stroke width), in px."""

    symbol_height: float
    pen: float


def measure_ink(img: np.ndarray, threshold: float = INK_THRESHOLD) -> InkSize | None:
    """Typical symbol height and pen width of handwriting or print, from the ink alone; None if unknown.

    pen: twice the median ridge value of the ink's distance transform. symbol_height: the median height
    of the connected ink components that are not flat (height >= width / 3: minus signs and fraction bars
    say nothing about the writing size) and not specks (taller than twice the pen), minus the pen, so the
    same formula written with a thicker pen measures the same. On CROHME bitmaps (whose strokes are
    normalised to a mean height of 28 px) symbol_height is 28 px (p10-p90 21-36) and pen 3.8 px; renders
    of the same ink at 0.5x, 2x and 3x measure 0.53x, 1.99x and 2.98x that height, with a 2 or 5 px pen.
    None when no component qualifies (a lone minus sign).
    """
    ink = (np.asarray(img) > threshold).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count < 2:
        return None
    dist = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    ridge = dist[(dist > 0) & (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)))]
    pen = 2.0 * float(np.median(ridge)) if ridge.size else 1.0
    heights = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    widths = stats[1:, cv2.CC_STAT_WIDTH].astype(np.float64)
    symbols = heights[(heights >= widths / 3) & (heights > 2 * pen)]
    if symbols.size == 0 or float(np.median(symbols)) <= pen:
        return None
    return InkSize(float(np.median(symbols)) - pen, pen)


def normalise_ink_size(img: np.ndarray, data_config: DataConfig) -> np.ndarray:
    """Writing of an unusual size, brought to the symbol height and pen the model was trained at.

    Unchanged when `data_config.ink_height` is None (the model does not normalise), when the size cannot
    be measured, or when `measure_ink`'s symbol height is within `ink_height_tolerance` times the target
    either way (ordinary writing is left exactly as the model saw it in training). Otherwise the image is
    resized by target / measured height and its strokes thickened (grey dilation) or thinned (erosion) to
    `data_config.ink_pen` px: a formula written 3x larger with the same pen would otherwise reach the
    model with strokes a third as wide as in training. Enlargement stops at the model's input box
    (`img_max_height` x `img_max_width` at `scale`): tiny writing in a large image is not blown up ~10x
    only for `fit_height` to shrink it back.
    """
    target = data_config.ink_height
    size = measure_ink(img) if target is not None else None
    if size is None:
        return img
    ratio = size.symbol_height / target
    if 1.0 / data_config.ink_height_tolerance <= ratio <= data_config.ink_height_tolerance:
        return img
    h, w = img.shape
    factor = 1.0 / ratio
    if factor > 1.0:  # never enlarge past the model's input box: fit_height would shrink it right back
        box = min(data_config.img_max_height / h, data_config.img_max_width / w) / data_config.scale
        factor = min(factor, max(1.0, box))
        if factor == 1.0:
            return img
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    img = cv2.resize(np.asarray(img, dtype=np.float32), (new_w, new_h),
                     interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)  # fmt: skip
    change = data_config.ink_pen - size.pen * factor  # px of stroke width to add (< 0: remove)
    radius = int(round(abs(change) / 2))
    if radius >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        if change > 0:
            img = cv2.dilate(np.pad(img, radius), kernel)
        else:
            thinner = cv2.erode(img, kernel)
            ink_before = np.count_nonzero(img > INK_THRESHOLD)
            if np.count_nonzero(thinner > INK_THRESHOLD) >= _KEEP_AFTER_THINNING * ink_before:
                img = thinner  # else the strokes are thinner than the cut (faint print): keep them whole
    return np.clip(img, 0.0, 1.0)


def fitted_size(
    height: int, width: int, *, min_height: int, max_height: int, max_width: int, scale: float = 1.0
) -> tuple[int, int]:
    """(h', w') that `fit_height` gives an image of `height` x `width` pixels, computed without pixels.

    Scale by `scale`, clamp the height to [min_height, max_height] keeping the aspect ratio, then shrink
    further if wider than `max_width` (width wins over `min_height` then). 1 <= h', 1 <= w' <= max_width.
    Training uses it to size batches and learn size buckets from a manifest's stored sizes alone.
    """
    if not 1 <= min_height <= max_height or max_width < 1 or scale <= 0:
        raise ValueError(
            f"need 1 <= min_height <= max_height, max_width >= 1, scale > 0; got {min_height}, "
            f"{max_height}, {max_width}, {scale}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1x1, got {width}x{height}")
    new_h = min(max(height * scale, min_height), max_height)
    new_w = width * new_h / height
    if new_w > max_width:
        new_h *= max_width / new_w
        new_w = max_width
    return max(1, round(new_h)), max(1, min(max_width, round(new_w)))


def fit_height(
    img: np.ndarray, *, min_height: int, max_height: int, max_width: int, scale: float = 1.0
) -> np.ndarray:
    """Resize keeping aspect ratio to the size `fitted_size` gives (the one place that size is computed).

    INTER_AREA when shrinking (no aliasing of thin strokes), INTER_LINEAR when enlarging.
    Returns float32 (h', w') with 1 <= h', 1 <= w' <= max_width; `img` itself (as float32) when the
    size is already right, so copy before modifying in place.
    """
    h, w = img.shape
    size_h, size_w = fitted_size(
        h, w, min_height=min_height, max_height=max_height, max_width=max_width, scale=scale
    )
    if (size_h, size_w) == (h, w):
        return np.asarray(img, dtype=np.float32)
    shrinking = size_h * size_w < h * w
    out = cv2.resize(
        np.asarray(img, dtype=np.float32),
        (size_w, size_h),
        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
    )
    return np.clip(out, 0.0, 1.0)


def preprocess(
    img: np.ndarray, data_config: DataConfig, *, origin: str | None = None, refuse_squeezed: bool = False
) -> np.ndarray:
    """The one model-input transform for training AND inference: crop to ink, then `fit_height`.

    With `data_config.ink_height` set, writing far from that symbol height is first rescaled to it
    (`normalise_ink_size`), so a formula drawn large on a canvas reads like one at the training scale.

    Raises `ImageError` (naming `origin`) for a blank image, and with `refuse_squeezed` (what users'
    predictions use) for one too long for the model's input box (see `check_aspect`).
    """
    return _crop_to_input(crop_to_ink(img, origin=origin), data_config, origin, refuse_squeezed)


def _crop_to_input(
    crop: np.ndarray, data_config: DataConfig, origin: str | None, refuse_squeezed: bool
) -> np.ndarray:
    """`preprocess` after the crop to ink: normalise the ink size, refuse a squeezed formula, fit the box."""
    crop = normalise_ink_size(crop, data_config)
    if refuse_squeezed:
        check_aspect(crop.shape[0], crop.shape[1], data_config, origin=origin)
    return fit_height(
        crop,
        min_height=data_config.img_min_height,
        max_height=data_config.img_max_height,
        max_width=data_config.img_max_width,
        scale=data_config.scale,
    )


def preprocess_views(
    img: np.ndarray, data_config: DataConfig, *, origin: str | None = None, refuse_squeezed: bool = False
) -> list[np.ndarray]:
    """`preprocess` at `data_config.ink_height` and at each of `data_config.read_ink_heights`: the views
    of one input that inference reads, keeping the most confident reading (`Recognizer.predict_images`).

    Why: the symbol-height estimate (`measure_ink`) is off by up to ~1.5x on real writing (merged strokes,
    tall radicals), and a model reads best near its training size; reading at a few sizes and keeping the
    reading it is surest of recovers images the one estimate put at the wrong size. Views identical to an
    earlier one (writing within tolerance of several heights is left as it is) are dropped, so ordinary
    input costs one read. The first view is `preprocess`'s output. Raises as `preprocess` does.
    """
    crop = crop_to_ink(img, origin=origin)
    views: list[np.ndarray] = []
    heights = [data_config.ink_height, *data_config.read_ink_heights]
    for n, height in enumerate(heights):
        # rescaling keeps the aspect ratio: the first view's check covers every view
        view = _crop_to_input(
            crop, replace(data_config, ink_height=height), origin, refuse_squeezed and n == 0
        )
        if not any(v.shape == view.shape and np.array_equal(v, view) for v in views):
            views.append(view)
    return views


def check_aspect(height: int, width: int, data_config: DataConfig, *, origin: str | None = None) -> None:
    """Refuse an ink crop wider than `img_max_width / img_min_height` times its height.

    Fitting such an image into the model's input width squeezes it below `img_min_height`, the smallest
    height the model is configured to read: its symbols are then a few pixels (a 12000x12 strip becomes
    one row), and the model answers with confident nonsense or nothing at all.
    """
    limit = data_config.img_max_width / data_config.img_min_height
    if width > limit * height:
        fitted_h, _ = fitted_size(
            height,
            width,
            min_height=data_config.img_min_height,
            max_height=data_config.img_max_height,
            max_width=data_config.img_max_width,
            scale=data_config.scale,
        )
        raise ImageError(
            f"the formula is {width}x{height} pixels after cropping to ink, {width / height:.0f} times wider "
            f"than high: this model reads at most {limit:.0f}:1 (it would shrink to a height of {fitted_h} px, "
            f"under its minimum of {data_config.img_min_height} px); crop it or split it into shorter parts",
            source=origin,
        )


# ----------------------------------------------------------------------------------------------- files
def to_uint8(img: np.ndarray) -> np.ndarray:
    """Canonical float [0, 1] -> uint8 [0, 255] (rounded, clipped)."""
    return np.round(np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write a canonical image as 8-bit gray PNG (ink stays bright), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", to_uint8(img))
    if not ok:
        raise ImageError("PNG encoding failed", source=str(path))
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise ImageError(f"cannot write PNG: {exc.strerror or exc}", source=str(path)) from exc


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Fast path for prepared datasets: read a PNG written by `save_png` as canonical float32 (H, W).

    No polarity detection: the file is trusted to be canonical already.
    """
    try:
        raw = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image file: {exc.strerror or exc}", source=str(path)) from exc
    arr = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    if arr is None:
        raise ImageError("not a readable PNG (corrupt or empty file)", source=str(path))
    if arr.dtype == np.uint16:
        return (arr / 65535.0).astype(np.float32)
    return arr.astype(np.float32) / 255.0
