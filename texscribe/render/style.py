"""What a rendering looks like (`RenderStyle`), why one failed (`RenderFailure`), and how styles are drawn.

A style is fully determined by the formula, its variant number and the run's `StyleSpace` + seed, so a
re-run draws the same style for the same formula and its content hash (`style_key`) finds the cached image.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# Font families a renderer can be asked for. TeX: Computer Modern, Latin Modern, Times-like (txfonts),
# Palatino-like (pxfonts), sans (Computer Modern Sans via `sansmath`). mathtext maps them onto its own.
FONTS = ("cm", "lm", "times", "palatino", "sans")
DEFAULT_FONTS = ("cm", "lm", "times", "sans")
DEFAULT_SIZES = (10.0, 12.0)  # TeX points
DEFAULT_DPIS = (150, 200, 250)  # pixels per inch: at 10 pt / 200 dpi an x-height is ~12 px

# Why a formula did not become an image. The first five come from TeX's own error messages.
FAILURE_CAUSES: dict[str, str] = {
    "undefined_control_sequence": "TeX does not know a command (\\foo) with the loaded packages",
    "undefined_environment": "TeX does not know an environment (\\begin{foo})",
    "missing_package": "a LaTeX package or file is not installed",
    "unicode_character": "a non-ASCII character TeX cannot typeset (CJK, symbols)",
    "missing_glyph": "the font has no glyph for a character",
    "math_mode": "something that is not allowed in math mode (text-only command, stray $ or \\[)",
    "double_script": "two superscripts or two subscripts on one base",
    "alignment": "& or \\\\ outside a matrix/array, or too many columns",
    "braces_or_arguments": "a command is missing an argument, or braces/\\left-\\right do not pair",
    "bad_number": "a command expects a number or a dimension and got something else",
    "unbalanced_environment": "\\begin{..} and \\end{..} do not pair",
    "unsafe_command": "a command that defines macros, does I/O or changes TeX's state (never run)",
    "capacity_exceeded": "TeX ran out of memory (usually runaway recursion)",
    "fatal_error": "TeX stopped the run (emergency stop)",
    "other_tex_error": "any other TeX error (the detail quotes it)",
    "timeout": "TeX or the renderer took longer than the time limit",
    "empty_output": "the formula compiled but drew nothing",
    "image_too_large": "the rendered image exceeds the pixel limit",
    "mathtext_unsupported": "matplotlib mathtext cannot parse this formula (TeX could)",
    "renderer_error": "the renderer program failed (not the formula's fault)",
}


@dataclass(frozen=True)
class RenderStyle:
    """How one formula is drawn: font family, size in TeX points, resolution in dpi, math style, degradation.

    `display=False` typesets in text style (smaller fractions, limits beside sums) as formulas inside a
    line of text look. `degrade_seed=None` means a clean print; otherwise `degrade.photo_degrade` runs
    with that seed.
    """

    font: str = "cm"
    size: float = 10.0
    dpi: int = 200
    display: bool = True
    degrade_seed: int | None = None

    def tag(self) -> str:
        """Short stable text for hashes and reports: `cm-10pt-200dpi` (+ `-text`, `-d<seed>`)."""
        base = f"{self.font}-{self.size:g}pt-{self.dpi}dpi" + ("" if self.display else "-text")
        return base if self.degrade_seed is None else f"{base}-d{self.degrade_seed}"


@dataclass(frozen=True)
class RenderFailure:
    """A formula that did not render: `cause` is a key of `FAILURE_CAUSES`, `detail` quotes the evidence."""

    cause: str
    detail: str


@dataclass(frozen=True)
class StyleSpace:
    """The choices styles are drawn from; `degrade` and `display` are probabilities (per rendering)."""

    fonts: tuple[str, ...] = DEFAULT_FONTS
    sizes: tuple[float, ...] = DEFAULT_SIZES
    dpis: tuple[int, ...] = DEFAULT_DPIS
    degrade: float = 0.0
    display: float = 0.5
    seed: int = 0

    def pick(self, formula: str, variant: int = 0) -> RenderStyle:
        """The style of `formula`'s `variant`-th rendering: uniform over the choices, reproducible."""
        rng = random.Random(stable_hash(f"style:{self.seed}:{variant}:{formula}"))
        font = rng.choice(self.fonts)
        size = float(rng.choice(self.sizes))
        dpi = int(rng.choice(self.dpis))
        display = rng.random() < self.display
        degrade_seed = rng.randrange(2**31) if rng.random() < self.degrade else None
        return RenderStyle(font, size, dpi, display, degrade_seed)


def stable_hash(text: str) -> int:
    """A 64-bit hash of `text` that is the same in every process and Python version (unlike `hash`)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def style_key(latex: str, style: RenderStyle, renderer: str, version: str) -> str:
    """Content hash of formula + style + renderer: the cache key of one rendered image."""
    return hashlib.sha1(f"{version}\n{renderer}\n{style.tag()}\n{latex}".encode()).hexdigest()
