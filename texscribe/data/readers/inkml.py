"""InkML (online handwriting, CROHME layout): pen traces, raw LaTeX truth and symbol segmentation.

`read_inkml(path, split)` reads a zip or folder (`crohme_inkml/<split>/<id>.inkml`) or one `.inkml`
file and yields a `Sample` per expression whose `load()` renders the strokes (uint8 (H, W), ink
bright on dark; see `texscribe.data.render_strokes`). The truth is raw author LaTeX
(`pretokenized=False`), with `$...$` removed. `parse_inkml(data)` gives the whole document,
symbol trace groups included, for tools that need them.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from texscribe.data.readers.archive import Archive, sniff_encoding
from texscribe.data.render_strokes import Ink, RenderOptions, ink_problem, render_strokes
from texscribe.data.sample import Sample, Skipped
from texscribe.errors import InputError
from texscribe.images import read_image_file
from texscribe.latex import to_latex, tokenize

ALL_SPLITS = "all"
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_VALUE_RE = re.compile(r"([!'\"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


@dataclass
class InkSymbol:
    """One segmented symbol: its label as written in the file (`x`, `\\sqrt`), trace indices, MathML href."""

    label: str
    traces: tuple[int, ...]
    href: str | None = None


@dataclass
class InkmlDocument:
    """A parsed InkML file. `traces[i]` is an (N, 2) float64 array of x, y (InkML units, y downwards);
    a symbol's `href` names the MathML element (its `xml:id`) under `mathml` that it draws."""

    traces: list[np.ndarray]
    trace_ids: list[str]
    truth: str | None
    channels: tuple[str, ...]
    symbols: list[InkSymbol] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    mathml: ET.Element | None = None  # the file's `<annotationXML>` (presentation MathML with `xml:id`s)


INKML_SUFFIX = ".inkml"
MAX_INKML_BYTES = 64 * 1024 * 1024  # one expression's strokes; the largest CROHME file is well under 1 MB


def read_ink_file(path: str | os.PathLike, max_bytes: int = MAX_INKML_BYTES) -> Ink:
    """The pen traces of the InkML file at `path` as `Ink`, what `texscribe predict file.inkml` reads.

    Read as `images.read_image_file` reads (regular files only, at most `max_bytes`); a malformed file raises
    `InputError` naming it, so a batch job reports it and goes on."""
    origin = os.fspath(path)
    data = read_image_file(path, max_bytes, origin=origin, what="InkML file")
    return Ink(tuple(parse_inkml(data, origin=origin).traces))


def parse_inkml(data: bytes | str, origin: str = "<inkml>") -> InkmlDocument:
    """Parse InkML text. Raises `InputError` naming `origin` for malformed XML or unreadable trace data."""
    if isinstance(data, bytes):
        encoding = sniff_encoding(data)
        if encoding.startswith(("utf-16", "utf-32")):  # expat needs the declaration to agree; decode here
            try:
                data = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid {encoding.upper()} text: {exc.reason}", source=origin) from exc
        elif not data.lstrip().startswith(b"<?xml"):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:  # no declaration and not UTF-8: old CROHME files are Latin-1
                data = data.decode("latin-1")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"malformed XML: {exc}", source=origin) from exc
    except (LookupError, ValueError) as exc:  # encoding="x-unknown" / a multi-byte one expat cannot read
        raise InputError(
            f"the XML declaration names an encoding that cannot be read ({exc}); re-save the file as UTF-8",
            source=origin,
        ) from exc
    if _local(root.tag) != "ink":
        raise InputError(f"root element is <{_local(root.tag)}>, not <ink>", source=origin)
    channels = tuple(
        (el.get("name") or "?").upper()
        for fmt in _children(root, "traceFormat")
        for el in fmt.iter()
        if _local(el.tag) == "channel"
    )
    traces, ids = [], []
    for number, el in enumerate(el for el in root.iter() if _local(el.tag) == "trace"):
        trace_id = el.get("id") or el.get(_XML_ID) or str(number)
        try:
            traces.append(parse_trace(el.text or ""))
        except ValueError as exc:
            raise InputError(f"trace {trace_id!r}: {exc}", source=origin) from exc
        ids.append(trace_id)
    annotations = {}
    for el in _children(root, "annotation"):
        annotations.setdefault(el.get("type") or "", (el.text or "").strip())
    truth = annotations.get("truth")
    index = {trace_id: i for i, trace_id in enumerate(ids)}
    return InkmlDocument(
        traces=traces,
        trace_ids=ids,
        truth=clean_truth(truth) if truth else None,
        channels=channels,
        symbols=_symbols(root, index),
        annotations=annotations,
        mathml=next(iter(_children(root, "annotationXML")), None),
    )


def parse_trace(text: str) -> np.ndarray:
    """`"x y, x y t, ..."` -> (N, 2) float64 x, y. Supports InkML difference encoding per value:
    `'` (first difference), `"` (second difference), `!` (explicit); a prefix holds until changed."""
    text = text.strip()
    if not text:
        raise ValueError("empty trace")
    if "'" not in text and '"' not in text and "!" not in text:
        rows = [p.split() for p in text.split(",")]
        try:
            if len({len(r) for r in rows}) == 1 and len(rows[0]) >= 2:
                return np.array(rows, dtype=np.float64)[:, :2]
            return np.array([[float(v) for v in r[:2]] for r in rows if len(r) >= 2], dtype=np.float64)
        except ValueError:
            raise ValueError(f"not numeric point data: {text[:60]!r}") from None
    return _decode_differences(text)


def _decode_differences(text: str) -> np.ndarray:
    mode, value, velocity = ["!", "!"], [0.0, 0.0], [0.0, 0.0]
    points = []
    for n, raw in enumerate(text.split(",")):
        values = _VALUE_RE.findall(raw)
        if len(values) < 2 or _VALUE_RE.sub("", raw).strip():
            raise ValueError(f"point {n + 1} is not numeric: {raw.strip()[:40]!r}")
        for c, (prefix, number) in enumerate(values[:2]):
            mode[c] = prefix or mode[c]
            x = float(number)
            if mode[c] == "!":
                new = x
            elif mode[c] == "'":
                new = value[c] + x
            else:
                new = value[c] + velocity[c] + x
            velocity[c] = new - value[c] if n else 0.0
            value[c] = new
        points.append(value[:])
    return np.array(points, dtype=np.float64)


def clean_truth(text: str) -> str:
    """Raw truth -> LaTeX: strip `$...$`, and rewrite RIT's `\\sqrt {x} ABOVE {n}` root index as `\\sqrt[n]{x}`."""
    text = _strip(text)
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = _strip(text.strip("$"))
    if "ABOVE" in text:
        try:
            tokens = tokenize(text)
            rewritten = _root_index(tokens)
        except InputError:
            return text
        if rewritten != tokens:
            text = to_latex(rewritten)
    return text


def _strip(text: str) -> str:
    """Strip white space, and a trailing control space (`p^2 \\ $` in CROHME): it draws nothing, and a
    later `.strip()` would leave a lone backslash."""
    body = text.strip()
    trailing = len(body) - len(body.rstrip("\\"))
    return body[:-1].rstrip() if trailing % 2 else body


def _root_index(tokens: list[str]) -> list[str]:
    """`\\sqrt { x } A B O V E { n }` -> `\\sqrt [ n ] { x }`, innermost first."""
    marker = list("ABOVE")
    changed = True
    while changed:
        changed = False
        for k in range(len(tokens) - 5):
            if tokens[k : k + 5] != marker or k == 0 or tokens[k - 1] != "}" or tokens[k + 5] != "{":
                continue
            open_ = _group_start(tokens, k - 1)
            close = _group_end(tokens, k + 5)
            if open_ is None or close is None or open_ == 0 or tokens[open_ - 1] != "\\sqrt":
                continue
            index = tokens[k + 6 : close]
            tokens = tokens[:open_] + ["[", *index, "]"] + tokens[open_:k] + tokens[close + 1 :]
            changed = True
            break
    return tokens


def _group_start(tokens: list[str], close: int) -> int | None:
    depth = 0
    for j in range(close, -1, -1):
        depth += {"}": 1, "{": -1}.get(tokens[j], 0)
        if depth == 0:
            return j
    return None


def _group_end(tokens: list[str], open_: int) -> int | None:
    depth = 0
    for j in range(open_, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return j
    return None


def _symbols(root: ET.Element, index: dict[str, int]) -> list[InkSymbol]:
    """Trace groups that reference traces directly are symbols; the outer "Segmentation" group is not."""
    symbols = []
    for group in root.iter():
        if _local(group.tag) != "traceGroup":
            continue
        refs = [v.get("traceDataRef") for v in _children(group, "traceView")]
        refs = [r.lstrip("#") for r in refs if r]
        if not refs:
            continue
        label = next((a.text or "" for a in _children(group, "annotation") if a.get("type") == "truth"), "")
        href = next((a.get("href") for a in _children(group, "annotationXML")), None)
        symbols.append(InkSymbol(label.strip(), tuple(index[r] for r in refs if r in index), href))
    return symbols


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def render_inkml(
    data: bytes | str, options: RenderOptions | None = None, sample_id: str = "", origin: str = "<inkml>"
):
    """Parse and render one InkML document: uint8 (H, W), ink bright on dark."""
    opts = options or RenderOptions()
    doc = parse_inkml(data, origin)
    return render_strokes(doc.traces, opts, opts.rng_for(sample_id) if opts.jitter else None, origin)


# ----------------------------------------------------------------------------------------------- reader
def read_inkml(
    path: str | Path, split: str | None = None, render: RenderOptions = RenderOptions()
) -> Iterator[Sample | Skipped]:
    """Yield a `Sample` per InkML file (lazy render) and a `Skipped` per unusable one.

    `path`: a zip or folder (`crohme_inkml/<split>/<id>.inkml`, any depth) or one `.inkml` file.
    `split`: the folder to read when there are several (`2014`, `train`), or `"all"`.
    Skip reasons: `malformed_inkml` (bad XML / trace data), `no_traces`, `bad_traces` (see
    `render_strokes.ink_problem`), `no_truth`, `duplicate_id`.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == INKML_SUFFIX:
        source = path.name
        yield _sample(path.stem, path.read_bytes(), str(path), source, lambda: path.read_bytes(), render)
        return
    archive = Archive.open(path)
    names = [n for n in archive.names if n.lower().endswith(INKML_SUFFIX)]
    chosen, split_name = choose_inkml_split(names, split, str(path))
    source = f"{path.name}:{split_name}" if split_name else path.name
    seen: set[str] = set()
    for name in chosen:
        sample_id = PurePosixPath(name).stem
        origin = archive.origin(name)
        if sample_id in seen:
            yield Skipped(sample_id, source, "duplicate_id", f"{origin}: id {sample_id!r} already read")
            continue
        seen.add(sample_id)
        try:
            data = archive.read(name)
        except (InputError, OSError) as exc:
            yield Skipped(sample_id, source, "malformed_inkml", f"{origin}: cannot read: {exc}")
            continue
        yield _sample(sample_id, data, origin, source, archive.loader(name), render)


def _sample(
    sample_id, data: bytes, origin: str, source: str, read, render: RenderOptions
) -> Sample | Skipped:
    try:
        doc = parse_inkml(data, origin)
    except InputError as exc:
        return Skipped(sample_id, source, "malformed_inkml", str(exc))
    if not any(len(t) for t in doc.traces):
        return Skipped(sample_id, source, "no_traces", f"{origin}: no <trace> with points")
    problem = ink_problem(doc.traces, doc.trace_ids)
    if problem:  # drawn anyway it would be a dot or specks under a label that promises an expression
        return Skipped(sample_id, source, "bad_traces", f"{origin}: {problem}")
    if not doc.truth:
        return Skipped(sample_id, source, "no_truth", f'{origin}: no <annotation type="truth"> with LaTeX')

    def load() -> np.ndarray:
        return render_inkml(read(), render, sample_id, origin)

    return Sample(id=sample_id, latex=doc.truth, source=source, load=load, origin=origin, pretokenized=False)


def choose_inkml_split(names: list[str], split: str | None, source: str) -> tuple[list[str], str | None]:
    """The InkML members of `split` (the first folder level below the common root) and the split's name."""
    if not names:
        raise InputError("no .inkml files inside", source=source)
    dirs = [PurePosixPath(n).parent.parts for n in names]
    common = dirs[0]
    for d in dirs[1:]:
        n = 0
        while n < min(len(common), len(d)) and common[n] == d[n]:
            n += 1
        common = common[:n]
    groups: dict[str, list[str]] = {}
    for name, d in zip(names, dirs):
        groups.setdefault(d[len(common)] if len(d) > len(common) else "", []).append(name)
    available = ", ".join(sorted(g for g in groups if g)) or "none"
    if split == ALL_SPLITS or (split is None and len(groups) == 1):
        return sorted(names), split if split == ALL_SPLITS else (common[-1] if common else None)
    if split is None:
        raise InputError(
            f"holds several splits ({available}); choose one as PATH:SPLIT, or PATH:all", source=source
        )
    if split in groups:
        return sorted(groups[split]), split
    if split in common:
        return sorted(names), split
    raise InputError(f"no split {split!r}; available: {available}, or all", source=source)
