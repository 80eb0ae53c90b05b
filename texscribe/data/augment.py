"""Training-time augmentation of canonical images (float32 (H, W) in [0, 1], ink bright on dark).

Configured by `data.augment`, a mapping of named steps, each with a probability `p` and its own range:

    augment:
      scale:  {p: 0.5, range: [0.7, 1.3]}     # uniform resize factor
      aspect: {p: 0.3, range: [0.8, 1.25]}    # extra width-only factor (non-uniform scaling)
      rotate: {p: 0.3, degrees: 3}            # uniform in [-degrees, degrees]
      shear:  {p: 0.3, degrees: 8}            # horizontal shear (slant), +-degrees
      stroke: {p: 0.3, dilate: [2, 3], erode: [2, 2]}   # thicker (dilate) or thinner (erode), kernel px
      small:  {p: 0.15, range: [0.35, 0.7]}   # smaller writing with the SAME pen (see `shrink_keeping_pen`)
      noise:  {p: 0.2, std: [0.01, 0.05]}     # additive Gaussian, std as a fraction of full scale
      blur:   {p: 0.2, sigma: [0.3, 0.9]}     # Gaussian blur sigma, px

A step that is absent is off; a step given as `{}` uses the defaults above. Geometric steps (scale,
aspect, rotate, shear, stroke, then small) run BEFORE `images.preprocess`, on the stored image, so the final size
is still bounded by `fit_height`; photometric steps (noise, blur) run AFTER it (noise before cropping
would be taken for ink). The canvas grows to fit rotated/sheared ink (`fit_output`), nothing is clipped.
If a step wipes out all ink (erosion of very thin strokes), the un-augmented image is used instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from texscribe.errors import ConfigError, ImageError
from texscribe.images import measure_ink

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

DEFAULTS: dict[str, dict[str, Any]] = {
    "scale": {"p": 0.5, "range": [0.7, 1.3]},
    "aspect": {"p": 0.3, "range": [0.8, 1.25]},
    "rotate": {"p": 0.3, "degrees": 3.0},
    "shear": {"p": 0.3, "degrees": 8.0},
    "stroke": {"p": 0.3, "dilate": [2, 3], "erode": [2, 2]},
    "small": {"p": 0.15, "range": [0.35, 0.7]},
    "noise": {"p": 0.2, "std": [0.01, 0.05]},
    "blur": {"p": 0.2, "sigma": [0.3, 0.9]},
}
GEOMETRIC = ("scale", "aspect", "rotate", "shear", "stroke")  # albumentations steps; "small" runs after them
PHOTOMETRIC = ("noise", "blur")


def _params(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validated step -> params (defaults filled in); unknown names raise `ConfigError` by dotted key."""
    if not isinstance(config, dict):
        raise ConfigError(f"data.augment: expected a mapping of steps, got {config!r}")
    out = {}
    for name, given in config.items():
        if name not in DEFAULTS:
            raise ConfigError(f"unknown augmentation 'data.augment.{name}'; valid: {', '.join(DEFAULTS)}")
        if given is None or given is False:
            continue
        given = {} if given is True else given
        if not isinstance(given, dict):
            raise ConfigError(f"data.augment.{name}: expected a mapping like {DEFAULTS[name]}, got {given!r}")
        unknown = sorted(set(given) - set(DEFAULTS[name]))
        if unknown:
            raise ConfigError(
                f"unknown key 'data.augment.{name}.{unknown[0]}'; valid: {', '.join(DEFAULTS[name])}"
            )
        params = {**DEFAULTS[name], **given}
        if not 0.0 <= float(params["p"]) <= 1.0:
            raise ConfigError(f"data.augment.{name}.p must be in [0, 1], got {params['p']!r}")
        out[name] = params
    return out


def shrink_keeping_pen(img: np.ndarray, factor: float) -> np.ndarray:
    """The same writing `factor` (< 1) times smaller, drawn with the same pen width (px).

    Why: a student writing small keeps the pen, so small writing has strokes thick for its size, loops
    that close and symbols that touch (CROHME 2014 InkML drawn at half size with the usual pen: the normaliser
    enlarges it into bold, blurred strokes). A plain resize (the `scale` step) thins the pen with the
    writing and never shows the model that look. Area-resize, then grey-dilate by the width the resize took
    from the pen (`images.measure_ink`'s pen x (1 - factor)). Unchanged when the pen cannot be measured.
    img: (H, W) float32 in [0, 1], ink bright; returns float32, about `factor` times each side.
    """
    import cv2

    size = measure_ink(img)
    if size is None or not 0.0 < factor < 1.0:
        return img
    h, w = img.shape
    small = cv2.resize(
        img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    radius = int(round(size.pen * (1.0 - factor) / 2))
    if radius >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        small = cv2.dilate(np.pad(small, radius), kernel)
    return np.clip(small, 0.0, 1.0).astype(np.float32)


def _pair(value: Any, where: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.augment.{where}: expected [low, high], got {value!r}") from exc
    if lo > hi:
        raise ConfigError(f"data.augment.{where}: low {lo} > high {hi}")
    return lo, hi


def _build(params: dict[str, dict[str, Any]], names: tuple[str, ...], seed: int | None) -> Any:
    import albumentations as A
    import cv2

    steps = []
    for name in names:
        if name not in params:
            continue
        cfg, p = params[name], float(params[name]["p"])
        if name == "scale":
            lo, hi = _pair(cfg["range"], "scale.range")
            steps.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_AREA, p=p))
        elif name == "aspect":
            lo, hi = _pair(cfg["range"], "aspect.range")
            steps.append(A.Affine(scale={"x": (lo, hi), "y": (1.0, 1.0)}, fit_output=True, fill=0, p=p))
        elif name == "rotate":
            deg = float(cfg["degrees"])
            steps.append(A.Affine(rotate=(-deg, deg), fit_output=True, fill=0, p=p))
        elif name == "shear":
            deg = float(cfg["degrees"])
            steps.append(A.Affine(shear={"x": (-deg, deg), "y": (0.0, 0.0)}, fit_output=True, fill=0, p=p))
        elif name == "stroke":
            dil = tuple(int(v) for v in _pair(cfg["dilate"], "stroke.dilate"))
            ero = tuple(int(v) for v in _pair(cfg["erode"], "stroke.erode"))
            steps.append(
                A.OneOf(
                    [
                        A.Morphological(scale=dil, operation="dilation"),
                        A.Morphological(scale=ero, operation="erosion"),
                    ],
                    p=p,
                )
            )
        elif name == "noise":
            steps.append(A.GaussNoise(std_range=_pair(cfg["std"], "noise.std"), p=p))
        elif name == "blur":
            steps.append(A.GaussianBlur(sigma_limit=_pair(cfg["sigma"], "blur.sigma"), blur_limit=0, p=p))
    return A.Compose(steps, seed=seed) if steps else None


class Augmenter:
    """Applies `data.augment` around `preprocess`: `augmenter(img, preprocess_fn) -> model-ready image`."""

    def __init__(self, config: dict[str, Any], seed: int | None = None):
        self.params = _params(config)
        self.geometric = _build(self.params, GEOMETRIC, seed)
        self.photometric = _build(self.params, PHOTOMETRIC, None if seed is None else seed + 1)
        self.small = self.params.get("small")
        if self.small is not None:
            lo, hi = _pair(self.small["range"], "small.range")
            if not 0.0 < lo <= hi < 1.0:
                raise ConfigError(f"data.augment.small.range must lie in (0, 1), got {self.small['range']!r}")
            self.small_range = (lo, hi)
        self._rng = np.random.default_rng(None if seed is None else seed + 2)

    def __bool__(self) -> bool:
        return self.geometric is not None or self.photometric is not None or self.small is not None

    def reseed(self, seed: int) -> None:
        """Give each DataLoader worker its own stream (called from `worker_init_fn`)."""
        for i, compose in enumerate((self.geometric, self.photometric)):
            if compose is not None:
                compose.set_random_seed(seed * 2 + i)
        self._rng = np.random.default_rng(seed * 2 + 2)

    def growth(self) -> tuple[float, float]:
        """Upper bound of the (height, width) growth the geometric steps cause, for batch budgets.

        Rotation/shear enlarge the ink's bounding box too; a 15 % allowance covers the default ranges,
        and the dataset shrinks any rarer larger result back into the bound.
        """
        gh = gw = 1.0
        if "scale" in self.params:
            hi = _pair(self.params["scale"]["range"], "scale.range")[1]
            gh, gw = gh * max(hi, 1.0), gw * max(hi, 1.0)
        if "aspect" in self.params:
            gw *= max(_pair(self.params["aspect"]["range"], "aspect.range")[1], 1.0)
        if "rotate" in self.params or "shear" in self.params:
            gh, gw = gh * 1.15, gw * 1.15
        return gh, gw

    def __call__(self, img: np.ndarray, preprocess: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Geometric steps, `preprocess`, then photometric steps. img: (H, W) float32 in [0, 1]."""
        out = None
        warped = None
        if self.geometric is not None:
            warped = np.clip(self.geometric(image=img)["image"], 0.0, 1.0).astype(np.float32)
        if self.small is not None and self._rng.random() < float(self.small["p"]):
            warped = shrink_keeping_pen(
                img if warped is None else warped, self._rng.uniform(*self.small_range)
            )
        if warped is not None:
            try:
                out = preprocess(warped)
            except ImageError:  # augmentation erased the ink: keep the sample, un-augmented
                out = None
        if out is None:
            out = preprocess(img)
        if self.photometric is not None:
            out = np.clip(self.photometric(image=out)["image"], 0.0, 1.0).astype(np.float32)
        return out


def build_augmenter(config: dict[str, Any] | None, seed: int | None = None) -> Augmenter | None:
    """`Augmenter` for a `data.augment` mapping, or None when it enables no step."""
    aug = Augmenter(config or {}, seed=seed)
    return aug if aug else None
