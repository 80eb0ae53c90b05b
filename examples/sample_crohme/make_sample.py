"""Regenerate this tiny CoMER-layout sample: hand-drawn-looking formulas from a small stroke font.

    python examples/sample_crohme/make_sample.py

Writes `data/train/caption.txt` (`id<TAB>tokens`) and `data/train/img/<id>.bmp` (8-bit grey,
white strokes on black, like CROHME offline bitmaps). Nothing here comes from a real dataset.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Glyphs as polylines in a unit box (x right, y down); each glyph is a list of strokes.
_ARC = [(0.5 + 0.45 * np.cos(t), 0.5 + 0.5 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 24)]
GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    "0": [_ARC],
    "1": [[(0.25, 0.25), (0.55, 0.0), (0.55, 1.0)]],
    "2": [[(0.05, 0.25), (0.3, 0.0), (0.75, 0.0), (0.9, 0.25), (0.05, 1.0), (0.95, 1.0)]],
    "3": [[(0.05, 0.1), (0.8, 0.0), (0.4, 0.45), (0.9, 0.7), (0.6, 1.0), (0.05, 0.9)]],
    "4": [[(0.7, 1.0), (0.7, 0.0), (0.0, 0.7), (0.95, 0.7)]],
    "5": [[(0.9, 0.0), (0.15, 0.0), (0.1, 0.45), (0.7, 0.45), (0.9, 0.75), (0.6, 1.0), (0.05, 0.9)]],
    "7": [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)]],
    "x": [[(0.05, 0.3), (0.9, 1.0)], [(0.9, 0.3), (0.05, 1.0)]],
    "y": [[(0.05, 0.3), (0.5, 0.75)], [(0.95, 0.3), (0.2, 1.3)]],
    "+": [[(0.5, 0.25), (0.5, 0.95)], [(0.1, 0.6), (0.9, 0.6)]],
    "-": [[(0.1, 0.6), (0.9, 0.6)]],
    "=": [[(0.1, 0.45), (0.9, 0.45)], [(0.1, 0.75), (0.9, 0.75)]],
    "(": [[(0.7, -0.05), (0.35, 0.3), (0.35, 0.75), (0.7, 1.1)]],
    ")": [[(0.3, -0.05), (0.65, 0.3), (0.65, 0.75), (0.3, 1.1)]],
}
# (id, tokens); `^ { d }` raises a smaller digit.
SAMPLES = [
    ("sample_x_plus_1", "x + 1"),
    ("sample_2x", "2 x"),
    ("sample_3_eq_3", "3 = 3"),
    ("sample_x_minus_y", "x - y"),
    ("sample_paren", "( x + 2 )"),
    ("sample_sum", "1 + 2 = 3"),
    ("sample_y_eq_4x", "y = 4 x"),
    ("sample_square", "x ^ { 2 } + 1"),
]


def draw(tokens: list[str], rng: np.random.Generator, size: int = 60) -> np.ndarray:
    """Render tokens left to right with jittered strokes; returns uint8 (H, W), ink 255 on 0."""
    canvas = np.zeros((int(size * 2.2), int(size * (1.0 * len(tokens) + 1))), np.uint8)
    x, base, scale, i = size * 0.5, size * 0.6, 1.0, 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "^":  # `^ { d }`: next glyph raised and smaller
            scale, i = 0.55, i + 2
            continue
        if tok == "}":
            scale, i = 1.0, i + 1
            continue
        h = size * scale
        top = base - (0.45 * size if scale < 1 else 0)
        for stroke in GLYPHS[tok]:
            pts = np.array([(x + px * 0.6 * h, top + py * h) for px, py in stroke])
            pts += rng.normal(0, size * 0.02, pts.shape)
            cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, 3, cv2.LINE_AA)
        x += h * (0.6 + 0.35)
        i += 1
    return canvas[:, : int(x + size * 0.3)]


def main(root: Path = Path(__file__).parent) -> None:
    rng = np.random.default_rng(7)
    folder = root / "data" / "train"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for sample_id, label in SAMPLES:
        cv2.imwrite(str(folder / "img" / f"{sample_id}.bmp"), draw(label.split(), rng))
        lines.append(f"{sample_id}\t{label}\n")
    (folder / "caption.txt").write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
