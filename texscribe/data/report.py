"""The dataset report written next to every prepared dataset: report.json, report.md, plots/*.png.

Counts in / kept / dropped per reason (with a few example details each), per-source counts, label
length and image size statistics, vocabulary size and unknown tokens (when a vocab was reused).
Plots use matplotlib's Agg canvas directly, so no display or global backend is touched.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from texscribe.data.cleaning import REASONS
from texscribe.data.prepared import REPORT_JSON, REPORT_MD, PreparedRecord
from texscribe.data.sample import Skipped
from texscribe.latex import Vocab

EXAMPLES_PER_REASON = 5


@dataclass
class DatasetCounts:
    """What a prepared dataset's report counts, for any tool that made it (`prepare` returns it): items
    read (`n_in`), kept, `dropped` (reason code -> count), the same per source, vocabulary size, tokens
    outside a reused vocabulary, images written now / reused from an earlier run, wall time in seconds."""

    out: Path
    sources: list[str]
    n_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    per_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unknown_tokens: Counter = field(default_factory=Counter)
    vocab_size: int = 0
    written: int = 0
    reused: int = 0
    wall_s: float = 0.0

    def count_read(self, source: str) -> None:
        """One more item read from `source`."""
        self.n_in += 1
        self.per_source[source]["in"] += 1

    def count_dropped(self, source: str, reason: str) -> None:
        """An item of `source` dropped for `reason` (a code of `texscribe.data.cleaning.REASONS` or a tool's)."""
        self.dropped[reason] += 1
        self.per_source[source][reason] += 1

    def count_kept(self, source: str) -> None:
        self.per_source[source]["kept"] += 1

    def tally(self, records: Sequence[PreparedRecord], skipped: Sequence[Skipped]) -> None:
        """Count a generated dataset's outcome at once: every skipped item as read and dropped for its
        reason, every record as read and kept, and the vocabulary size of the kept labels."""
        for item in skipped:
            self.count_read(item.source)
            self.count_dropped(item.source, item.reason)
        for record in records:
            self.count_read(record.source)
            self.count_kept(record.source)
        self.kept = len(records)
        self.vocab_size = len(Vocab.build(r.tokens for r in records))


def _stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 1),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
    }


def build_report(
    result: DatasetCounts,
    records: Sequence[PreparedRecord],
    skipped: Sequence[Skipped],
    vocab_from: str | None = None,
) -> dict[str, Any]:
    """The JSON-able report of one prepared dataset."""
    examples: dict[str, list[str]] = defaultdict(list)
    for item in skipped:
        if len(examples[item.reason]) < EXAMPLES_PER_REASON:
            examples[item.reason].append(f"{item.id}: {item.detail}")
    per_source = {}
    for source, counts in result.per_source.items():
        drops = {k: v for k, v in sorted(counts.items()) if k not in ("in", "kept")}
        per_source[source] = {"in": counts["in"], "kept": counts["kept"], "dropped": drops}
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": result.sources,
        "counts": {
            "in": result.n_in,
            "kept": result.kept,
            "dropped": sum(result.dropped.values()),
            "by_reason": dict(result.dropped.most_common()),
        },
        "reasons": {k: REASONS.get(k, "") for k in result.dropped},
        "examples": dict(examples),
        "per_source": per_source,
        "label_length": _stats([len(r.tokens) for r in records]),
        "image_height": _stats([r.height for r in records]),
        "image_width": _stats([r.width for r in records]),
        "vocab": {
            "size": result.vocab_size,
            "from": vocab_from,
            "unknown_tokens": dict(result.unknown_tokens.most_common()),
            "samples_with_unknown": sum(
                1 for r in records if any(t in result.unknown_tokens for t in r.tokens)
            ),
        },
        "images": {"written": result.written, "reused": result.reused},
        "wall_s": round(result.wall_s, 2),
    }


def render_markdown(report: dict[str, Any]) -> str:
    """A short human summary of `report` (the same numbers as report.json)."""
    c = report["counts"]
    lines = [
        "# Prepared dataset report",
        "",
        f"Sources: {', '.join(report['sources'])}  ",
        f"Created: {report['created']}, wall time {report['wall_s']} s "
        f"(images written {report['images']['written']}, reused {report['images']['reused']})",
        "",
        "| | count |",
        "|---|---:|",
        f"| in | {c['in']} |",
        f"| kept | {c['kept']} |",
        f"| dropped | {c['dropped']} |",
    ]
    lines += [f"| dropped: `{reason}` | {n} |" for reason, n in c["by_reason"].items()]
    if len(report["per_source"]) > 1:
        lines += ["", "| source | in | kept | dropped |", "|---|---:|---:|---:|"]
        for source, s in report["per_source"].items():
            lines.append(f"| {source} | {s['in']} | {s['kept']} | {sum(s['dropped'].values())} |")
    if report["examples"]:
        lines += ["", "## Dropped items (examples)", ""]
        for reason, details in report["examples"].items():
            lines.append(f"- **{reason}** ({report['reasons'].get(reason, '')}):")
            lines += [f"  - `{d}`" for d in details]
    lines += [
        "",
        "## Statistics",
        "",
        "| | min | mean | median | p95 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, title in (
        ("label_length", "label tokens"),
        ("image_height", "height px"),
        ("image_width", "width px"),
    ):
        s = report[key]
        if s:
            lines.append(f"| {title} | {s['min']} | {s['mean']} | {s['median']} | {s['p95']} | {s['max']} |")
    v = report["vocab"]
    lines += ["", f"Vocabulary: {v['size']} tokens" + (f" (reused from {v['from']})" if v["from"] else "")]
    if v["unknown_tokens"]:
        top = ", ".join(f"`{t}` ×{n}" for t, n in list(v["unknown_tokens"].items())[:20])
        lines.append(f"Tokens outside the vocabulary ({v['samples_with_unknown']} samples): {top}")
    lines += ["", "![label length](plots/label_length.png)", "![image size](plots/image_size.png)", ""]
    return "\n".join(lines)


def plot_label_lengths(lengths: Sequence[int], path: Path) -> None:
    """Histogram of label lengths in tokens."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = list(lengths) or [0]
    step = max(1, -(-(max(values) - min(values) + 1) // 60))  # integer-aligned bins: no empty stripes
    ax.hist(values, bins=np.arange(min(values), max(values) + step + 1, step) - 0.5, color="#3b6ea8")
    ax.set_xlabel("label length (tokens)")
    ax.set_ylabel("samples")
    ax.set_title(f"Label length, n={len(lengths)}")
    fig.tight_layout()
    fig.savefig(path)


def plot_image_sizes(heights: Sequence[int], widths: Sequence[int], path: Path) -> None:
    """Scatter of width vs height (pixels, after crop) with marginal histograms side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.scatter(widths or [0], heights or [0], s=3, alpha=0.3, color="#3b6ea8")
    ax1.set_xlabel("width px")
    ax1.set_ylabel("height px")
    ax1.set_title(f"Image size, n={len(heights)}")
    ax2.hist(heights or [0], bins=50, color="#3b6ea8")
    ax2.set_xlabel("height px")
    ax3.hist(widths or [0], bins=50, color="#a8583b")
    ax3.set_xlabel("width px")
    fig.tight_layout()
    fig.savefig(path)


def write_report(
    out: Path,
    result: DatasetCounts,
    records: Sequence[PreparedRecord],
    skipped: Sequence[Skipped],
    vocab_from: str | None = None,
) -> dict[str, Any]:
    """Write report.json, report.md and plots/ under `out`; returns the report dict."""
    report = build_report(result, records, skipped, vocab_from)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_label_lengths([len(r.tokens) for r in records], plots / "label_length.png")
    plot_image_sizes([r.height for r in records], [r.width for r in records], plots / "image_size.png")
    return report
