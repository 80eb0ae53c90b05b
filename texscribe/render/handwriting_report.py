"""The report of a synth-handwriting run: the prepared-dataset report (`texscribe.data.report`) plus a
`synth_handwriting` section — glyph bank, formula selection, samples kept/failed, speed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from texscribe.data.cleaning import REASONS
from texscribe.data.prepared import REPORT_JSON, REPORT_MD, PreparedRecord
from texscribe.data.report import DatasetCounts, render_markdown, write_report
from texscribe.data.sample import Skipped
from texscribe.render.glyph_bank import GlyphBank
from texscribe.render.handwriting_corpus import SELECTION_REASONS, FormulaSelection
from texscribe.render.handwriting_layout import LAYOUT_FAILURES
from texscribe.render.report import CORPUS_REASONS

if TYPE_CHECKING:
    from texscribe.render.handwriting_dataset import SynthResult

ALL_REASONS = {
    **REASONS,
    **CORPUS_REASONS,
    **SELECTION_REASONS,
    **LAYOUT_FAILURES,
    "generator_error": "the generator raised an error on this sample (a bug: see the detail)",
}


def write_synth_report(
    out: Path,
    records: Sequence[PreparedRecord],
    skipped: Sequence[Skipped],
    selection: FormulaSelection,
    bank: GlyphBank,
    result: SynthResult,
    seed: int,
    workers: int,
) -> dict[str, Any]:
    """Write report.json / report.md / plots under `out`; returns the report dict."""
    prep = DatasetCounts(out=out, sources=sorted(selection.read))
    prep.tally(records, skipped)
    prep.written, prep.reused = result.generated - sum(result.failures.values()), result.reused
    prep.wall_s = result.wall_s
    report = write_report(out, prep, records, skipped)
    report["reasons"] = {k: ALL_REASONS.get(k, "") for k in prep.dropped}
    glyph_counts = bank.counts()
    report["synth_handwriting"] = {
        "seed": seed,
        "workers": workers,
        "bank": {
            "path": str(result.bank_path),
            "source": bank.source,
            "glyphs": len(bank),
            "symbols": len(glyph_counts),
            "writers": len(bank.writers),
            "files": len(bank.files),
            "glyphs_per_symbol": dict(glyph_counts.most_common()),
        },
        "formulas": {
            "read": dict(selection.read),
            "usable": len(selection.formulas),
            "usable_by_source": dict(Counter(f.source for f in selection.formulas)),
            "dropped": dict(Counter(s.reason for s in selection.skipped).most_common()),
            "crohme_vocab": len(selection.vocab),
            "missing_symbols": dict(selection.missing_symbols.most_common()),
        },
        "samples": {
            "requested": result.requested,
            "kept": result.kept,
            "failed": dict(result.failures.most_common()),
            "generated_now": result.generated,
            "reused": result.reused,
        },
        "speed": {
            "generate_s": round(result.generate_s, 1),
            "cpu_s": round(result.cpu_s, 1),
            "images_per_s": round(result.images_per_s, 2),
            "images_per_cpu_s": round(result.images_per_cpu_s, 2),
        },
    }
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / REPORT_MD).write_text(render_markdown(report) + "\n" + _markdown(report), encoding="utf-8")
    return report


def _markdown(report: dict[str, Any]) -> str:
    r = report["synth_handwriting"]
    b, f, s, v = r["bank"], r["formulas"], r["samples"], r["speed"]
    lines = [
        "## Synthetic handwriting",
        "",
        f"Seed {r['seed']}, {r['workers']} worker(s). Glyph bank: {b['glyphs']:,} glyphs of {b['symbols']} "
        f"symbols by {b['writers']:,} writers ({b['files']:,} InkML files), `{b['path']}`.  ",
        f"Formulas: {sum(f['read'].values()):,} read ("
        + ", ".join(f"{k} {n:,}" for k, n in f["read"].items())
        + f"), **{f['usable']:,} usable** ("
        + ", ".join(f"{k} {n:,}" for k, n in f["usable_by_source"].items())
        + f"); CROHME train vocabulary {f['crohme_vocab']} tokens.  ",
        f"Samples: {s['requested']:,} requested, **{s['kept']:,} kept**, "
        f"{sum(s['failed'].values()):,} failed; {s['generated_now']:,} generated in this run, "
        f"{s['reused']:,} reused from an earlier one.  ",
        f"Speed (this run): {v['images_per_s']} images/s wall over {v['generate_s']} s, "
        f"**{v['images_per_cpu_s']} images per CPU second** (one worker's rate).",
        "",
        "| formulas dropped | count | meaning |",
        "|---|---:|---|",
    ]
    lines += [f"| `{k}` | {n:,} | {ALL_REASONS.get(k, '')} |" for k, n in f["dropped"].items()]
    if s["failed"]:
        lines += ["", "| samples failed | count | meaning |", "|---|---:|---|"]
        lines += [f"| `{k}` | {n:,} | {ALL_REASONS.get(k, '')} |" for k, n in s["failed"].items()]
    lines += ["", "Glyphs per symbol: " + ", ".join(f"`{k}` {n}" for k, n in b["glyphs_per_symbol"].items())]
    return "\n".join(lines) + "\n"
