"""Half-size writing reads worse: because it is small, or because its pen is thick for its size?

`benchmarks/scale_invariance.py` draws CROHME 2014's InkML at half size with the same pen, so the pen is
twice as wide for the size as at 1x. This separates the two causes with five sets of the same 986
expressions and the official 2014 captions, scored by the library's `evaluate` (what `texscribe evaluate`
runs) as the model file says:

- `renders x1`: the strokes at the bitmaps' size (28 px), the renderer's pen (`line_width` 2: 3.4 px).
- `renders x0.5`: the same strokes and pen at half size (the scale benchmark's 0.5x set).
- `bitmaps x0.5, thinner pen`: the official bitmaps area-shrunk to half size: small writing whose pen shrank
  with it (a photo taken from twice as far), a 14 px raster with the 1x pen-to-size ratio.
- `x0.5 pen ratio at x1 raster`: strokes drawn at 2x with a pen 4x as wide (`line_width` 11: 13.4 px), then
  area-shrunk to 1x: the half-size sets' pen-to-size ratio on a 28 px raster.
- `x0.5 pen ratio at x0.5 raster`: the same shrunk to half size, another route to `renders x0.5`.

Per set it prints the pen and the stroke height it was drawn with (px, by construction: OpenCV's
anti-aliased `line_width` 2 draws 3.4 px, 11 draws 13.4 px; the bitmaps' pen is taken as the 1x renders',
which `images.measure_ink` finds the same) and ExpRate, <=1, <=2 errors.

    python benchmarks/pen_vs_size.py --model default --out /tmp/pen_vs_size [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_invariance import (  # noqa: E402
    SCORE_HEADER,
    SHARED,
    official_captions,
    prepared_copy,
    render_split,
    score_columns,
    table_title,
    write_folder,
)

from texscribe.evaluation.evaluate import evaluate  # noqa: E402
from texscribe.images import load_image, to_uint8  # noqa: E402
from texscribe.inference import load_model  # noqa: E402

# line_width at 2x that gives the half-size renders' pen-to-size ratio once shrunk: it draws a 13.4 px pen
# on strokes of 56 - 11 = 45 px (the renderer keeps the pen inside the stroke height); a quarter of that is
# 3.35 px on 11.25 px, the 0.5x renders' 3.4 px pen on 14 - 2 = 12 px.
THICK_PEN = 11.0
# px that those line widths draw: the mean ink across a long anti-aliased line (RenderOptions.line_width)
THICK_PEN_WIDTH = 13.4
RENDER_PEN = 3.4  # the renderer's default line_width 2


def area_resize(img: np.ndarray, factor: float) -> np.ndarray:
    """`img` (uint8, ink bright) `factor` times each side, pixels averaged (a camera farther away)."""
    h, w = img.shape
    return cv2.resize(
        img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA
    )


def shrink_folder(src: Path, factor: float, out: Path) -> int:
    """Every image of the render folder `src`, area-resized by `factor`, as the render folder `out`."""
    lines = (src / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    records = [line.split("\t")[:3] for line in lines]
    return write_folder(
        out, ((i, tokens, partial(_resized, src / image, factor)) for i, image, tokens in records)
    )


def bitmap_folder(offline_zip: Path, factor: float, out: Path) -> int:
    """The CoMER-layout zip's 2014 bitmaps, area-resized by `factor`, as the render folder `out`."""
    with zipfile.ZipFile(offline_zip) as z:
        items = (
            (i, tokens, partial(_resized, z, factor, f"data/2014/img/{i}.bmp"))
            for i, tokens in official_captions(offline_zip, "2014").items()
        )
        return write_folder(out, items)


def _resized(source: Path | zipfile.ZipFile, factor: float, name: str | None = None) -> np.ndarray:
    """An image file (or member `name` of a zip), ink bright as the renders (`load_image`), `area_resize`d."""
    payload = source.read(name) if isinstance(source, zipfile.ZipFile) else source
    return area_resize(to_uint8(load_image(payload, origin=name)), factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, required=True, help="folder for renders, prepared sets, reports")
    parser.add_argument("--limit", type=int, default=None, help="first N expressions of each set")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    inkml, offline = SHARED / "crohme_inkml.zip", SHARED / "crohme_offline.zip"
    captions = official_captions(offline, "2014")
    out = args.out
    thick = out / "thick_x2"
    pen, half_pen = RENDER_PEN, THICK_PEN_WIDTH / 4  # px
    builders = {  # name -> (folder, how to make it, pen px, stroke height px)
        "renders x1": (out / "x1", lambda f: render_split(inkml, "2014", captions, 1.0, f), pen, 28.0),
        "renders x0.5": (out / "x0.5", lambda f: render_split(inkml, "2014", captions, 0.5, f), pen, 14.0),
        "bitmaps x0.5, thinner pen": (
            out / "bitmaps_x0.5",
            lambda f: bitmap_folder(offline, 0.5, f),
            pen / 2,
            14.0,
        ),
        "x0.5 pen ratio at x1 raster": (
            out / "thick_x1",
            lambda f: shrink_folder(thick, 0.5, f),
            2 * half_pen,
            28.0,
        ),
        "x0.5 pen ratio at x0.5 raster": (
            out / "thick_x0.5",
            lambda f: shrink_folder(thick, 0.25, f),
            half_pen,
            14.0,
        ),
    }
    render_split(inkml, "2014", captions, 2.0, thick, line_width=THICK_PEN)
    recognizer = load_model(args.model, num_threads=args.threads)
    rows = []
    for name, (folder, build, pen_px, height_px) in builders.items():
        build(folder)
        prepared = prepared_copy(folder, folder.with_name(f"prepared_{folder.name}"))
        result = evaluate(
            recognizer, prepared, out / f"eval_{folder.name}",
            beam=args.beam, limit=args.limit, workers=1, progress=False,
        )  # fmt: skip
        rows.append((name, pen_px, height_px, result.metrics))
        print(f"{name}: {100 * result.metrics['exp_rate']:.2f} %", flush=True)

    print(table_title("CROHME 2014 at half size: size or pen?", args))
    print(f"{'set':<31} {'pen':>5} {'stroke':>6} {'ratio':>6} {SCORE_HEADER}")
    for name, pen_px, height_px, m in rows:
        print(f"{name:<31} {pen_px:>5.2f} {height_px:>6g} {pen_px / height_px:>6.3f} {score_columns(m)}")


if __name__ == "__main__":
    main()
