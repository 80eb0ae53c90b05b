"""Seeded hostile inputs for `benchmarks/fuzz_inputs.py`: image files, caption text, InkML documents,
manifest rows and HTTP requests. Nothing here imports texscribe: these are what a user might send.

Every generator takes a `numpy.random.Generator` and returns bytes (or a small tuple) plus a short
description of what it made (`png L 1x4000 noise, truncated`), so a failure can be named and regenerated:
`case_rng(seed, surface, index)` gives each case its own stream.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif", "WEBP": ".webp"}
# modes each format can store (Pillow); anything else is converted to RGB first
MODES = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
    "GIF": ("1", "L", "P"),
    "WEBP": ("RGB", "RGBA"),
}
FORMULA_CHARS = "xyzab0123456789+-=()<>^/"
VALID_LATEX = ["x^{2}+1", "\\frac{a}{b}", "\\sqrt{x+y}", "a_{1}+a_{2}", "\\sum_{i=1}^{n} i", "2x-3=y"]
LATEX_PIECES = [
    *"xyab012+-=()[]{}^_|,.!'", " ", "\\", "\\\\", "\\{", "\\}", "\\frac", "\\sqrt", "\\left(", "\\right)",
    "\\left", "\\right", "\\begin{matrix}", "\\end{matrix}", "\\alpha", "\\sum", "\\limits", "&", "$", "%",
    "\\text{", "\\mathrm", "\\unknowncommand", "α", "∑", "∞", "\u200b", "\u202e", "e\u0301", "😀", "\x00",
]  # fmt: skip


# share of each kind of shape among generated images
SHAPES = {"formula": 0.6, "tiny": 0.05, "row": 0.05, "column": 0.05, "sliver": 0.07, "tall": 0.05, "square": 0.08,
          "big": 0.04, "huge": 0.01}  # fmt: skip
NOISY_PIXELS = 2_000_000  # larger images get cheap-to-encode content: noise would make files of many MB


def case_rng(seed: int, surface: str, index: int) -> np.random.Generator:
    """The stream of one case: the same (seed, surface, index) always makes the same input."""
    return np.random.default_rng([seed, zlib.crc32(surface.encode()), index])


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# ---------------------------------------------------------------------------------------------- pixels
def odd_shape(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width): mostly formula-like, often degenerate (1xN, Nx1, slivers, tiny), rarely huge."""
    kind = str(rng.choice(list(SHAPES), p=list(SHAPES.values())))
    if kind == "formula":
        return int(rng.integers(24, 160)), int(rng.integers(60, 900))
    if kind == "tiny":
        return int(rng.integers(1, 5)), int(rng.integers(1, 5))
    if kind == "row":
        return 1, int(rng.integers(2, 30_000))
    if kind == "column":
        return int(rng.integers(2, 30_000)), 1
    if kind == "sliver":
        return int(rng.integers(2, 16)), int(rng.integers(200, 40_000))
    if kind == "tall":
        return int(rng.integers(200, 20_000)), int(rng.integers(2, 40))
    if kind == "square":
        side = int(rng.integers(5, 400))
        return side, side
    if kind == "big":
        return int(rng.integers(800, 3000)), int(rng.integers(800, 3000))
    return int(rng.integers(4000, 6000)), int(rng.integers(4000, 6000))  # 16-36 Mpx: under the 40M limit


def odd_pixels(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
    """uint8 gray (H, W) content: a formula, noise, blank, a dot, stripes, gradients, low contrast."""
    kind = pick(rng, ["formula"] * 5 + ["noise", "black", "white", "dot", "stripes", "gradient", "faint",
                                        "checker", "speckles"])  # fmt: skip
    if height * width > NOISY_PIXELS and kind in ("noise", "faint", "speckles"):
        kind = "stripes"
    if kind == "formula":
        img = np.full((height, width), 255, np.uint8)
        text = "".join(pick(rng, FORMULA_CHARS) for _ in range(int(rng.integers(1, 12))))
        scale = max(0.3, min(height / 40, width / (20 * len(text)), 4.0))
        cv2.putText(img, text, (2, max(1, int(height * 0.75))), cv2.FONT_HERSHEY_SIMPLEX, scale, 0,
                    max(1, int(scale * 2)))  # fmt: skip
        if rng.random() < 0.3:
            img = 255 - img
    elif kind == "noise":
        img = rng.integers(0, 256, (height, width), dtype=np.uint8)
    elif kind in ("black", "white"):
        img = np.full((height, width), 0 if kind == "black" else 255, np.uint8)
    elif kind == "dot":
        img = np.full((height, width), 255, np.uint8)
        img[int(rng.integers(height)), int(rng.integers(width))] = 0
    elif kind == "stripes":
        period = int(rng.integers(2, 9))
        img = np.where(np.arange(width)[None, :] % period == 0, 0, 255).astype(np.uint8)
        img = np.broadcast_to(img, (height, width)).copy()
    elif kind == "gradient":
        img = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0).astype(np.uint8)
    elif kind == "faint":
        img = np.full((height, width), 128, np.uint8)
        img[rng.random((height, width)) < 0.05] = 127
    elif kind == "checker":
        img = ((np.indices((height, width)).sum(0) % 2) * 255).astype(np.uint8)
    else:
        img = np.full((height, width), 255, np.uint8)
        img[rng.random((height, width)) < 0.01] = 0
    return img, kind


def to_mode(rng: np.random.Generator, gray: np.ndarray, mode: str) -> Image.Image:
    """A PIL image of `mode` showing `gray`: colour ink, alpha-only ink, palettes, 16/32-bit, float, CMYK."""
    if mode == "1":
        return Image.fromarray(gray > 127)
    if mode == "L":
        return Image.fromarray(gray)
    if mode in ("RGB", "CMYK", "P"):
        tint = rng.integers(0, 256, 3).astype(np.float32) / 255
        rgb = (gray[..., None] * tint + (255 - gray[..., None]) * (1 - tint) * 0).astype(np.uint8)
        rgb = np.where(gray[..., None] > 127, 255, rgb).astype(np.uint8)
        im = Image.fromarray(rgb)
        return im.convert(mode) if mode != "RGB" else im
    if mode in ("LA", "RGBA"):  # ink drawn only in the alpha channel, or a fully transparent image
        alpha = 255 - gray if rng.random() < 0.8 else np.zeros_like(gray)
        colour = np.full(gray.shape, int(rng.integers(0, 256)), np.uint8)
        planes = [colour, alpha] if mode == "LA" else [colour, colour, colour, alpha]
        return Image.fromarray(np.stack(planes, -1), mode)
    if mode == "I;16":
        return Image.fromarray((gray.astype(np.uint16) * 257) >> int(rng.integers(0, 9)))
    if mode == "I":
        return Image.fromarray(gray.astype(np.int32) * int(rng.integers(1, 1 << 20)) - (1 << 19))
    return Image.fromarray(gray.astype(np.float32) / 255 * float(rng.choice([1.0, 1e-30, 1e30, -1.0])))


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):  # a mode this format or build cannot write
        buf = io.BytesIO()
        im.convert("RGB").save(buf, fmt)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- files
def image_file(rng: np.random.Generator) -> tuple[bytes, str, str]:
    """(bytes, suffix, description): a valid image of odd shape/mode/format, or a damaged or fake one."""
    kind = pick(rng, ["valid"] * 8 + ["truncated"] * 2 + ["bitflip"] * 2 + ["splice", "header_bomb",
                     "wrong_suffix", "garbage", "animated", "metadata", "pixel_bomb"])  # fmt: skip
    if kind == "garbage":
        return garbage_bytes(rng)
    if kind == "header_bomb":
        return header_bomb(rng)
    if kind == "pixel_bomb":  # a real image near the size limit, mostly blank: decoding and cropping cost
        size = int(rng.integers(5000, 6300))
        im = Image.new("L", (size, size), 255)
        im.paste(0, (size // 2, size // 2, size // 2 + 40, size // 2 + 8))
        return encode(im, "PNG"), ".png", f"png L {size}x{size} mostly white"
    fmt = pick(rng, list(SUFFIX))
    height, width = odd_shape(rng)
    gray, content = odd_pixels(rng, height, width)
    mode = pick(rng, MODES[fmt])
    if height * width > NOISY_PIXELS or max(height, width) > 16_383:  # GIF, WebP, JPEG cap the side; the
        fmt, mode = "PNG", pick(rng, ["1", "L", "RGB"])  # others would be slow or store 100 MB uncompressed
    im = to_mode(rng, gray, mode)
    what = f"{fmt.lower()} {mode} {height}x{width} {content}"
    if kind == "animated" and fmt in ("GIF", "TIFF", "WEBP", "PNG"):
        buf = io.BytesIO()
        frames = [im, to_mode(rng, 255 - gray, mode)]
        try:
            frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
            return buf.getvalue(), SUFFIX[fmt], what + ", 2 frames"
        except (OSError, ValueError, KeyError):
            pass
    if kind == "metadata" and fmt == "PNG":
        data = encode(im, fmt)
        chunk = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 20_000_000, 9))
        return data[:33] + chunk + data[33:], ".png", what + ", 20 MB zTXt chunk"
    data = encode(im, fmt)
    if kind == "truncated":
        cut = int(rng.integers(0, len(data)))
        return data[:cut], SUFFIX[fmt], f"{what}, cut at {cut}/{len(data)}"
    if kind == "bitflip":
        flipped = bytearray(data)
        for _ in range(int(rng.integers(1, 20))):
            pos = int(rng.integers(len(flipped)))
            flipped[pos] ^= 1 << int(rng.integers(8))
        return bytes(flipped), SUFFIX[fmt], what + ", bits flipped"
    if kind == "splice":
        pos = int(rng.integers(len(data)))
        junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        return data[:pos] + junk + data[pos + len(junk) :], SUFFIX[fmt], what + ", bytes overwritten"
    if kind == "wrong_suffix":
        other = pick(rng, [s for f, s in SUFFIX.items() if f != fmt] + [".txt", ""])
        return data, other, what + f", named {other or 'without suffix'}"
    return data, SUFFIX[fmt], what


def garbage_bytes(rng: np.random.Generator) -> tuple[bytes, str, str]:
    """Not images: empty, random, a format signature and junk, text, SVG, a PDF header, a zip."""
    kind = pick(rng, ["empty", "random", "magic", "text", "svg", "pdf", "zip"])
    if kind == "empty":
        return b"", pick(rng, list(SUFFIX.values())), "empty file"
    if kind == "random":
        n = int(rng.integers(1, 4096))
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes(), ".png", f"{n} random bytes"
    if kind == "magic":
        magic = pick(rng, [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"GIF89a", b"II*\x00",
                           b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P5\n3 3\n255\n"])  # fmt: skip
        tail = rng.integers(0, 256, int(rng.integers(0, 512)), dtype=np.uint8).tobytes()
        return magic + tail, ".png", f"signature {magic[:4]!r} + {len(tail)} random bytes"
    if kind == "text":
        return b"x^2 + 1 = y\n" * int(rng.integers(1, 100)), ".png", "a text file"
    if kind == "svg":
        return b'<svg xmlns="http://www.w3.org/2000/svg"><text>x</text></svg>', ".svg", "SVG"
    if kind == "pdf":
        return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", ".pdf", "PDF header"
    return b"PK\x05\x06" + b"\x00" * 18, ".png", "empty zip"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def header_bomb(rng: np.random.Generator) -> tuple[bytes, str, str]:
    """A small file whose header claims an enormous (or zero, or negative) size: PNG, BMP or GIF."""
    width, height = (int(v) for v in rng.choice([0, 1, 65_535, 100_000, 1 << 24, (1 << 31) - 1], 2))
    fmt = pick(rng, ["PNG", "BMP", "GIF"])
    if fmt == "PNG":
        ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        data = b"\x89PNG\r\n\x1a\n" + ihdr + idat + png_chunk(b"IEND", b"")
    elif fmt == "BMP":
        signed = -height if rng.random() < 0.3 else height
        info = struct.pack("<IiiHHIIiiII", 40, min(width, (1 << 31) - 1), max(min(signed, (1 << 31) - 1),
                           -(1 << 31)), 1, 8, 0, 0, 2835, 2835, 0, 0)  # fmt: skip
        body = info + b"\x00\x00\x00\x00" * 256 + b"\x00" * 64
        data = b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 14 + 40 + 1024) + body
    else:
        w16, h16 = min(width, 65_535), min(height, 65_535)
        screen = struct.pack("<HHBBB", w16, h16, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
        image = b"\x2c" + struct.pack("<HHHHB", 0, 0, w16, h16, 0) + b"\x02\x02\x4c\x01\x00"
        data = b"GIF89a" + screen + image + b"\x3b"
    return data, SUFFIX[fmt], f"{fmt.lower()} header claiming {width}x{height}"


def odd_array(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An ndarray a Python caller might pass: odd dtypes, shapes, channel counts, NaN/inf, strides."""
    dtype = pick(rng, ["uint8", "uint16", "int8", "int32", "int64", "float16", "float32", "float64",
                       "bool", "complex64", "object"])  # fmt: skip
    shape = pick(rng, [(), (0,), (7,), (0, 5), (5, 0), (1, 1), (48, 160), (48, 160, 1), (48, 160, 2),
                       (48, 160, 3), (48, 160, 4), (48, 160, 5), (3, 48, 160), (2, 48, 160, 3),
                       (1, 30_000), (30_000, 1), (2000, 2000)])  # fmt: skip
    if dtype == "object":
        arr = np.empty(shape, object)
        arr.fill(pick(rng, [None, "x", 1.5]))
        return arr, f"object array {shape}"
    gray, content = odd_pixels(rng, *(shape[-2:] if len(shape) >= 2 and 0 not in shape else (4, 4)))
    values = gray.astype(np.float64)
    scale = pick(rng, [1.0, 1 / 255, 257.0, -1.0, 1e300, 1e-300])
    arr = np.resize(values * scale, shape)
    if dtype in ("float16", "float32", "float64") and arr.size and rng.random() < 0.3:
        arr.flat[int(rng.integers(arr.size))] = pick(rng, [np.nan, np.inf, -np.inf])
    with np.errstate(all="ignore"):
        arr = arr.astype(dtype)
    if arr.ndim >= 2 and rng.random() < 0.2:
        arr = arr[::-1, ::2]  # negative and non-unit strides
    return arr, f"{dtype} array {arr.shape} {content} x{scale:g}"


# ----------------------------------------------------------------------------------------------- text
def latex_text(rng: np.random.Generator) -> str:
    """A label: valid LaTeX, token soup, deep nesting, very long, empty, or prose."""
    kind = pick(rng, ["valid", "valid", "soup", "soup", "nested", "long", "empty", "prose", "unbalanced"])
    if kind == "valid":
        return pick(rng, VALID_LATEX)
    if kind == "soup":
        return "".join(pick(rng, LATEX_PIECES) for _ in range(int(rng.integers(1, 40))))
    if kind == "nested":
        depth = int(rng.integers(100, 20_000))
        return "{" * depth + "x" + "}" * depth
    if kind == "long":
        return " + ".join(["x"] * int(rng.integers(500, 20_000)))
    if kind == "empty":
        return pick(rng, ["", " ", "\t", "\r\n", "\u3000"])
    if kind == "prose":
        return "the answer is " + "".join(pick(rng, "abcdefgh ") for _ in range(60))
    return pick(rng, ["\\frac{1}", "x^", "\\left( x", "\\sqrt[", "}{", "\\begin{matrix} a", "x \\"])


def encode_text(rng: np.random.Generator, text: str) -> tuple[bytes, str]:
    """`text` in a right or wrong encoding, or with broken bytes spliced in."""
    kind = pick(rng, ["utf-8"] * 4 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252",
                                       "invalid", "truncated", "overlong", "surrogate"])  # fmt: skip
    if kind in ("latin-1", "cp1252"):
        return (text + " é£").encode(kind, errors="replace"), kind
    if kind in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"):
        return text.encode(kind, errors="surrogatepass"), kind
    data = text.encode("utf-8", errors="surrogatepass")
    pos = int(rng.integers(len(data) + 1))
    bad = {"invalid": b"\xff\xfe\x80", "truncated": b"\xe2\x82", "overlong": b"\xc0\xaf",
           "surrogate": b"\xed\xa0\x80"}[kind]  # fmt: skip
    return data[:pos] + bad + data[pos:], kind


# ----------------------------------------------------------------------------------------------- inkml
def inkml_document(rng: np.random.Generator) -> tuple[bytes, str]:
    """An InkML file: valid strokes + truth, or malformed XML, bad numbers, odd encodings, entity tricks."""
    kind = pick(rng, ["valid"] * 4 + ["numbers"] * 4 + ["xml", "encoding", "entities", "structure",
                                                        "deep", "many_points"])  # fmt: skip
    traces = [_stroke(rng) for _ in range(int(rng.integers(1, 6)))]
    truth = pick(rng, VALID_LATEX) if rng.random() < 0.8 else latex_text(rng)
    what = kind
    if kind == "numbers":
        bad = pick(rng, ["nan", "inf", "-inf", "1e300", "-1e300", "1e-320", "0x1A", "1e", "--2", "1,,2",
                         "12 ", "3 4 5 6 7", "9" * 400, "'1 '2", '"3 "4', "!1 !x", "1 2 3, 4"])  # fmt: skip
        i = int(rng.integers(len(traces)))
        traces[i] = f"{traces[i]}, {bad} {bad}" if rng.random() < 0.5 else bad
        what = f"numbers: {bad[:20]!r}"
    if kind == "many_points":
        n = int(rng.integers(10_000, 200_000))
        traces = [", ".join(f"{x} {y}" for x, y in rng.integers(0, 50, (n, 2)))]
        what = f"{n} points"
    body = "".join(f'<trace id="{i}">{t}</trace>\n' for i, t in enumerate(traces))
    truth_xml = truth.replace("&", "&amp;").replace("<", "&lt;")
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ink xmlns="http://www.w3.org/2003/InkML">\n'
        f'<annotation type="truth">${truth_xml}$</annotation>\n{body}</ink>\n'
    )
    if kind == "xml":
        cut = int(rng.integers(len(doc)))
        doc, what = pick(rng, [(doc[:cut], f"cut at {cut}"), (doc.replace("</trace>", "<trace>", 1), "bad tag"),
                               (doc.replace("<ink", "<ink\x01", 1), "control char"),
                               (doc + "<extra/>", "two roots")])  # fmt: skip
    if kind == "entities":
        doc, what = pick(rng, [(_entity_bomb(), "billion laughs"), (_external_entity(), "external entity")])
    if kind == "structure":
        doc, what = pick(rng, [(doc.replace("<ink", "<notink").replace("</ink>", "</notink>"), "wrong root"),
                               (doc.replace('type="truth"', 'type="other"'), "no truth"),
                               (doc.replace("<trace", '<traceGroup><traceView traceDataRef="#99"/>'
                                            "</traceGroup><trace", 1), "dangling traceView"),
                               ('<?xml version="1.0"?><ink/>', "empty ink")])  # fmt: skip
    if kind == "deep":
        depth = int(rng.integers(1000, 100_000))
        doc = doc.replace("</ink>", "<a>" * depth + "</a>" * depth + "</ink>")
        what = f"{depth} nested elements"
    if kind == "encoding":
        encoding = pick(rng, ["utf-16", "utf-16-le", "utf-32", "latin-1-declared-utf8", "bogus-declared"])
        if encoding == "latin-1-declared-utf8":
            return doc.replace("$", "$é", 1).encode("latin-1", "replace"), "latin-1 declared UTF-8"
        if encoding == "bogus-declared":  # unknown to Python, or multi-byte (expat reads neither)
            declared = pick(rng, ["x-bogus-9", "shift_jis", "utf-7", "big5", "cp037"])
            return doc.replace("UTF-8", declared).encode(), f"encoding {declared} declared"
        return doc.encode(encoding), f"encoded {encoding}"
    return doc.encode("utf-8", errors="surrogatepass"), what


def _stroke(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 40))
    points = np.cumsum(rng.normal(0, 3, (n, 2)), 0) + rng.integers(0, 200, 2)
    return ", ".join(f"{x:.2f} {y:.2f}" for x, y in points)


def _entity_bomb() -> str:
    lines = ['<!ENTITY a0 "lol">'] + [f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)]
    return f'<?xml version="1.0"?><!DOCTYPE ink [{"".join(lines)}]><ink><annotation type="truth">&a9;</annotation></ink>'


def _external_entity() -> str:
    return (
        '<?xml version="1.0"?><!DOCTYPE ink [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<ink><annotation type="truth">&x;</annotation><trace>1 2, 3 4</trace></ink>'
    )


# ------------------------------------------------------------------------------------------------ http
def json_body(rng: np.random.Generator, image: bytes, batch: bool) -> tuple[bytes, str]:
    """A JSON request body: a good one, wrong types, bad base64, odd beams, deep nesting, odd encodings."""
    b64 = base64.b64encode(image).decode()
    key = "images" if batch else "image_base64"
    value: object = [b64] * int(rng.integers(1, 4)) if batch else b64
    kind = pick(rng, ["good"] * 8 + ["beam", "types", "base64", "nested", "top", "encoding", "extra", "huge"])
    payload: object = {key: value}
    what = kind
    if kind == "beam":
        beam = pick(rng, [0, -1, 2, 11, 1.5, "2", True, None, [], 10**40, float("inf"), float("nan")])
        payload, what = {key: value, "beam": beam}, f"beam={beam!r}"
    elif kind == "types":
        wrong = pick(rng, [None, 1, 1.5, True, [], {}, [b64], {"a": b64}, ""])
        payload, what = {key: wrong}, f"{key}={type(wrong).__name__}"
    elif kind == "base64":
        bad = pick(rng, [b64[:-1], b64 + "!", "data:image/png;base64," + b64, " " + b64 + "\n",
                         b64.replace("A", "-"), "====", "é" * 10, "\x00" + b64])  # fmt: skip
        payload, what = {key: [bad] if batch else bad}, "bad base64"
    elif kind == "nested":
        depth = int(rng.integers(100, 100_000))
        return ("[" * depth + "]" * depth).encode(), f"{depth} nested arrays"
    elif kind == "top":
        payload = pick(rng, [[], "x", 1, None, [{key: value}]])
        what = f"top-level {type(payload).__name__}"
    elif kind == "extra":
        payload = {key: value, "extra": "x" * 1000, "beam": 1, "__proto__": {}}
    elif kind == "huge":
        payload, what = {key: value, "pad": "x" * int(rng.integers(1, 20_000_000))}, "huge padding"
    text = json.dumps(payload, allow_nan=True)
    if kind == "encoding":
        encoding = pick(rng, ["utf-16", "utf-32", "utf-8-sig", "latin-1-bytes"])
        if encoding == "latin-1-bytes":
            return text[:-1].encode() + b', "n": "\xe9"}', "latin-1 byte in JSON"
        return text.encode(encoding), f"JSON in {encoding}"
    return text.encode(), what


def multipart_body(rng: np.random.Generator, images: list[bytes], field: str) -> tuple[bytes, str, str]:
    """(body, content type, description): well-formed parts with odd names/types, or a broken multipart."""
    boundary = "fuzz" + "".join(pick(rng, "abcdef0123456789") for _ in range(16))
    kind = pick(
        rng, ["good"] * 12 + ["part_type", "filename", "beam", "broken", "no_boundary", "extra_fields"]
    )
    parts, what = [], kind
    for i, image in enumerate(images):
        ctype = "image/png"
        name = f"img{i}.png"
        if kind == "part_type":
            ctype = pick(rng, ["text/plain", "", "image/svg+xml", "application/x-evil; charset=x"])
        if kind == "filename":
            name = pick(rng, ["../../etc/passwd", "a\x00b.png", "é" * 300, "", 'q"uote.png', "con.png"])
        head = f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        head += f"Content-Type: {ctype}\r\n" if ctype else ""
        parts.append(head.encode("utf-8", errors="surrogatepass") + b"\r\n" + image)
    if kind == "beam":
        beam = pick(rng, ["0", "-3", "1.5", "abc", "99", "", "1" * 50])
        parts.append(f'Content-Disposition: form-data; name="beam"\r\n\r\n{beam}'.encode())
        what = f"beam={beam!r}"
    if kind == "extra_fields":
        parts += [f'Content-Disposition: form-data; name="f{i}"\r\n\r\nv'.encode() for i in range(20)]
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    ctype = f"multipart/form-data; boundary={boundary}"
    if kind == "broken":
        cut = int(rng.integers(len(body)))
        body, what = body[:cut], f"multipart cut at {cut}/{len(body)}"
    if kind == "no_boundary":
        ctype = "multipart/form-data"
    return body, ctype, what
