"""Handwriting drawn on the web page's canvas vs the same ink read from a file: does the canvas path lose accuracy?

Starts the server with `--model`, opens its page in Chromium (Playwright), and for each of the first `--count`
CROHME 2014 InkML expressions draws its pen strokes with the mouse, scaled so the ink fills `--fill` of the
canvas width (or 60 % of its height, whichever is smaller), as someone writing on the page would; the page
sends its pen strokes (canvas pixels, as the pointer events gave them) to `POST /v1/predict`, and the LaTeX
in its editor is scored against the official 2014 caption. The same expressions rendered as CROHME-style
bitmaps (`data/render_strokes.py`, 28 px strokes) are read through `Recognizer.predict` (the file path).
Both paths decode with beam 3, the page's default.

    python benchmarks/canvas_path.py --model default --count 100 [--fill 0.8] [--pen 5]

Prints ExpRate, <=1 and <=2 errors per path and the gap.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_invariance import SHARED, official_captions  # noqa: E402

from texscribe.data.readers.inkml import parse_inkml  # noqa: E402
from texscribe.data.render_strokes import RenderOptions, render_strokes  # noqa: E402
from texscribe.inference import load_model  # noqa: E402
from texscribe.metrics import exprate, within_k_errors  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def expressions(count: int) -> list[tuple[str, list[np.ndarray], str]]:
    """(id, traces, caption) of the first `count` CROHME 2014 InkML files that have an official caption."""
    captions = official_captions(SHARED / "crohme_offline.zip", "2014")
    out = []
    with zipfile.ZipFile(SHARED / "crohme_inkml.zip") as z:
        for name in sorted(n for n in z.namelist() if "/2014/" in n and n.endswith(".inkml")):
            sample_id = Path(name).stem
            if sample_id in captions:
                out.append((sample_id, parse_inkml(z.read(name), name).traces, captions[sample_id]))
            if len(out) == count:
                break
    return out


def start_server(model: str) -> tuple[str, object]:
    import socket

    import uvicorn

    from texscribe.server import ServerSettings, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServerSettings(model=model, workers=1, threads=1, digits=False)),
            host="127.0.0.1", port=port, log_level="warning",
        )
    )  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


DRAW = """(strokes) => {
    // pointer events as a pen or mouse sends them; coordinates are fractions of the canvas box
    const pad = document.getElementById('pad');
    const r = pad.getBoundingClientRect();
    const ev = (type, x, y) => pad.dispatchEvent(new PointerEvent(type, {
        pointerId: 1, pointerType: 'mouse', pressure: 0.5, isPrimary: true, button: 0,
        buttons: type === 'pointerup' ? 0 : 1, bubbles: true, cancelable: true,
        clientX: r.left + x * r.width, clientY: r.top + y * r.height }));
    for (const stroke of strokes) {
        ev('pointerdown', stroke[0][0], stroke[0][1]);
        for (const [x, y] of stroke.slice(1)) ev('pointermove', x, y);
        const last = stroke[stroke.length - 1];
        ev('pointerup', last[0], last[1]);
    }
}"""


def canvas_strokes(traces: list[np.ndarray], aspect: float, fill: float) -> list[list[list[float]]]:
    """Strokes as fractions of the canvas box (width/height = `aspect`): the ink's bounding box scaled to
    span `fill` of the width (at most 60 % of the height), centred."""
    points = np.concatenate([t[:, :2] for t in traces if len(t)])
    low, high = points.min(axis=0), points.max(axis=0)
    extent = np.maximum(high - low, 1e-6)
    scale = min(fill / extent[0], 0.6 / (extent[1] * aspect))  # in widths per ink unit
    centre = (low + high) / 2
    return [
        [[0.5 + (x - centre[0]) * scale, 0.5 + (y - centre[1]) * scale * aspect] for x, y in t[:, :2]]
        for t in traces
        if len(t)
    ]


def read_on_canvas(page, traces: list[np.ndarray], fill: float) -> str:
    from playwright.sync_api import expect

    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    page.evaluate(DRAW, canvas_strokes(traces, box["width"] / box["height"], fill))
    page.click("#recognize")
    expect(page.locator("#latex")).not_to_have_value("", timeout=120_000)
    return page.input_value("#latex")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--fill", type=float, default=0.8, help="share of the canvas width the ink spans")
    parser.add_argument("--pen", type=int, default=5, help="the page's pen width (its default is 5 px)")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    items = expressions(args.count)
    refs = [caption for _, _, caption in items]
    recognizer = load_model(args.model, num_threads=1)
    files = [render_strokes(traces, RenderOptions()) for _, traces, _ in items]
    file_preds = [p.latex for p in recognizer.predict([f.astype(np.float32) / 255.0 for f in files], beam=3)]

    url, server = start_server(args.model)
    canvas_preds = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"], headless=True
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url + "/")
        expect(page.locator("#model-info")).to_have_text(re.compile(r"^model "))
        page.fill("#width", str(args.pen))
        page.select_option("#beam", "3")
        page.uncheck("#auto")  # recognise once the whole expression is drawn
        for _, traces, _ in items:
            canvas_preds.append(read_on_canvas(page, traces, args.fill))
        browser.close()
    server.should_exit = True

    print(f"{len(items)} CROHME 2014 expressions, model {args.model}, beam 3; canvas: ink spans {args.fill:.0%} "
          f"of the width (at most 60 % of the height), pen {args.pen} px")  # fmt: skip
    print(f"{'path':<8} {'ExpRate':>8} {'<=1':>7} {'<=2':>7}")
    rates = {}
    for name, preds in (("file", file_preds), ("canvas", canvas_preds)):
        rates[name] = exprate(preds, refs)
        print(f"{name:<8} {100 * rates[name]:>7.2f}% {100 * within_k_errors(preds, refs, 1):>6.2f}% "
              f"{100 * within_k_errors(preds, refs, 2):>6.2f}%")  # fmt: skip
    print(f"canvas - file: {100 * (rates['canvas'] - rates['file']):+.2f} points")


if __name__ == "__main__":
    main()
