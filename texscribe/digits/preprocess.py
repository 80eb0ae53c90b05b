"""Any digit picture -> a 28×28 MNIST-style image, the way MNIST itself was made.

MNIST digits were size-normalised to fit a 20×20 box (keeping the aspect ratio, anti-aliased) and
then placed in a 28×28 field so that their centre of mass sits at the centre. A photo or scan is
first brought to the library's canonical form by `texscribe.images.load_image` (grey, ink bright,
background 0); here we remove specks, crop to the digit, match MNIST's stroke width, and do the rest.
"""

from __future__ import annotations

import cv2
import numpy as np

from texscribe.errors import ImageError
from texscribe.images import crop_to_ink, load_image

BOX = 20  # MNIST fits each digit in a 20×20 box ...
SIZE = 28  # ... centred by mass in a 28×28 field
NOISE_FLOOR = 0.2  # canonical values below this are paper texture / shadows, not ink
MIN_PART = 0.05  # ink blobs smaller than this fraction of the largest blob are specks
STROKE_IN_BOX = 2.5  # typical MNIST pen width, in pixels of the 20×20 box
# Longest side the stroke width is matched at: ~13x the box measures a pen width finely, and it bounds the
# dilation/erosion kernel (it grows with the side) so any shape, even 8×40000, takes milliseconds.
WORK_SIDE = 256


def to_mnist(img: np.ndarray) -> np.ndarray:
    """Canonical image (H, W) float in [0, 1], ink bright -> (28, 28) float32 in [0, 1] like MNIST.

    Raises `ImageError` when there is no ink.
    """
    img = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    img = np.where(img < NOISE_FLOOR, 0.0, img).astype(np.float32)
    img = _drop_specks(img)
    digit = crop_to_ink(img, margin=0, threshold=NOISE_FLOOR)
    digit = _match_stroke_width(_shrink_to_work_side(digit))
    h, w = digit.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(digit, (new_w, new_h), interpolation=interp)
    small = np.clip(small / max(float(small.max()), 1e-6), 0.0, 1.0)
    return _centre_by_mass(small)


def load_digit_image(payload: object, origin: str | None = None) -> np.ndarray:
    """File path, encoded bytes or pixel array (either polarity) -> (28, 28) MNIST-style float32."""
    return to_mnist(load_image(payload, origin=origin))  # type: ignore[arg-type]


def _drop_specks(img: np.ndarray) -> np.ndarray:
    """Zero connected ink blobs much smaller than the largest one (dust, noise, stray marks)."""
    mask = (img > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 2:  # background + at most one blob
        if count < 2:
            raise ImageError("no ink: the image is blank after removing the background")
        return img
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= MIN_PART * areas.max()) + 1
    return np.where(np.isin(labels, keep), img, 0.0).astype(np.float32)


def _shrink_to_work_side(digit: np.ndarray) -> np.ndarray:
    """Shrink (keeping the aspect ratio) so the longest side is at most `WORK_SIDE`; smaller crops pass as is.

    Area averaging dims strokes thinner than the shrink factor, so the result is rescaled to its
    old peak: a 1-pixel pen on a 4000-pixel page stays ink for the stroke-width estimate.
    """
    h, w = digit.shape
    if max(h, w) <= WORK_SIDE:
        return digit
    scale = WORK_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(digit, size, interpolation=cv2.INTER_AREA)
    peak = float(small.max())
    return small * np.float32(float(digit.max()) / peak) if peak > 0 else small


def _match_stroke_width(digit: np.ndarray) -> np.ndarray:
    """Thicken (dilate) or thin (erode) strokes so that after scaling they are about MNIST's width.

    Pen width is estimated as 2·area/perimeter of the ink mask (exact for long thin strokes).
    """
    mask = (digit > 0.5).astype(np.uint8)
    area = float(mask.sum())
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    if area == 0 or perimeter == 0:
        return digit
    width = 2 * area / perimeter
    target = STROKE_IN_BOX * max(digit.shape) / BOX  # wanted width at the current resolution
    pad = int(np.ceil(target))
    digit = np.pad(digit, pad)  # room to grow
    if width < 0.75 * target:
        k = max(1, round(target - width)) | 1  # odd kernel
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        digit = cv2.dilate(digit, kernel)
    elif width > 2.0 * target:
        k = max(1, round((width - target) / 2)) | 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        digit = cv2.erode(digit, kernel)
    return crop_to_ink(digit, margin=0, threshold=NOISE_FLOOR)


def _centre_by_mass(small: np.ndarray) -> np.ndarray:
    """Place a digit (h, w <= 20) in a 28×28 field with its centre of mass at the centre."""
    h, w = small.shape
    total = float(small.sum())
    ys, xs = np.indices(small.shape)
    cy = float((ys * small).sum()) / total if total else (h - 1) / 2
    cx = float((xs * small).sum()) / total if total else (w - 1) / 2
    # shift that moves the centre of mass to (13.5, 13.5), clamped so the digit stays inside the field
    top = int(round(np.clip((SIZE - 1) / 2 - cy, 0, SIZE - h)))
    left = int(round(np.clip((SIZE - 1) / 2 - cx, 0, SIZE - w)))
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + h, left : left + w] = small
    return out
