"""Photo-like degradations of a rendered "paper" image, so clean prints also teach the model photos/scans.

Works on uint8 (H, W) with dark ink on light paper (what the renderers produce), BEFORE the image is
made canonical by `texscribe.images`: JPEG artefacts, lighting and paper tone only look right on paper.
Every step is drawn from one seed, so a degradation is reproducible and its seed is a cache key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradation:
    """The parameters of one degradation (a value of 0 / None means that step is off).

    `paper`/`ink`: gray levels in [0, 1]; `gradient`: brightness change across the image (lighting);
    `angle`: rotation in degrees; `shear`: horizontal shear factor; `rescale`: lose resolution by shrinking
    to this fraction and back; `blur`: Gaussian sigma in px; `noise`: Gaussian std in [0, 1] units;
    `jpeg`: JPEG quality 1..100.
    """

    paper: float = 1.0
    ink: float = 0.0
    gradient: float = 0.0
    gradient_angle: float = 0.0
    angle: float = 0.0
    shear: float = 0.0
    rescale: float | None = None
    blur: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None

    @classmethod
    def sample(cls, seed: int) -> Degradation:
        """Draw a mild, readable photo-like degradation; each step is on with its own probability."""
        rng = np.random.default_rng(seed)

        def maybe(p: float, lo: float, hi: float) -> float:
            return float(rng.uniform(lo, hi)) if rng.random() < p else 0.0

        return cls(
            paper=float(rng.uniform(0.72, 1.0)),
            ink=float(rng.uniform(0.0, 0.3)),
            gradient=maybe(0.4, 0.03, 0.15),
            gradient_angle=float(rng.uniform(0, 2 * math.pi)),
            angle=maybe(0.6, -3.0, 3.0),
            shear=maybe(0.3, -0.08, 0.08),
            rescale=maybe(0.4, 0.45, 0.85) or None,
            blur=maybe(0.5, 0.3, 1.1),
            noise=maybe(0.6, 0.01, 0.05),
            jpeg=int(rng.integers(25, 90)) if rng.random() < 0.7 else None,
        )


def photo_degrade(paper: np.ndarray, seed: int) -> np.ndarray:
    """Degrade a uint8 (H, W) paper image (ink dark) with `Degradation.sample(seed)`; uint8 (H', W') out."""
    return apply_degradation(paper, Degradation.sample(seed), seed)


def apply_degradation(paper: np.ndarray, d: Degradation, seed: int = 0) -> np.ndarray:
    """Apply `d` to a uint8 (H, W) paper image; the canvas grows so skew never clips ink."""
    img = paper.astype(np.float32) / 255.0
    img = d.ink + (d.paper - d.ink) * img  # paper tone and ink darkness
    pad = 4 + int(math.ceil(max(img.shape) * (abs(math.sin(math.radians(d.angle))) + abs(d.shear)) / 2))
    img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=d.paper)
    if d.angle or d.shear:
        img = _skew(img, d.angle, d.shear, d.paper)
    if d.gradient:
        img = img * _lighting(img.shape, d.gradient, d.gradient_angle)
    if d.rescale:
        h, w = img.shape
        small = (max(1, round(w * d.rescale)), max(1, round(h * d.rescale)))
        img = cv2.resize(
            cv2.resize(img, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR
        )
    if d.blur:
        img = cv2.GaussianBlur(img, (0, 0), d.blur)
    if d.noise:
        img = img + np.random.default_rng(seed).normal(0.0, d.noise, img.shape).astype(np.float32)
    out = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if d.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(d.jpeg)])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def _skew(img: np.ndarray, angle: float, shear: float, fill: float) -> np.ndarray:
    """Rotate by `angle` degrees and shear horizontally about the centre, background filled with `fill`."""
    h, w = img.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    shear_m = np.array([[1.0, shear, -shear * h / 2], [0.0, 1.0, 0.0]])
    m = rot @ np.vstack([shear_m, [0.0, 0.0, 1.0]])
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


def _lighting(shape: tuple[int, int], strength: float, direction: float) -> np.ndarray:
    """A linear brightness ramp of total change `strength` along `direction` (radians), peak 1."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = x * math.cos(direction) + y * math.sin(direction)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    return 1.0 - strength * t
