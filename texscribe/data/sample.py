"""The one record every reader yields, and the record for what a reader had to skip."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# What a lazy loader may return: encoded file bytes (PNG/BMP/JPEG...), or pixels already decoded
# (e.g. rendered InkML strokes). `texscribe.images.load_image` accepts both.
ImagePayload = bytes | np.ndarray


@dataclass
class Sample:
    """One labelled (or unlabelled) image from a source.

    `latex` is the label as the source writes it; `pretokenized` says whether it is already
    space-separated tokens (CROHME captions, im2latex .lst) or raw LaTeX (InkML truth, label files).
    `origin` names where it came from (`archive.zip:data/train/img/x.bmp`) for error messages.
    """

    id: str
    latex: str | None
    source: str
    load: Callable[[], ImagePayload] | None
    origin: str
    pretokenized: bool = False


@dataclass
class Skipped:
    """An item a reader or a cleaning rule could not use, with the reason (for the report)."""

    id: str
    source: str
    reason: str  # short machine-friendly category, e.g. "missing_image", "bad_caption_line"
    detail: str  # human message naming file/line and what is wrong
